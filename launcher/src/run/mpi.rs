//! The MPI backend's wiring: this process is one rank of a job started by mpirun/mpiexec/srun
//! ([`ringattn::launch::mpi_rank::run_job`]: the ranks agree on bad options, rank 0 reports).

use std::process::ExitCode;

use ringattn_runtime::Result;

use crate::args::cli_error;
use crate::run::RunArgs;
use ringattn::launch::mpi_rank::run_job;
use ringattn::memory::MemoryCheck;
use ringattn::rank::run_rank;

/// Runs this process's rank of an MPI job. Rank 0 returns the job's error (printed by `main`);
/// the other ranks stay silent and return the same exit code.
pub fn run_mpi(args: &RunArgs, allowed_cores: usize) -> Result<ExitCode> {
    run_job(
        &|| args.spec(),
        allowed_cores,
        MemoryCheck::ONE_RANK,
        || Ok(()),
        cli_error,
        run_rank,
        |job, backend, g| crate::run::finish(args, job, backend, g),
    )
    .map(ExitCode::from)
}

/// The model commands' MPI start (`generate`, `eval passkey`): this process's communicator,
/// checked against `--workers` when given, and its threads (`--threads`, else this node's
/// allowed cores shared by its ranks).
pub fn model_world(
    workers: Option<usize>,
    threads: Option<usize>,
) -> Result<(ringattn_runtime::mpi_backend::MpiComm, usize)> {
    use ringattn_runtime::{Comm, Error};
    let comm = ringattn_runtime::mpi_backend::MpiComm::init()?;
    let world = comm.size();
    if let Some(p) = workers {
        if p != world {
            return Err(Error::config(format!(
                "--workers {p} but {world} MPI processes"
            )));
        }
    }
    let share = (ringattn::allowed_cores() / comm.node_ranks().max(1)).max(1);
    Ok((comm, threads.unwrap_or(share)))
}
