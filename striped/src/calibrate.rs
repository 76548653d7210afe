//! The simulator's calibration: this machine's kernel speed, measured with the kernel itself
//! (`attend` on synthetic blocks), for the simulator's rate and model constants
//! (`ringattn simulate --calibrate`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::Instant;

use crate::PARTIAL_TILE_COST;
use ringattn_runtime::{
    attend, AttnState, Error, KvBlock, Mask, Positions, QShard, Result, SchedConfig, SchedKind,
    Scheduler, Synthetic, TileShape,
};

/// What `--calibrate` measured.
#[derive(Clone, Copy, Debug)]
pub struct Calibration {
    /// Single-thread rate on Full tiles, GFLOP/s.
    pub gflops: f64,
    /// Cost of a Partial tile relative to a Full one.
    pub partial_cost: f64,
    /// Extra seconds of a thread's first kernel call (cold caches, first-touch page faults,
    /// thread start), beyond its later calls.
    pub warmup_s: f64,
}

/// Measures this machine's single-thread kernel speed on `concurrent` threads at once, each
/// its own measurement in lockstep (a barrier starts every round on all threads together, so
/// shared caches, memory bandwidth, turbo limits and vCPU sharing all count), for about
/// `budget_s` seconds; each thread keeps its fastest round (outside load only slows a round
/// down, the neighbours' slowdown is in every round), then the median over threads:
/// - the rate on Full tiles: 2048 query rows against a `rows`-row KV block of one head, so the
///   KV working set is that of a real shard (the rate drops once K and V leave the L2 cache);
/// - the Partial tile cost: a 512-row causal triangle against the same block unmasked.
pub fn calibrate(
    dim: usize,
    rows: usize,
    tile: TileShape,
    budget_s: f64,
    concurrent: usize,
) -> Result<Calibration> {
    let n = concurrent.max(1);
    let barrier = Barrier::new(n);
    let stop = AtomicBool::new(false);
    let results: Vec<Result<Calibration>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (barrier, stop) = (&barrier, &stop);
                scope.spawn(move || calibrate_one(dim, rows, tile, budget_s, i == 0, barrier, stop))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::config("calibration thread panicked")))
            })
            .collect()
    });
    let mut all = results.into_iter().collect::<Result<Vec<_>>>()?;
    let mid = all.len() / 2;
    all.sort_by(|a, b| a.gflops.total_cmp(&b.gflops));
    let gflops = all[mid].gflops;
    all.sort_by(|a, b| a.partial_cost.total_cmp(&b.partial_cost));
    let partial_cost = all[mid].partial_cost;
    all.sort_by(|a, b| a.warmup_s.total_cmp(&b.warmup_s));
    Ok(Calibration {
        gflops,
        partial_cost,
        warmup_s: all[mid].warmup_s,
    })
}

/// One thread's calibration (see [`calibrate`]); the `leader` decides when to stop.
fn calibrate_one(
    dim: usize,
    rows: usize,
    tile: TileShape,
    budget_s: f64,
    leader: bool,
    barrier: &Barrier,
    stop: &AtomicBool,
) -> Result<Calibration> {
    let heads = 1;
    let source = Synthetic { seed: 7 };
    let q_rows = rows.min(512);
    // The rate round uses 2048 queries so that packing the block's K/V (once per call, as in
    // a ring step) weighs as little as in a real step: with 512 it was ~15% of the round.
    let big_rows = rows.min(2048);
    let q_pos = Positions::contiguous(rows - big_rows, big_rows);
    let k_pos = Positions::contiguous(0, rows);
    let small = Positions::contiguous(0, q_rows);
    let inputs = (|| -> Result<_> {
        Ok((
            QShard::from_source(&source, heads, dim, q_pos.clone())?,
            KvBlock::from_source(&source, 0, heads, dim, k_pos.clone())?,
            QShard::from_source(&source, heads, dim, small.clone())?,
            KvBlock::from_source(&source, 0, heads, dim, small.clone())?,
        ))
    })();
    // The same executor a rank uses (one unpinned thread), so calibration and runs agree.
    let pool = Scheduler::new(SchedConfig::new(SchedKind::Static, 1, Vec::new()));
    // Every thread reaches every barrier, even after a failure, so none waits forever.
    let ready = match (&inputs, &pool) {
        (Ok(_), Ok(_)) => true,
        _ => {
            stop.store(true, Ordering::SeqCst);
            false
        }
    };
    barrier.wait();
    let mut rounds: [Vec<f64>; 3] = Default::default();
    let mut cold = 0.0;
    if ready {
        let (q, kv, q_small, kv_small) = inputs.as_ref().expect("checked");
        let pool = pool.as_ref().expect("checked");
        let run = |q: &QShard, kv: &KvBlock, mask: Mask| {
            let mut state = AttnState::new(heads, q.rows(), dim);
            let t = Instant::now();
            attend(q, kv, mask, tile, &mut state, pool);
            t.elapsed().as_secs_f64().max(1e-9)
        };
        // The first call of a fresh thread on fresh buffers: what a rank's first step pays.
        cold = run(q, kv, Mask::None);
        let start = Instant::now();
        loop {
            barrier.wait();
            if stop.load(Ordering::SeqCst) {
                break;
            }
            rounds[0].push(run(q, kv, Mask::None));
            rounds[1].push(run(q_small, kv_small, Mask::None));
            rounds[2].push(run(q_small, kv_small, Mask::Causal));
            let n = rounds[0].len();
            if leader && n >= 3 && (start.elapsed().as_secs_f64() >= budget_s || n >= 100) {
                stop.store(true, Ordering::SeqCst);
            }
        }
    } else {
        // Keep the others' rounds in step until they see `stop`.
        barrier.wait();
    }
    inputs?;
    pool.map_err(|e| Error::config(format!("cannot start a calibration thread: {e}")))?;
    Ok(from_rounds(
        &rounds,
        cold,
        dim,
        tile,
        (&q_pos, &k_pos, &small),
    ))
}

/// The calibration from one thread's timed rounds (see [`calibrate_one`]): the rate of the
/// fastest big round, the Partial tile cost from the small rounds, the cold call's excess.
fn from_rounds(
    rounds: &[Vec<f64>; 3],
    cold: f64,
    dim: usize,
    tile: TileShape,
    (q_pos, k_pos, small): (&Positions, &Positions, &Positions),
) -> Calibration {
    // The fastest round: outside load only slows a round down, while the neighbours' slowdown
    // is in every round (they start together).
    let fastest = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let best = [
        fastest(&rounds[0]),
        fastest(&rounds[1]),
        fastest(&rounds[2]),
    ];
    let big = ringattn_runtime::count_tiles(q_pos, k_pos, Mask::None, tile);
    let full = ringattn_runtime::count_tiles(small, small, Mask::None, tile);
    let causal = ringattn_runtime::count_tiles(small, small, Mask::Causal, tile);
    let small_tile_s = best[1] / full.full as f64;
    let partial_cost = if causal.partial > 0 {
        ((best[2] / small_tile_s - causal.full as f64) / causal.partial as f64).clamp(1.0, 4.0)
    } else {
        PARTIAL_TILE_COST
    };
    let flops = 4.0 * dim as f64 * (big.full as usize * tile.q * tile.k) as f64;
    Calibration {
        gflops: flops / best[0] / 1e9,
        partial_cost,
        warmup_s: (cold - best[0]).max(0.0),
    }
}

/// What [`calibrate_rank_rate`] measures for: one simulated run's shape and machine.
#[derive(Clone, Copy, Debug)]
pub struct RateProbe {
    /// Head dimension (at least 1).
    pub head_dim: usize,
    /// Sequence length (the KV block of a rank has `seq / workers` rows, 512 to 16384).
    pub seq: usize,
    /// Ranks (at least 1).
    pub workers: usize,
    /// Kernel threads per rank.
    pub threads: usize,
    /// Cores the ranks share (at least 1 is assumed).
    pub cores: usize,
    /// The ranks share one node of `cores` cores: the rate is measured on one busy thread and
    /// the slowdown with all of them busy is extrapolated.
    pub one_node: bool,
    /// Kernel tile shape (both sides at least 1).
    pub tile: TileShape,
}

/// A rank's calibrated rate and the simulator constants measured with it.
#[derive(Clone, Debug)]
pub struct RankRate {
    /// One rank's rate on unmasked tiles (per-thread rate × threads), GFLOP/s.
    pub gflops: f64,
    /// Cost of a Partial tile relative to a Full one.
    pub partial_cost: f64,
    /// Speed of one thread when all cores are busy, relative to one busy thread.
    pub all_busy_speed: f64,
    /// How it was measured, in words (the report's `gflops_source`).
    pub source: String,
}

/// Measures the rank rate for `p` on this machine (about a second): as many threads as the
/// ranks keep busy at once (at most the cores) run [`calibrate`] together.
pub fn calibrate_rank_rate(p: &RateProbe) -> Result<RankRate> {
    if p.head_dim == 0 || p.tile.q == 0 || p.tile.k == 0 || p.workers == 0 {
        return Err(Error::config(
            "workers, head_dim, tile.q and tile.k must be at least 1",
        ));
    }
    let rows = (p.seq / p.workers).clamp(512, 16384);
    // Threads the ranks keep busy at once, at most the cores.
    let cores = p.cores.max(1);
    let busy = p.workers.saturating_mul(p.threads).min(cores).max(1);
    let (c, speed, note) = if p.one_node && busy > 1 {
        // One node: the rate of one busy thread, and the slowdown with `busy` threads,
        // extrapolated to all cores busy.
        let one = calibrate(p.head_dim, rows, p.tile, 0.3, 1)?;
        let many = calibrate(p.head_dim, rows, p.tile, 0.3, busy)?;
        let s = many.gflops / one.gflops;
        let all = 1.0 + (s - 1.0) * (cores - 1) as f64 / (busy - 1) as f64;
        let note = format!(
            "1 busy thread; ×{s:.2} with {busy} busy; first call +{:.1} ms",
            many.warmup_s * 1e3
        );
        (one, all.clamp(0.2, 1.0), note)
    } else {
        let c = calibrate(p.head_dim, rows, p.tile, 0.4, busy)?;
        (c, 1.0, format!("{busy} busy thread(s)"))
    };
    Ok(RankRate {
        gflops: c.gflops * p.threads as f64,
        partial_cost: c.partial_cost,
        all_busy_speed: speed,
        source: format!(
            "calibrated: {:.2} GFLOP/s per thread × {} ({note}), {rows}-row KV blocks",
            c.gflops, p.threads
        ),
    })
}
