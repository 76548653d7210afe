//! The MPI backend's wiring: this process is one rank of a job started by mpirun/mpiexec/srun.
//!
//! Every rank validates the arguments and builds the same [`Job`] (the ranks agree on the first
//! failure, so a bad option exits 2 everywhere with one message from rank 0), runs
//! [`run_rank`] on its own shard, and sends its figures and rows to rank 0, which alone writes
//! the output file and the report. A rank that fails (or panics) during the run calls
//! [`Comm::abort`]: the message names it and the whole job ends with a nonzero exit.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;

use ringattn_runtime::mpi_backend::MpiComm;
use ringattn_runtime::{Comm, Error, Result};

use crate::args::cli_error;
use crate::run::RunArgs;
use ringattn::job::Job;
use ringattn::launch::mpi_rank::{agree, failure_reason, plan_cores, prepare};
use ringattn::memory::MemoryCheck;
use ringattn::rank::run_rank;
use ringattn::workers::panic_message;
use ringattn::RunSpec;

/// Runs this process's rank of an MPI job. Rank 0 returns the job's error (printed by `main`);
/// the other ranks stay silent and return the same exit code.
pub fn run_mpi(args: &RunArgs, allowed_cores: usize) -> Result<ExitCode> {
    run_mpi_with(
        &|| args.spec(),
        allowed_cores,
        MemoryCheck::ONE_RANK,
        || Ok(()),
        run_rank,
        |job, backend, g| crate::run::finish(args, job, backend, g),
    )
}

/// [`run_mpi`] of the job of `spec` (made on every rank, its failure agreed on like a bad
/// option; `memory` says what this rank's memory check covers) with any rank function and root finish (`ringattn decode` runs its own):
/// `precheck` validates what the [`Job`] does not (its failure is agreed on like a bad option:
/// one message from rank 0, exit 2); every rank calls `rank_fn`; rank 0 calls `finish` on its
/// result, whose exit code every rank returns.
pub fn run_mpi_with<G>(
    spec: &dyn Fn() -> Result<RunSpec>,
    allowed_cores: usize,
    memory: MemoryCheck,
    precheck: impl Fn() -> Result<()>,
    rank_fn: impl Fn(&mut dyn Comm, &Job) -> Result<Option<G>>,
    finish: impl Fn(&Job, &str, &G) -> Result<u8>,
) -> Result<ExitCode> {
    let mut comm = MpiComm::init()?;
    let rank = comm.rank();
    // The core plan needs only threads and pinning; a spec that fails is reported below.
    let (threads, pin) = spec().map_or((None, true), |s| (s.threads, s.pin));
    let cores = plan_cores(&mut comm, threads, pin)?;
    if rank == 0 {
        if let Some(w) = cores.warning() {
            eprintln!("{w}");
        }
    }
    let prepared = precheck()
        .and_then(|()| prepare(spec()?, &comm, allowed_cores, cores, memory).map_err(cli_error));
    let job = match agree(&mut comm, prepared)? {
        Ok(job) => job,
        Err(e) if rank == 0 => return Err(e),
        Err(e) => return Ok(ExitCode::from(crate::run::exit_code(&e))),
    };

    let result =
        catch_unwind(AssertUnwindSafe(|| rank_fn(&mut comm, &job))).unwrap_or_else(|panic| {
            Err(Error::RankFailed {
                rank,
                reason: panic_message(&panic),
            })
        });
    let gathered = match result {
        Ok(g) => g,
        Err(e) => {
            // Ends every rank of the job (MPI_Abort): this call does not return.
            // Bad input found during the run (e.g. a NaN in the input file) keeps its class:
            // the job exits 2, as with the local backend.
            let code = i32::from(crate::run::exit_code(&e));
            comm.abort_with_code(&failure_reason(&e), code);
        }
    };

    // Rank 0 finishes; every rank leaves with rank 0's exit code.
    let (code, root_error) = match (rank, &gathered) {
        (0, Some(g)) => {
            let finished = catch_unwind(AssertUnwindSafe(|| finish(&job, comm.backend(), g)))
                .unwrap_or_else(|panic| {
                    Err(Error::RankFailed {
                        rank,
                        reason: panic_message(&panic),
                    })
                });
            match finished {
                Ok(code) => (code, None),
                Err(e) => (crate::run::exit_code(&e), Some(e)),
            }
        }
        (0, None) => {
            let e = Error::Comm {
                rank,
                reason: "rank 0 received no results".into(),
            };
            (crate::run::exit_code(&e), Some(e))
        }
        _ => (0, None),
    };
    let code = comm.broadcast(0, vec![code])?.first().copied().unwrap_or(1);
    match root_error {
        Some(e) => Err(e),
        None => Ok(ExitCode::from(code)),
    }
}
