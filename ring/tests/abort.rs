//! A failure on one rank ends the others' ring pass mid-step (local backend): the abort is
//! noticed between kernel work items, not after the current ring step.
//!
//! Rank 0 starts a ring step whose kernel call has thousands of work items (tens of seconds on
//! one thread); once its first item runs, rank 1's ring pass hits an injected fault and rank 1
//! aborts the job. Rank 0's first item waits until it sees
//! the abort, so the abort lands mid-step by construction (no timing race). Rank 0 must then
//! return `Aborted` naming rank 1 having run none of the remaining items; the wall-clock bound
//! is generous (it only catches a pass that computes the rest of the step).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ringattn_ring::{ring_pass, FaultInjection, RingConfig};
use ringattn_runtime::local::local_world;
use ringattn_runtime::{
    CancelToken, Comm, Error, Executor, KvBlock, Mask, Positions, QShard, Synthetic, TileShape,
};

/// Wraps a pool: signals `started` at the first item and holds that item until `token` is
/// cancelled, so the abort lands mid-step.
struct Gate<'a> {
    pool: &'a rayon::ThreadPool,
    token: CancelToken,
    started: mpsc::Sender<()>,
    calls: AtomicUsize,
}

impl Executor for Gate<'_> {
    fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    fn run<T: Send, S: Send>(
        &self,
        class: &str,
        items: &mut [T],
        cost: &(dyn Fn(&T) -> f64 + Sync),
        init: &(dyn Fn() -> S + Sync),
        work: &(dyn Fn(&mut S, &mut T) + Sync),
    ) -> Vec<S> {
        self.pool.run(class, items, cost, init, &|s, item| {
            if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = self.started.send(());
                while !self.token.is_cancelled() {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            // `work` is the pass's cancellable wrapper: after the cancel it does nothing.
            work(s, item);
        })
    }
}

#[test]
fn abort_on_another_rank_ends_a_ring_step_between_kernel_items() {
    // 49,152 rows × 49,152 keys × 4 heads × d 64 ≈ 2.5 TFLOP in rank 0's first step: tens of
    // seconds on one thread, so finishing the step instead of stopping shows.
    let (heads, dim, n) = (4, 64, 2 * 49152);
    let src = Synthetic { seed: 3 };
    let cfg = RingConfig {
        mask: Mask::None,
        tile: TileShape { q: 32, k: 256 },
        fault: None,
    };
    let mut comms = local_world(2);
    let mut rank1 = comms.pop().unwrap();
    let mut rank0 = comms.pop().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    thread::scope(|s| {
        let worker = s.spawn(|| {
            let positions = Positions::contiguous(0, n / 2);
            let q = QShard::from_source(&src, heads, dim, positions.clone()).unwrap();
            let kv = KvBlock::from_source(&src, 0, heads, dim, positions).unwrap();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            let gate = Gate {
                pool: &pool,
                token: rank0.cancel_token(),
                started: started_tx,
                calls: AtomicUsize::new(0),
            };
            let result = ring_pass(&mut rank0, &q, kv, &cfg, &gate);
            (result.map(|_| ()), gate.calls.load(Ordering::SeqCst))
        });
        // Rank 1 is a worker whose ring pass fails at step 0 (the injected fault), and which
        // aborts the job with its error as a launcher worker does.
        let positions = Positions::contiguous(n / 2, n / 2);
        let q1 = QShard::from_source(&src, heads, dim, positions.clone()).unwrap();
        let kv1 = KvBlock::from_source(&src, 1, heads, dim, positions).unwrap();
        let pool1 = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let faulty = RingConfig {
            fault: Some(FaultInjection { rank: 1, step: 0 }),
            ..cfg
        };
        started_rx
            .recv_timeout(Duration::from_secs(600))
            .expect("rank 0 never started its kernel");
        let aborted_at = Instant::now();
        let failure = ring_pass(&mut rank1, &q1, kv1, &faulty, &pool1).unwrap_err();
        assert!(
            matches!(failure, Error::RankFailed { rank: 1, .. }),
            "{failure}"
        );
        rank1.abort(&failure.to_string());
        assert!(rank1.aborted().is_some());
        let (result, calls) = worker.join().unwrap();
        let took = aborted_at.elapsed();
        match result {
            Err(Error::Aborted { rank: 1, reason }) => {
                assert!(reason.contains("injected fault at ring step 0"), "{reason}")
            }
            other => panic!("rank 0 should be aborted by rank 1, got {other:?}"),
        }
        assert!(calls >= 1, "the kernel ran");
        // Generous (the issue asks for ~100 ms): the rest of the step is tens of seconds.
        assert!(
            took < Duration::from_secs(5),
            "rank 0 ended {took:?} after the abort"
        );
    });
}

#[test]
fn an_abort_before_a_step_ends_the_pass_at_that_step() {
    let mut comms = local_world(2);
    let rank1 = comms.pop().unwrap();
    let mut rank0 = comms.pop().unwrap();
    rank1.abort("gone");
    let src = Synthetic { seed: 1 };
    let positions = Positions::contiguous(0, 8);
    let q = QShard::from_source(&src, 2, 8, positions.clone()).unwrap();
    let kv = KvBlock::from_source(&src, 0, 2, 8, positions).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let cfg = RingConfig {
        mask: Mask::Causal,
        tile: TileShape::default(),
        fault: None,
    };
    let err = ring_pass(&mut rank0, &q, kv, &cfg, &pool).unwrap_err();
    assert!(matches!(err, Error::Aborted { rank: 1, .. }), "{err}");
}
