//! The embedded backend for whole jobs: every rank is a thread of this process.

use ringattn_runtime::{Comm, Error, Result};

use crate::error::ApiError;
use crate::job::Job;
use crate::rank::{run_rank, Gathered};
use crate::workers::run_threads;

/// Runs `job` with `job.world` rank threads joined by channels. A failing (or panicking) rank
/// aborts the others; the error returned is the first rank's own failure, not the echoes.
pub fn run_local(job: &Job) -> Result<Gathered> {
    run_local_with(job, run_rank)
}

/// [`run_local`] with any rank function (decode runs its own): every rank thread calls
/// `rank_fn`, whose root (rank 0) result is returned.
pub fn run_local_with<G: Send>(
    job: &Job,
    rank_fn: impl Fn(&mut dyn Comm, &Job) -> Result<Option<G>> + Sync,
) -> Result<G> {
    let results = run_threads(job.world, |comm| rank_fn(comm, job).map_err(ApiError::from))
        .map_err(Error::from)?;
    results
        .into_iter()
        .flatten()
        .next()
        .ok_or_else(|| Error::Comm {
            rank: 0,
            reason: "root returned no results".into(),
        })
}
