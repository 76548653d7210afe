//! Temporary files of atomic writes: `.NAME.tmp.PID` beside the target, and the removal of
//! those a killed process left behind.

use std::path::{Path, PathBuf};

/// Removes the temporary files `.NAME.tmp.PID` beside `path` (NAME its file name) that a
/// killed process left behind (files, or staging directories of that name): those whose PID
/// is no longer a running process (checked in `/proc`; nothing is removed where `/proc` is
/// missing). Called by every atomic write before it creates its own temporary file. Best
/// effort: failures are ignored.
pub fn remove_stale_temps(path: &Path) {
    let Some(name) = path.file_name().map(|f| f.to_string_lossy().into_owned()) else {
        return;
    };
    if !Path::new("/proc/self").exists() {
        return;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = format!(".{name}.tmp.");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file.strip_prefix(&prefix) else {
            continue;
        };
        let pid_ok = !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit());
        if pid_ok && !Path::new("/proc").join(pid).exists() {
            let p = entry.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(p)
            } else {
                std::fs::remove_file(p)
            };
        }
    }
}

/// `dir/.name.tmp.<pid>` beside `path`, so the final rename stays on one file system; stale
/// ones of dead processes are removed first ([`remove_stale_temps`]).
pub fn temp_path(path: &Path) -> PathBuf {
    remove_stale_temps(path);
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{file}.tmp.{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temporary_files_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.safetensors");
        // PID 4194304 is above Linux's largest pid_max: never a running process.
        let stale = dir.path().join(".out.safetensors.tmp.4194304");
        let live = dir
            .path()
            .join(format!(".out.safetensors.tmp.{}", std::process::id()));
        let other = dir.path().join(".other.tmp.4194304");
        for f in [&stale, &live, &other] {
            std::fs::write(f, b"x").unwrap();
        }
        remove_stale_temps(&target);
        assert_eq!(stale.exists(), !Path::new("/proc/self").exists());
        assert!(live.exists() && other.exists());
    }
}
