//! One rank of an MPI job (feature `mpi`): the collective steps every rank takes before the
//! ring starts. Rank 0 plans every rank's kernel cores from their nodes and affinity masks
//! ([`plan_cores`]); each rank validates the spec against the MPI world ([`prepare`]); the
//! ranks agree on the first failure ([`agree`]) so that a bad option ends every rank with one
//! message, not some ranks waiting in the ring for others that gave up; [`run_job`] is the
//! whole of one rank's life (plan, prepare, agree, run, abort on failure, rank 0 finishes);
//! [`model_world`] is the start of a job whose ranks a model drives itself.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ringattn_runtime::mpi_backend::MpiComm;
use ringattn_runtime::{Comm, Error, Result};

use super::exit_code;
use crate::workers::panic_message;

use crate::cores::{CorePlan, RankMask};
use crate::error::ApiError;
use crate::job::Job;
use crate::memory::MemoryCheck;
use crate::RunSpec;

/// Runs this process's rank of the MPI job of `spec` (made on every rank, its failure agreed on
/// like a bad option; `memory` says what this rank's memory check covers; `describe` words a
/// spec error for the user) with any rank function and root finish (decode runs its own):
/// `precheck` validates what the [`Job`] does not (its failure is agreed on like a bad option:
/// one message from rank 0, exit 2); every rank calls `rank_fn`; rank 0 calls `finish` on its
/// result, whose exit code every rank returns. Rank 0 returns the job's error (for the caller
/// to print); the other ranks stay silent and return the same exit code.
pub fn run_job<G>(
    spec: &dyn Fn() -> Result<RunSpec>,
    allowed_cores: usize,
    memory: MemoryCheck,
    precheck: impl Fn() -> Result<()>,
    describe: fn(ApiError) -> Error,
    rank_fn: impl Fn(&mut dyn Comm, &Job) -> Result<Option<G>>,
    finish: impl Fn(&Job, &str, &G) -> Result<u8>,
) -> Result<u8> {
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
        .and_then(|()| prepare(spec()?, &comm, allowed_cores, cores, memory).map_err(describe));
    let job = match agree(&mut comm, prepared)? {
        Ok(job) => job,
        Err(e) if rank == 0 => return Err(e),
        Err(e) => return Ok(exit_code(&e)),
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
            let code = i32::from(exit_code(&e));
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
                Err(e) => (exit_code(&e), Some(e)),
            }
        }
        (0, None) => {
            let e = Error::Comm {
                rank,
                reason: "rank 0 received no results".into(),
            };
            (exit_code(&e), Some(e))
        }
        _ => (0, None),
    };
    let code = comm.broadcast(0, vec![code])?.first().copied().unwrap_or(1);
    match root_error {
        Some(e) => Err(e),
        None => Ok(code),
    }
}

/// Plans every rank's kernel cores (a collective call): rank 0 gathers each rank's node and
/// affinity mask, plans with [`crate::cores::plan`] and sends the plan to every rank.
pub fn plan_cores(comm: &mut MpiComm, threads: Option<usize>, pin: bool) -> Result<CorePlan> {
    let rank = comm.rank();
    let config = bincode::config::standard();
    let err = |what: &str, e: &dyn std::fmt::Display| Error::Comm {
        rank,
        reason: format!("{what} the core plan: {e}"),
    };
    let mine = RankMask {
        node: comm.node_id(),
        cpus: crate::cores::allowed_cpus(),
    };
    let mine = bincode::serde::encode_to_vec(&mine, config).map_err(|e| err("encoding", &e))?;
    let planned = match comm.gather(0, mine)? {
        Some(parts) => {
            let masks = parts
                .iter()
                .map(|p| bincode::serde::decode_from_slice(p, config).map(|(m, _)| m))
                .collect::<std::result::Result<Vec<RankMask>, _>>()
                .map_err(|e| err("decoding", &e))?;
            let plan = crate::cores::plan(&masks, threads, pin);
            bincode::serde::encode_to_vec(&plan, config).map_err(|e| err("encoding", &e))?
        }
        None => Vec::new(),
    };
    let planned = comm.broadcast(0, planned)?;
    bincode::serde::decode_from_slice(&planned, config)
        .map(|(p, _)| p)
        .map_err(|e| err("decoding", &e))
}

/// Validates the spec on this rank: the world is the MPI size (`world`, when given, must
/// equal it) and threads default to this rank's share of its affinity mask (`cores`).
pub fn prepare(
    mut spec: RunSpec,
    comm: &MpiComm,
    allowed_cores: usize,
    cores: CorePlan,
    memory: MemoryCheck,
) -> std::result::Result<Job, ApiError> {
    let size = comm.size();
    if let Some(given) = spec.world {
        if given != size {
            return Err(ApiError::WorldMismatch { given, size });
        }
    }
    spec.world = Some(size);
    if spec.threads.is_none() {
        let share = (allowed_cores / comm.node_ranks().max(1)).max(1);
        spec.threads = Some(cores.threads.get(comm.rank()).copied().unwrap_or(share));
    }
    let mut job = Job::from_spec_checked(&spec, allowed_cores, memory)?;
    job.cores = cores.cores;
    Ok(job)
}

/// The MPI start of a job that builds its own ranks (a model's `generate`, `eval passkey`):
/// this process's communicator, checked against `world` when given
/// ([`ApiError::WorldMismatch`]), its kernel threads (`threads`, else this node's allowed
/// cores shared by its ranks) and the CPUs to pin them to (the same plan as `run`'s,
/// [`plan_cores`]; empty when the ranks' masks cannot give each its own cores — rank 0 then
/// prints why). Without the pins, a node's ranks float over its cores and meet on one.
pub fn model_world(
    world: Option<usize>,
    threads: Option<usize>,
) -> std::result::Result<(MpiComm, usize, Vec<usize>), ApiError> {
    let mut comm = MpiComm::init()?;
    let size = comm.size();
    if let Some(given) = world.filter(|&w| w != size) {
        return Err(ApiError::WorldMismatch { given, size });
    }
    let plan = plan_cores(&mut comm, threads, true)?;
    if let Some(w) = plan.warning().filter(|_| comm.rank() == 0) {
        eprintln!("{w}");
    }
    let share = (crate::allowed_cores() / comm.node_ranks().max(1)).max(1);
    let rank = comm.rank();
    let threads = plan.threads.get(rank).copied().unwrap_or(share);
    let cores = plan.cores.get(rank).cloned().unwrap_or_default();
    Ok((comm, threads, cores))
}

/// Makes every rank agree on the first rank's failure to prepare (in rank order), so that no
/// rank starts the ring while another has already given up. The outer error is a
/// communication failure; the inner one is the agreed outcome.
pub fn agree<T>(comm: &mut MpiComm, local: Result<T>) -> Result<Result<T>> {
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
pub fn failure_reason(e: &Error) -> String {
    match e {
        Error::RankFailed { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}
