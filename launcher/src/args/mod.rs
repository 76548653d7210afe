//! Argument groups shared by several commands: scheduler options (`run`, `decode`, `bench`),
//! micro-kernel choice (`--isa`: `run`, `decode`, `bench kernel`, `info`)
//! DuoAttention options (`run`, `decode`, `simulate`, `bench scaling`) and packed documents /
//! sliding windows (`run`, `decode`).

pub mod duo;
pub mod isa;
pub mod mask;
pub mod sched;

use ringattn_runtime::{Error, Result};

/// Refuses `--threads` above the cores this process may use (`allowed`): more kernel threads
/// than cores per worker only slow it down, and a huge number would try to start them all.
/// `oversubscribe` (the `--oversubscribe` switch) allows up to [`MAX_OVERSUBSCRIBED`] per
/// allowed core.
pub fn check_threads(threads: Option<usize>, allowed: usize, oversubscribe: bool) -> Result<()> {
    let Some(t) = threads else { return Ok(()) };
    let allowed = allowed.max(1);
    let limit = if oversubscribe {
        allowed.saturating_mul(MAX_OVERSUBSCRIBED)
    } else {
        allowed
    };
    if t > limit {
        let how = if oversubscribe {
            format!("at most {MAX_OVERSUBSCRIBED} per allowed core with --oversubscribe")
        } else {
            "pass --oversubscribe to allow more".to_string()
        };
        return Err(Error::config(format!(
            "--threads {t}: only {allowed} cores are allowed to this process ({how})"
        )));
    }
    Ok(())
}

/// Checks before any compute that `--output` and `--json` (unless `-`) can be written.
pub fn check_outputs(output: Option<&std::path::Path>, json: Option<&str>) -> Result<()> {
    if let Some(path) = output {
        ringattn::io::check_writable(path)?;
    }
    match json {
        Some("-") | None => Ok(()),
        Some(path) => ringattn::io::check_writable(std::path::Path::new(path)),
    }
}

/// Kernel threads per allowed core that `--oversubscribe` allows at most.
pub const MAX_OVERSUBSCRIBED: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_beyond_the_allowed_cores_need_oversubscribe() {
        assert!(check_threads(None, 2, false).is_ok());
        assert!(check_threads(Some(2), 2, false).is_ok());
        assert!(check_threads(Some(3), 2, false).is_err_and(|e| e.is_user_error()));
        assert!(check_threads(Some(3), 2, true).is_ok());
        assert!(check_threads(Some(usize::MAX), 2, true).is_err());
    }
}
