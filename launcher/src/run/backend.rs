//! Choosing the communication backend: `--backend auto|local|mpi`.

use ringattn_runtime::{Error, Result};

use crate::cli::BackendArg;

/// The backend a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Threads of this process joined by channels.
    Local,
    /// One process per rank over MPI.
    Mpi,
}

/// Whether this binary was built with the `mpi` feature.
pub const MPI_BUILT: bool = cfg!(feature = "mpi");

/// What a user must do to get the MPI backend.
pub const HOW_TO_BUILD_MPI: &str = "this ringattn was built without MPI support; \
    install MPI with `bash scripts/install-mpi.sh`, then build with \
    `cargo build --release --features mpi`";

/// Environment variables set by MPI launchers in every process they start: MPICH's hydra
/// (PMI_*), OpenMPI (OMPI_*), PMIx launchers (PMIX_RANK).
const LAUNCHER_VARS: [&str; 4] = ["PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"];

/// True when this process was started by mpirun/mpiexec, or by srun with more than one task.
///
/// For SLURM the step's task count (`SLURM_STEP_NUM_TASKS`, set by srun) decides, not the
/// job's (`SLURM_NTASKS`): a batch script's own shell has `SLURM_PROCID=0` and the job's task
/// count too, and a ringattn started there directly is not one rank of many.
pub fn launched_by_mpi() -> bool {
    launched_by_mpi_in(|name| std::env::var(name).ok())
}

/// [`launched_by_mpi`] over any environment lookup (for tests).
pub fn launched_by_mpi_in(var: impl Fn(&str) -> Option<String>) -> bool {
    if LAUNCHER_VARS.iter().any(|name| var(name).is_some()) {
        return true;
    }
    let slurm_tasks = var("SLURM_STEP_NUM_TASKS")
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    var("SLURM_PROCID").is_some() && slurm_tasks > 1
}

/// Resolves `--backend`: `auto` is `mpi` when built with the feature and launched by MPI,
/// else `local`. `mpi` without the feature is a user error (exit code 2) saying how to build.
pub fn resolve(arg: BackendArg) -> Result<Backend> {
    match arg {
        BackendArg::Local => Ok(Backend::Local),
        BackendArg::Mpi if MPI_BUILT => Ok(Backend::Mpi),
        BackendArg::Mpi => Err(Error::config(format!("--backend mpi: {HOW_TO_BUILD_MPI}"))),
        BackendArg::Auto => {
            let launched = launched_by_mpi();
            if launched && MPI_BUILT {
                Ok(Backend::Mpi)
            } else {
                if launched {
                    eprintln!(
                        "ringattn: warning: started by an MPI launcher but {HOW_TO_BUILD_MPI}; \
                         every process runs the whole job with the local backend"
                    );
                }
                Ok(Backend::Local)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn detects_mpi_launchers_from_their_environment() {
        assert!(!launched_by_mpi_in(env(&[])));
        assert!(launched_by_mpi_in(env(&[("PMI_RANK", "0")])));
        assert!(launched_by_mpi_in(env(&[("OMPI_COMM_WORLD_SIZE", "4")])));
        assert!(launched_by_mpi_in(env(&[("PMIX_RANK", "1")])));
        assert!(launched_by_mpi_in(env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_STEP_NUM_TASKS", "2")
        ])));
        // A one-task srun step is not an MPI launch, nor is a batch script's own shell (which
        // has SLURM_PROCID and the job's SLURM_NTASKS, but no step).
        assert!(!launched_by_mpi_in(env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_STEP_NUM_TASKS", "1")
        ])));
        assert!(!launched_by_mpi_in(env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "8")
        ])));
    }
}
