//! Writing result files: atomically (a temporary file beside the target, then a rename), so a
//! reader never sees half a file and a failed write leaves the old one.

use std::path::Path;

use ringattn_runtime::{Error, Result};

/// Writes `bytes` to `path` atomically (temporary file + rename; the temporary file is
/// removed when either step fails).
pub fn write_atomic(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
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

/// Writes `value` as JSON to `path` atomically (pretty-printed), or to stdout for `-` (one
/// line, so repeated runs append cleanly to a JSON-lines file).
pub fn write_json<T: serde::Serialize>(path: &str, value: &T) -> Result<()> {
    if path == "-" {
        println!(
            "{}",
            serde_json::to_string(value).expect("a report always serialises")
        );
        return Ok(());
    }
    let text = serde_json::to_string_pretty(value).expect("a report always serialises") + "\n";
    write_atomic(Path::new(path), text.as_bytes())
}
