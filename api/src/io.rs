//! Writing result files: atomically (a temporary file beside the target, then a rename), so a
//! reader never sees half a file and a failed write leaves the old one.

use std::path::Path;

use ringattn_runtime::{Error, Result};

/// Writes `bytes` to `path` atomically (temporary file + rename; the temporary file is
/// removed when either step fails).
pub fn write_atomic(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(Error::config("an output path is empty"));
    }
    let tmp = ringattn_runtime::io::temp_path(path);
    let shown = path.display();
    let io = |context: String| move |e| Error::Io { context, source: e };
    let result = std::fs::write(&tmp, bytes.as_ref())
        .map_err(io(format!("writing {shown}")))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io(format!("renaming to {shown}"))));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The text of the file at `path`; a failure is a bad input naming the file and saying it
/// could not read `what` (`the prompt`: "cannot read the prompt: ...").
pub fn read_text(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::BadInput {
        path: path.display().to_string(),
        reason: format!("cannot read {what}: {e}"),
    })
}

/// Writes `value` as JSON to `path` atomically (pretty-printed), or to stdout for `-` (one
/// line, so repeated runs append cleanly to a JSON-lines file).
pub fn write_json<T: serde::Serialize>(path: &str, value: &T) -> Result<()> {
    if path == "-" {
        use std::io::Write as _;
        let line = serde_json::to_string(value).expect("a report always serialises") + "\n";
        let mut out = std::io::stdout().lock();
        return out
            .write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|source| Error::Io {
                context: "writing to standard output".into(),
                source,
            });
    }
    if path.is_empty() {
        return Err(Error::config("an output path is empty (use - for stdout)"));
    }
    let text = serde_json::to_string_pretty(value).expect("a report always serialises") + "\n";
    write_atomic(Path::new(path), text.as_bytes())
}

/// Checks, before any compute, that a result can be written to `path` later: the path is not
/// empty or a directory, and its directory accepts a new file (the temporary file of
/// [`write_atomic`] goes there), probed by creating and removing an empty file.
pub fn check_writable(path: &Path) -> Result<()> {
    let shown = path.display();
    if path.as_os_str().is_empty() {
        return Err(Error::config("an output path is empty"));
    }
    if path.is_dir() {
        return Err(Error::config(format!("{shown} is a directory, not a file")));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let probe = dir.join(format!(".ringattn-probe.{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| {
            Error::config(format!(
                "cannot write {shown}: its directory {} does not accept files ({e})",
                dir.display()
            ))
        })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Checks before any compute that a job's outputs can be written ([`check_writable`]): the
/// tensor `output` if any, and the JSON report `json` unless it is `-` (stdout, as
/// [`write_json`] takes it).
pub fn check_outputs(output: Option<&Path>, json: Option<&str>) -> Result<()> {
    if let Some(path) = output {
        check_writable(path)?;
    }
    match json {
        Some("-") | None => Ok(()),
        Some(path) => check_writable(Path::new(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_a_missing_file_names_it_and_what_was_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.txt"), "hi").unwrap();
        assert_eq!(
            read_text(&dir.path().join("p.txt"), "the prompt").unwrap(),
            "hi"
        );
        let e = read_text(&dir.path().join("none"), "the prompt").unwrap_err();
        assert!(e.is_user_error(), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("none") && text.contains("cannot read the prompt"),
            "{text}"
        );
    }

    #[test]
    fn outputs_are_checked_except_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.json");
        assert!(check_outputs(None, None).is_ok());
        assert!(check_outputs(None, Some("-")).is_ok());
        assert!(check_outputs(Some(&file), file.to_str()).is_ok());
        let e = check_outputs(Some(dir.path()), None).unwrap_err();
        assert!(
            e.is_user_error() && e.to_string().contains("directory"),
            "{e}"
        );
        assert!(check_outputs(None, dir.path().to_str()).is_err());
    }
}
