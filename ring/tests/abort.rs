//! A failure on one rank ends the others' ring pass mid-step (local backend): the abort is
//! noticed between kernel work items, not after the current ring step.
//!
//! Rank 0 starts a ring step whose kernel call has thousands of work items (tens of seconds on
//! one thread); once its first item runs, rank 1's ring pass hits an injected fault and rank 1
//! aborts the job. Rank 0's first item waits until it sees
//! the abort, so the abort lands mid-step by construction (no timing race). Rank 0 must then
//! return `Aborted` naming rank 1 having run none of the remaining items: the CPU time its kernel
//! thread spends after the abort (from /proc, not a wall clock, so load does not matter) must be
//! a small fraction of what the rest of the step costs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

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
    /// CPU ticks of the kernel thread when the first item saw the cancel, and after the last.
    ticks: std::sync::Mutex<(u64, u64)>,
}

/// CPU time (user + system, in clock ticks of 1/100 s) the calling thread has used, from
/// /proc/thread-self/stat (fields 14 and 15).
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    let after_name = stat.rsplit_once(')').expect("stat has a (comm) field").1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state): utime is field 14, stime field 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
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
                self.ticks.lock().unwrap().0 = thread_cpu_ticks();
            }
            // `work` is the pass's cancellable wrapper: after the cancel it does nothing.
            work(s, item);
            self.ticks.lock().unwrap().1 = thread_cpu_ticks();
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
                ticks: std::sync::Mutex::new((0, 0)),
            };
            let result = ring_pass(&mut rank0, &q, kv, &cfg, &gate);
            let (at_cancel, at_end) = *gate.ticks.lock().unwrap();
            (
                result.map(|_| ()),
                gate.calls.load(Ordering::SeqCst),
                at_end - at_cancel,
            )
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
            ..cfg.clone()
        };
        started_rx
            .recv_timeout(Duration::from_secs(600))
            .expect("rank 0 never started its kernel");
        let failure = ring_pass(&mut rank1, &q1, kv1, &faulty, &pool1).unwrap_err();
        assert!(
            matches!(failure, Error::RankFailed { rank: 1, .. }),
            "{failure}"
        );
        rank1.abort(&failure.to_string());
        assert!(rank1.aborted().is_some());
        let (result, calls, ticks_after_cancel) = worker.join().unwrap();
        match result {
            Err(Error::Aborted { rank: 1, reason }) => {
                assert!(reason.contains("injected fault at ring step 0"), "{reason}")
            }
            other => panic!("rank 0 should be aborted by rank 1, got {other:?}"),
        }
        assert!(calls >= 1, "the kernel ran");
        // Skipping the remaining items costs milliseconds of CPU; computing them is
        // ~2.5 TFLOP, tens of CPU seconds (thousands of ticks) on this one thread.
        assert!(
            ticks_after_cancel < 300,
            "rank 0's kernel thread used {ticks_after_cancel} CPU ticks after the abort"
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
