//! Running one function per rank on threads of this process (the local backend): every rank
//! gets a [`Comm`] joined to the others by channels.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread;

use ringattn_runtime::local::local_world;
use ringattn_runtime::{Comm, Error};

use crate::error::ApiError;

/// Runs `rank_fn` on `world` rank threads joined by channels and returns every rank's result,
/// in rank order. A failing (or panicking) rank aborts the others; the error returned is the
/// first rank's own failure, not the other ranks' echoes of it.
pub fn run_threads<G: Send>(
    world: usize,
    rank_fn: impl Fn(&mut dyn Comm) -> Result<G, ApiError> + Sync,
) -> Result<Vec<G>, ApiError> {
    if world == 0 {
        return Err(ApiError::Zero { field: "world" });
    }
    let comms = local_world(world);
    let rank_fn = &rank_fn;
    let results: Vec<Result<G, ApiError>> = thread::scope(|scope| {
        let handles: Vec<_> = comms
            .into_iter()
            .map(|mut comm| {
                let rank = comm.rank();
                thread::Builder::new()
                    .name(format!("ringattn-rank-{rank}"))
                    .spawn_scoped(scope, move || {
                        let result = catch_unwind(AssertUnwindSafe(|| rank_fn(&mut comm)))
                            .unwrap_or_else(|panic| {
                                Err(ApiError::Runtime(Error::RankFailed {
                                    rank,
                                    reason: panic_message(&panic),
                                }))
                            });
                        if let Err(e) = &result {
                            if !e.is_abort() {
                                comm.abort(&e.to_string());
                            }
                        }
                        result
                    })
                    .map_err(|e| {
                        ApiError::Runtime(Error::config(format!("spawning a rank thread: {e}")))
                    })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(Error::config("rank thread lost").into())),
                Err(e) => Err(e),
            })
            .collect()
    });
    first_failure(results)
}

/// Every rank's value, or the first rank's own failure (an abort only when no rank failed
/// on its own).
fn first_failure<G>(results: Vec<Result<G, ApiError>>) -> Result<Vec<G>, ApiError> {
    let mut values = Vec::with_capacity(results.len());
    let mut first_abort = None;
    for result in results {
        match result {
            Ok(g) => values.push(g),
            Err(e) if e.is_abort() => {
                first_abort.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    match first_abort {
        Some(e) => Err(e),
        None => Ok(values),
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
