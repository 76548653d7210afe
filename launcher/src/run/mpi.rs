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

use crate::run::RunArgs;
use ringattn::cores::{CorePlan, RankMask};
use ringattn::job::Job;
use ringattn::rank::run_rank;
use ringattn::workers::panic_message;
use ringattn::RunSpec;

/// Runs this process's rank of an MPI job. Rank 0 returns the job's error (printed by `main`);
/// the other ranks stay silent and return the same exit code.
pub fn run_mpi(args: &RunArgs, allowed_cores: usize) -> Result<ExitCode> {
    run_mpi_with(
        &|| args.spec(),
        allowed_cores,
        || Ok(()),
        run_rank,
        |job, backend, g| crate::run::finish(args, job, backend, g),
    )
}

/// [`run_mpi`] of the job of `spec` (made on every rank, its failure agreed on like a bad
/// option) with any rank function and root finish (`ringattn decode` runs its own):
/// `precheck` validates what the [`Job`] does not (its failure is agreed on like a bad option:
/// one message from rank 0, exit 2); every rank calls `rank_fn`; rank 0 calls `finish` on its
/// result, whose exit code every rank returns.
pub fn run_mpi_with<G>(
    spec: &dyn Fn() -> Result<RunSpec>,
    allowed_cores: usize,
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
    let prepared = precheck().and_then(|()| prepare(spec()?, &comm, allowed_cores, cores));
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
            comm.abort(&failure_reason(&e));
            return Err(e);
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

/// Plans every rank's kernel cores (a collective call): rank 0 gathers each rank's node and
/// affinity mask, plans with [`ringattn::cores::plan`] and sends the plan to every rank.
fn plan_cores(comm: &mut MpiComm, threads: Option<usize>, pin: bool) -> Result<CorePlan> {
    let rank = comm.rank();
    let config = bincode::config::standard();
    let err = |what: &str, e: &dyn std::fmt::Display| Error::Comm {
        rank,
        reason: format!("{what} the core plan: {e}"),
    };
    let mine = RankMask {
        node: comm.node_id(),
        cpus: ringattn::cores::allowed_cpus(),
    };
    let mine = bincode::serde::encode_to_vec(&mine, config).map_err(|e| err("encoding", &e))?;
    let planned = match comm.gather(0, mine)? {
        Some(parts) => {
            let masks = parts
                .iter()
                .map(|p| bincode::serde::decode_from_slice(p, config).map(|(m, _)| m))
                .collect::<std::result::Result<Vec<RankMask>, _>>()
                .map_err(|e| err("decoding", &e))?;
            let plan = ringattn::cores::plan(&masks, threads, pin);
            bincode::serde::encode_to_vec(&plan, config).map_err(|e| err("encoding", &e))?
        }
        None => Vec::new(),
    };
    let planned = comm.broadcast(0, planned)?;
    bincode::serde::decode_from_slice(&planned, config)
        .map(|(p, _)| p)
        .map_err(|e| err("decoding", &e))
}

/// Validates the spec on this rank: the world is the MPI size (`--workers`, when given, must
/// equal it) and threads default to this rank's share of its affinity mask (`cores`).
fn prepare(
    mut spec: RunSpec,
    comm: &MpiComm,
    allowed_cores: usize,
    cores: CorePlan,
) -> Result<Job> {
    let size = comm.size();
    if let Some(w) = spec.world {
        if w != size {
            return Err(Error::config(format!(
                "--workers {w} does not match the {size} MPI processes of this job \
                 (leave --workers out, or start {w} processes: mpirun -n {w})"
            )));
        }
    }
    spec.world = Some(size);
    if spec.threads.is_none() {
        let share = (allowed_cores / comm.node_ranks().max(1)).max(1);
        spec.threads = Some(cores.threads.get(comm.rank()).copied().unwrap_or(share));
    }
    let mut job = Job::from_spec(&spec, allowed_cores).map_err(crate::run::spec::flag_error)?;
    job.cores = cores.cores;
    Ok(job)
}

/// Makes every rank agree on the first rank's failure to prepare (in rank order), so that no
/// rank starts the ring while another has already given up. The outer error is a
/// communication failure; the inner one is the agreed outcome.
fn agree(comm: &mut MpiComm, local: Result<Job>) -> Result<Result<Job>> {
    let mine = match &local {
        Ok(_) => Vec::new(),
        Err(e) => {
            let mut bytes = vec![u8::from(e.is_user_error())];
            bytes.extend_from_slice(e.to_string().as_bytes());
            bytes
        }
    };
    let first = match comm.gather(0, mine)? {
        Some(parts) => parts
            .into_iter()
            .enumerate()
            .find(|(_, p)| !p.is_empty())
            .map(|(r, p)| {
                let mut out = (r as u64).to_le_bytes().to_vec();
                out.extend(p);
                out
            })
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let first = comm.broadcast(0, first)?;
    if first.len() < 9 {
        return Ok(local);
    }
    let failed = usize::try_from(u64::from_le_bytes(
        first[..8].try_into().unwrap_or_default(),
    ))
    .unwrap_or(usize::MAX);
    if failed == comm.rank() {
        return Ok(local);
    }
    let message = String::from_utf8_lossy(&first[9..]).into_owned();
    Ok(Err(if first[8] == 1 {
        Error::config(format!("rank {failed}: {message}"))
    } else {
        Error::RankFailed {
            rank: failed,
            reason: message,
        }
    }))
}

/// The reason printed after `rank R failed:` (without repeating the rank).
fn failure_reason(e: &Error) -> String {
    match e {
        Error::RankFailed { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}
