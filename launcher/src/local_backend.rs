//! The embedded backend: every rank is a thread of this process.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread;

use ringattn_runtime::local::local_world;
use ringattn_runtime::{Comm, Error, Result};

use crate::job::Job;
use crate::rank::{run_rank, Gathered};

/// Runs `job` with `job.world` rank threads joined by channels. A failing (or panicking) rank
/// aborts the others; the error returned is the first rank's own failure, not the echoes.
pub fn run_local(job: &Job) -> Result<Gathered> {
    run_local_with(job, run_rank)
}

/// [`run_local`] with any rank function (`ringattn decode` runs its own): every rank thread
/// calls `rank_fn`, whose root (rank 0) result is returned.
pub fn run_local_with<G: Send>(
    job: &Job,
    rank_fn: impl Fn(&mut dyn Comm, &Job) -> Result<Option<G>> + Sync,
) -> Result<G> {
    let comms = local_world(job.world);
    let rank_fn = &rank_fn;
    let results: Vec<Result<Option<G>>> = thread::scope(|scope| {
        let handles: Vec<_> = comms
            .into_iter()
            .map(|mut comm| {
                let rank = comm.rank();
                thread::Builder::new()
                    .name(format!("ringattn-rank-{rank}"))
                    .spawn_scoped(scope, move || {
                        let result = catch_unwind(AssertUnwindSafe(|| rank_fn(&mut comm, job)))
                            .unwrap_or_else(|panic| {
                                Err(Error::RankFailed {
                                    rank,
                                    reason: panic_message(&panic),
                                })
                            });
                        if let Err(e) = &result {
                            if !matches!(e, Error::Aborted { .. }) {
                                comm.abort(&e.to_string());
                            }
                        }
                        result
                    })
                    .expect("spawning a rank thread")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::config("rank thread lost")))
            })
            .collect()
    });
    let mut root = None;
    let mut first_abort = None;
    for result in results {
        match result {
            Ok(Some(g)) => root = Some(g),
            Ok(None) => {}
            Err(e @ Error::Aborted { .. }) => {
                first_abort.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    match (root, first_abort) {
        (_, Some(e)) => Err(e),
        (Some(g), None) => Ok(g),
        (None, None) => Err(Error::Comm {
            rank: 0,
            reason: "root returned no results".into(),
        }),
    }
}

/// The message of a caught panic, as a rank failure reason.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("panicked: {msg}")
}
