//! Argument groups shared by several commands (each module says which) and the mapping of
//! library errors to flags.

pub mod duo;
pub mod heads;
pub mod isa;
pub mod job;
pub mod mask;
pub mod sched;
pub mod tile;

use ringattn_runtime::{Error, Result};

/// Refuses `--threads` above the cores this process may use (`allowed`): more kernel threads
/// than cores per worker only slow it down, and a huge number would try to start them all.
/// `oversubscribe` (the `--oversubscribe` switch) allows up to [`MAX_OVERSUBSCRIBED`] per
/// allowed core.
pub fn check_threads(threads: Option<usize>, allowed: usize, oversubscribe: bool) -> Result<()> {
    let allowed = allowed.max(1);
    let (limit, how) = match oversubscribe {
        true => (
            allowed.saturating_mul(MAX_OVERSUBSCRIBED),
            format!("at most {MAX_OVERSUBSCRIBED} per allowed core with --oversubscribe"),
        ),
        false => (allowed, "pass --oversubscribe to allow more".to_string()),
    };
    match threads {
        Some(t) if t > limit => Err(Error::config(format!(
            "--threads {t}: only {allowed} cores are allowed to this process ({how})"
        ))),
        _ => Ok(()),
    }
}

/// Checks before any compute that `--output` and `--json` (unless `-`) can be written.
pub use ringattn::io::check_outputs;

/// The flag of a library field outside `run`'s spec (`ntasks_per_node` → `--ntasks-per-node`).
pub fn flag_of(field: &str) -> String {
    match field {
        "world" => "--workers".into(),
        "command" => "the command after --".into(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

/// A library error as the command line says it: the fields of `launch`, `sbatch` and the
/// benchmarks become flags; the rest as `run` says them ([`crate::run::spec::flag_error`]).
pub fn cli_error(e: ringattn::ApiError) -> Error {
    use ringattn::ApiError;
    match &e {
        ApiError::Invalid {
            field,
            value,
            expected,
        } => Error::config(format!(
            "{} `{}`: {expected}",
            flag_of(field),
            value.escape_debug()
        )),
        ApiError::Zero { field } if !field.contains('.') && *field != "world" => {
            Error::config(format!("{} must be at least 1", flag_of(field)))
        }
        ApiError::WorldMismatch { given: w, size } => Error::config(format!(
            "--workers {w} does not match the {size} MPI processes of this job (leave --workers \
             out, or start {w} processes: mpirun -n {w})"
        )),
        ApiError::NoMpiLauncher => Error::config(
            "no mpirun or mpiexec on PATH: install MPI with `bash scripts/install-mpi.sh`, or \
             name one with --mpirun PATH",
        ),
        _ => crate::run::spec::flag_error(e),
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
