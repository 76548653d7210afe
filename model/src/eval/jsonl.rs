//! An append-only JSON-lines file that remembers its first write error, for callbacks that
//! cannot return one (the fidelity rows are written as they come, a crash keeps the rows so far).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use ringattn_runtime::{Error, Result};
use serde::Serialize;

/// `DIR/NAME` opened for appending; each [`JsonlLog::push`] writes and flushes one line.
pub struct JsonlLog {
    file: File,
    path: PathBuf,
    failed: Option<std::io::Error>,
}

impl JsonlLog {
    /// Creates `dir` and opens `dir/name` for appending (bad input when either fails, so an
    /// unwritable output is refused before any work).
    pub fn open(dir: &Path, name: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::BadInput {
            path: dir.display().to_string(),
            reason: format!("cannot create the output directory: {e}"),
        })?;
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::BadInput {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(JsonlLog {
            file,
            path,
            failed: None,
        })
    }

    /// Appends `value` as one line; the first failure is kept for [`JsonlLog::finish`].
    pub fn push<T: Serialize>(&mut self, value: &T) {
        let line = serde_json::to_string(value).unwrap_or_default() + "\n";
        let f = &mut self.file;
        if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.flush()) {
            self.failed.get_or_insert(e);
        }
    }

    /// The first write error, if any.
    pub fn finish(self) -> Result<()> {
        match self.failed {
            Some(e) => Err(Error::Io {
                context: format!("writing {}", self.path.display()),
                source: e,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("out");
        let mut log = JsonlLog::open(&sub, "x.jsonl").unwrap();
        log.push(&serde_json::json!({"a": 1}));
        log.finish().unwrap();
        let mut log = JsonlLog::open(&sub, "x.jsonl").unwrap();
        log.push(&serde_json::json!({"a": 2}));
        log.finish().unwrap();
        let text = std::fs::read_to_string(sub.join("x.jsonl")).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"a\":2}\n");
    }

    #[test]
    fn an_unwritable_directory_is_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(
            JsonlLog::open(&file.join("sub"), "x.jsonl"),
            Err(Error::BadInput { .. })
        ));
    }
}
