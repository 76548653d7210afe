//! One rank of an MPI job (feature `mpi`): the collective steps every rank takes before the
//! ring starts. Rank 0 plans every rank's kernel cores from their nodes and affinity masks
//! ([`plan_cores`]); each rank validates the spec against the MPI world ([`prepare`]); the
//! ranks agree on the first failure ([`agree`]) so that a bad option ends every rank with one
//! message, not some ranks waiting in the ring for others that gave up.

use ringattn_runtime::mpi_backend::MpiComm;
use ringattn_runtime::{Comm, Error, Result};

use crate::cores::{CorePlan, RankMask};
use crate::error::ApiError;
use crate::job::Job;
use crate::memory::MemoryCheck;
use crate::RunSpec;

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
