//! Each rank's work on a rayon pool of its own: `threads_per_rank` threads, pinned to the
//! spec's cores when it names them.
//!
//! Why: the projections (`par_chunks_mut` in [`crate::qlinear`], candle's gemm) run on the
//! rayon pool of the thread that calls them. A rank that runs on a thread outside any pool —
//! the main thread of an MPI process — sends every product to rayon's global pool and sleeps
//! until a worker has done it: two thread wake-ups per product, ~211 products per decode step
//! of SmolLM2, and a second runnable thread per rank. Run on its own pool, a rank with one
//! thread does its products inline. In-process ranks ([`crate::generate_with`]) are already on
//! their pools; [`run`] then adds nothing.

use std::sync::mpsc;

use rayon::ThreadPool;
use ringattn_runtime::sched::topology::pin_current_thread;

use crate::error::{ModelError, Result};
use crate::generate::{GenerateReport, GenerateSpec, Progress};

/// The pool of one rank: `spec.threads_per_rank` threads (at least one), thread i pinned to
/// `spec.cores[i]` when there is one.
pub(crate) fn build(spec: &GenerateSpec) -> Result<ThreadPool> {
    let pins = spec.cores.clone();
    rayon::ThreadPoolBuilder::new()
        .num_threads(spec.threads_per_rank.max(1))
        .start_handler(move |i| {
            if let Some(&cpu) = pins.get(i) {
                pin_current_thread(cpu);
            }
        })
        .build()
        .map_err(|e| {
            ModelError::Runtime(ringattn_runtime::Error::config(format!(
                "cannot start matmul threads: {e}"
            )))
        })
}

/// What a rank running on its pool tells the calling thread.
enum Event {
    Layer(usize, usize),
    Token(u32, String),
}

/// Runs `work` (a rank's whole generation) on the rank's own pool ([`build`]) unless the caller
/// already is a pool thread (then directly). Progress reaches `progress`'s callbacks on the
/// calling thread, in order, while the rank runs (rank 0's text streams as before).
pub(crate) fn run<F>(spec: &GenerateSpec, progress: Progress<'_>, work: F) -> Result<GenerateReport>
where
    F: FnOnce(&mut Progress<'_>) -> Result<GenerateReport> + Send,
{
    let mut progress = progress;
    if rayon::current_thread_index().is_some() {
        return work(&mut progress);
    }
    let pool = build(spec)?;
    let (tx, rx) = mpsc::channel::<Event>();
    let mut result = None;
    pool.in_place_scope(|s| {
        let result = &mut result;
        s.spawn(move |_| {
            let layers = tx.clone();
            let mut on_layer = move |done, of| {
                let _ = layers.send(Event::Layer(done, of));
            };
            let mut on_token = move |id, piece: &str| {
                let _ = tx.send(Event::Token(id, piece.to_string()));
            };
            *result = Some(work(&mut Progress {
                on_layer: &mut on_layer,
                on_token: &mut on_token,
            }));
        });
        // Ends when the rank's work has ended (and dropped both senders).
        for event in rx {
            match event {
                Event::Layer(done, of) => (progress.on_layer)(done, of),
                Event::Token(id, piece) => (progress.on_token)(id, &piece),
            }
        }
    });
    result.unwrap_or_else(|| {
        Err(ModelError::Runtime(ringattn_runtime::Error::config(
            "a rank's work ended without a result".to_string(),
        )))
    })
}
