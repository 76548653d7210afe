//! The ring pass of Ring Attention, over any [`Layout`].
//!
//! P ranks, steps t = 0..P−1: rank r computes on the KV block that originated at rank
//! (r − t) mod P while that block is already on its way to rank r + 1 and the next one is in
//! flight (double buffering: at most the current and the incoming block are held). Steps whose
//! tiles are all Empty cost no compute but still forward the block.
//!
//! Under a mask that hides keys from whole ranks (sliding windows, packed documents,
//! DuoAttention streaming heads: [`Mask::prunes_traffic`]) a block forwarded from rank r to r + 1
//! keeps only the rows that some rank which has not seen it yet (r + 1, …, s − 1 mod P) may
//! attend ([`Mask::visible_keys`]); a block that becomes empty still travels (the ring stays in
//! lockstep) at no payload cost. So bytes follow the window (∝ W) and the documents, not N.
//!
//! [`Layout`]: crate::layout::Layout

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use ringattn_runtime::{
    attend, AttnState, Cancellable, Comm, Error, Executor, KvBlock, Mask, Positions, QShard,
    Result, Run, TileCounts, TileShape,
};
use serde::{Deserialize, Serialize};

/// A test hook: make `rank` fail at the start of ring step `step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultInjection {
    /// The rank that fails.
    pub rank: usize,
    /// The ring step at which it fails.
    pub step: usize,
}

/// What the ring pass computes and how.
#[derive(Clone, Debug)]
pub struct RingConfig {
    /// The attention mask.
    pub mask: Mask,
    /// Kernel tile sizes.
    pub tile: TileShape,
    /// Optional injected failure (testing aid).
    pub fault: Option<FaultInjection>,
}

/// Measurements of one ring step on one rank.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepStats {
    /// Rank whose KV block was computed on in this step.
    pub source: usize,
    /// Seconds in the kernel.
    pub compute_s: f64,
    /// Seconds blocked waiting for the next block.
    pub comm_wait_s: f64,
    /// Tile classes of this step (summed over heads).
    pub tiles: TileCounts,
}

/// Measurements of the whole ring pass on one rank.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RankStats {
    /// Seconds in the kernel, all steps.
    pub compute_s: f64,
    /// Seconds blocked waiting for blocks, all steps.
    pub comm_wait_s: f64,
    /// Wall seconds of the pass on this rank.
    pub wall_s: f64,
    /// KV payload bytes this rank sent.
    pub bytes_sent: u64,
    /// Most KV bytes allocated at once on this rank (own/current block + incoming block).
    pub kv_bytes_peak: u64,
    /// Tile classes, all steps.
    pub tiles: TileCounts,
    /// Per-step measurements.
    pub steps: Vec<StepStats>,
}

/// Runs the ring pass for this rank: attends its queries `q` to every rank's KV, starting with
/// its own block `kv`. Returns the unnormalised state of its rows and its measurements.
pub fn ring_pass<E: Executor>(
    comm: &mut dyn Comm,
    q: &QShard,
    kv: KvBlock,
    cfg: &RingConfig,
    pool: &E,
) -> Result<(AttnState, RankStats)> {
    let state = AttnState::new(q.heads, q.rows(), q.dim);
    ring_pass_with_progress(comm, q, kv, cfg, pool, state, &mut |_, _| {})
}

/// [`ring_pass`] into a state the caller prepared (`AttnState::new` for `q`, made before any
/// timing starts), calling `on_step(step, stats)` after each step (for progress display).
/// Under a mask that [prunes traffic](Mask::prunes_traffic) the ranks first exchange their
/// query positions (one gather and one broadcast) and forward only the rows ranks ahead can
/// see ([`ring_pass_pruned`]).
#[allow(clippy::too_many_arguments)]
pub fn ring_pass_with_progress<E: Executor>(
    comm: &mut dyn Comm,
    q: &QShard,
    kv: KvBlock,
    cfg: &RingConfig,
    pool: &E,
    state: AttnState,
    on_step: &mut dyn FnMut(usize, &StepStats),
) -> Result<(AttnState, RankStats)> {
    if cfg.mask.prunes_traffic() && comm.size() > 1 {
        let all = all_positions(comm, &q.positions)?;
        return ring_pass_pruned(comm, q, kv, cfg, pool, state, on_step, &all);
    }
    ring_pass_forwarding(comm, q, kv, cfg, pool, state, on_step, &mut |_, block| {
        Arc::clone(block)
    })
}

/// The ring pass forwarding, at each step, only the rows of the current block that a rank
/// which has not seen it yet may attend under `cfg.mask` (`all[r]` = rank r's query
/// positions). Exact for any mask: a row no remaining rank can see would only ever be Empty.
#[allow(clippy::too_many_arguments)]
pub fn ring_pass_pruned<E: Executor>(
    comm: &mut dyn Comm,
    q: &QShard,
    kv: KvBlock,
    cfg: &RingConfig,
    pool: &E,
    state: AttnState,
    on_step: &mut dyn FnMut(usize, &StepStats),
    all: &[Positions],
) -> Result<(AttnState, RankStats)> {
    let rank = comm.rank();
    let visible: Vec<Vec<Range<usize>>> = all.iter().map(|p| cfg.mask.visible_keys(p)).collect();
    ring_pass_forwarding(
        comm,
        q,
        kv,
        cfg,
        pool,
        state,
        on_step,
        &mut |step, current| {
            let ranges = still_needed(&visible, rank, step);
            if current.positions.intersect_ranges(&ranges).0.len() == current.rows() {
                Arc::clone(current)
            } else {
                Arc::new(current.select_rows(&ranges))
            }
        },
    )
}

/// The key positions that the ranks which have not yet seen the block rank `rank` forwards at
/// ring step `step` may attend: ranks r + 1, …, s − 1 (mod P), with `visible[r]` =
/// [`Mask::visible_keys`] of rank r's queries. The pruned pass forwards exactly the block's rows
/// in these ranges; simulators count its bytes with the same function.
pub fn still_needed(visible: &[Vec<Range<usize>>], rank: usize, step: usize) -> Vec<Range<usize>> {
    let world = visible.len();
    (1..world.saturating_sub(step))
        .flat_map(|j| visible[(rank + j) % world].iter().cloned())
        .collect()
}

/// Every rank's query positions, in rank order (one gather and one broadcast of a few runs).
pub fn all_positions(comm: &mut dyn Comm, mine: &Positions) -> Result<Vec<Positions>> {
    let (rank, world) = (comm.rank(), comm.size());
    let mut bytes = Vec::with_capacity(8 * (1 + 3 * mine.runs().len()));
    bytes.extend((mine.runs().len() as u64).to_le_bytes());
    for r in mine.runs() {
        for x in [r.start, r.len, r.stride] {
            bytes.extend((x as u64).to_le_bytes());
        }
    }
    let gathered = comm.gather(0, bytes)?.map(|parts| parts.concat());
    let all = comm.broadcast(0, gathered.unwrap_or_default())?;
    let bad = || Error::Comm {
        rank,
        reason: "malformed positions exchanged by the ring pass".into(),
    };
    let mut words = all.chunks_exact(8).map(|c| {
        usize::try_from(u64::from_le_bytes(c.try_into().expect("8 bytes"))).map_err(|_| bad())
    });
    let mut next = || -> Result<usize> { words.next().ok_or_else(bad)? };
    (0..world)
        .map(|_| {
            let n = next()?;
            let runs = (0..n)
                .map(|_| {
                    Ok(Run {
                        start: next()?,
                        len: next()?,
                        stride: next()?,
                    })
                })
                .collect::<Result<Vec<Run>>>()?;
            Positions::new(runs).map_err(|_| bad())
        })
        .collect()
}

/// The ring pass with a say in what travels: at each step but the last, `forward(step, block)`
/// returns the block to send on (the block itself, or a smaller copy — DuoAttention's streaming
/// heads send only the rows later ranks may attend). A copy counts toward `kv_bytes_peak`.
///
/// The pass stops with [`Error::Aborted`] as soon as another rank aborts: between steps, and
/// within a step between kernel work items (the executor is wrapped in [`Cancellable`]).
#[allow(clippy::too_many_arguments)]
pub fn ring_pass_forwarding<E: Executor>(
    comm: &mut dyn Comm,
    q: &QShard,
    kv: KvBlock,
    cfg: &RingConfig,
    pool: &E,
    mut state: AttnState,
    on_step: &mut dyn FnMut(usize, &StepStats),
    forward: &mut dyn FnMut(usize, &Arc<KvBlock>) -> Arc<KvBlock>,
) -> Result<(AttnState, RankStats)> {
    assert_eq!(
        (state.heads, state.rows, state.dim),
        (q.heads, q.rows(), q.dim),
        "state does not match the query shard"
    );
    let (rank, world) = (comm.rank(), comm.size());
    let start = Instant::now();
    let mut stats = RankStats {
        kv_bytes_peak: kv.allocated_bytes(),
        ..RankStats::default()
    };
    let mut current = Arc::new(kv);
    // A failure on another rank stops this one between kernel work items, not a step later.
    let cancel = comm.cancel_token();
    let pool = &Cancellable::new(pool, &cancel);
    for step in 0..world {
        if let Some(e) = comm.aborted() {
            return Err(e);
        }
        if let Some(f) = cfg.fault {
            if f.rank == rank && f.step == step {
                return Err(Error::RankFailed {
                    rank,
                    reason: format!("injected fault at ring step {step}"),
                });
            }
        }
        let last = step + 1 == world;
        let mut outgoing = 0;
        if !last {
            let block = forward(step, &current);
            if !Arc::ptr_eq(&block, &current) {
                outgoing = block.allocated_bytes();
            }
            stats.bytes_sent += block.payload_bytes();
            comm.shift_start(block)?;
        }
        let t0 = Instant::now();
        let tiles = attend(q, &current, cfg.mask.clone(), cfg.tile, &mut state, pool);
        let compute_s = t0.elapsed().as_secs_f64();
        if let Some(e) = comm.aborted() {
            // Some items were skipped: the state is incomplete, never return it.
            return Err(e);
        }
        let mut step_stats = StepStats {
            source: current.origin,
            compute_s,
            tiles,
            ..StepStats::default()
        };
        if !last {
            let t1 = Instant::now();
            let next = comm.shift_wait()?;
            step_stats.comm_wait_s = t1.elapsed().as_secs_f64();
            stats.kv_bytes_peak = stats
                .kv_bytes_peak
                .max(current.allocated_bytes() + outgoing + next.allocated_bytes());
            current = next;
        }
        stats.compute_s += step_stats.compute_s;
        stats.comm_wait_s += step_stats.comm_wait_s;
        stats.tiles += tiles;
        on_step(step, &step_stats);
        stats.steps.push(step_stats);
    }
    stats.wall_s = start.elapsed().as_secs_f64();
    Ok((state, stats))
}
