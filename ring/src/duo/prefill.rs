//! DuoAttention prefill across the ring.
//!
//! The query shard and the KV block are split by head kind (query head `h` belongs to KV head
//! `h / (heads / kv_heads)`; each part keeps its heads in ascending order, so the GQA ratio is
//! preserved). Retrieval heads run the plain ring pass with the run's mask. Streaming heads run a
//! *pruned* ring pass with `Mask::Streaming` (the pruning is the ring pass's own, shared with
//! sliding windows and packed documents: [`crate::pass`]): the block that originated at rank s, forwarded from
//! rank r to r + 1, keeps only the rows that a rank which has not seen it yet (r + 1, …, s − 1
//! mod P) may attend — the sink and, per query run of that rank, the window
//! `[first − recent + 1, last]` ([`streaming_key_ranges`]). Blocks that become empty still
//! travel (the ring stays in lockstep) at no payload cost. With the contiguous layout the
//! streaming KV makes one hop of `recent − 1` rows, plus the sink rows that ride along with
//! rank 0's block — DESIGN.md's "one hop plus the sink". Compute covers only the windows through
//! the kernel's Empty / Partial / Full tile classification. The two states are scattered back
//! into full head order.

use std::ops::Range;
use std::time::Instant;

use ringattn_runtime::{
    AttnState, Comm, Error, Executor, KvBlock, Mask, Positions, QShard, Result,
};
use serde::{Deserialize, Serialize};

use super::plan::{DuoPlan, HeadKind};
use crate::pass::{ring_pass_with_progress, RankStats, RingConfig, StepStats};

/// Measurements of a DuoAttention ring pass on one rank.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DuoRankStats {
    /// Both sub-passes together: compute, comm wait, bytes and tiles summed, steps merged by
    /// ring step (same source block), `wall_s` of the whole pass, and `kv_bytes_peak` the most
    /// KV bytes allocated at once on this rank during the ring steps (the other kind's own
    /// block included while one sub-pass runs).
    pub total: RankStats,
    /// KV payload bytes sent for retrieval heads.
    pub bytes_sent_retrieval: u64,
    /// KV payload bytes sent for streaming heads.
    pub bytes_sent_streaming: u64,
    /// The retrieval heads' ring pass, when the plan has retrieval heads.
    pub retrieval: Option<RankStats>,
    /// The streaming heads' pruned ring pass, when the plan has streaming heads.
    pub streaming: Option<RankStats>,
}

/// Runs DuoAttention prefill for this rank: retrieval heads attend every rank's KV with
/// `cfg.mask`, streaming heads attend their sink + recent window with `Mask::Streaming`, and
/// only the KV rows some later rank needs travel. `on_step(step, stats)` is called after each
/// ring step of each sub-pass (retrieval first, then streaming), with that sub-pass's step
/// index. `cfg.fault` fires in the first sub-pass that runs.
///
/// With no streaming heads this is exactly [`ring_pass_with_progress`] (bitwise the same).
/// Errors: a plan whose number of KV heads differs from the block's, heads not a multiple of
/// KV heads, or query and key dims that differ; and any communication failure.
pub fn duo_ring_pass<E: Executor>(
    comm: &mut dyn Comm,
    q: &QShard,
    kv: KvBlock,
    cfg: &RingConfig,
    pool: &E,
    plan: &DuoPlan,
    on_step: &mut dyn FnMut(usize, &StepStats),
) -> Result<(AttnState, DuoRankStats)> {
    if plan.kv_heads() != kv.kv_heads {
        return Err(Error::config(format!(
            "the DuoAttention plan has {} KV heads but the run has {}",
            plan.kv_heads(),
            kv.kv_heads
        )));
    }
    if kv.kv_heads == 0 || !q.heads.is_multiple_of(kv.kv_heads) || q.dim != kv.dim {
        return Err(Error::config(format!(
            "query shard ({} heads, dim {}) does not fit the KV block ({} heads, dim {})",
            q.heads, q.dim, kv.kv_heads, kv.dim
        )));
    }
    let start = Instant::now();
    let retrieval = plan.kv_heads_of(HeadKind::Retrieval);
    let streaming = plan.kv_heads_of(HeadKind::Streaming);
    let stream_cfg = RingConfig {
        mask: Mask::Streaming {
            sink: plan.sink,
            recent: plan.recent,
        },
        ..*cfg
    };
    if streaming.is_empty() {
        let state = AttnState::new(q.heads, q.rows(), q.dim);
        let (state, stats) = ring_pass_with_progress(comm, q, kv, cfg, pool, state, on_step)?;
        return Ok((state, one_kind(stats, HeadKind::Retrieval)));
    }
    if retrieval.is_empty() {
        let state = AttnState::new(q.heads, q.rows(), q.dim);
        let (state, stats) =
            ring_pass_with_progress(comm, q, kv, &stream_cfg, pool, state, on_step)?;
        return Ok((state, one_kind(stats, HeadKind::Streaming)));
    }

    let (kv_ret, kv_str) = (kv.select_heads(&retrieval), kv.select_heads(&streaming));
    // While splitting, the block and its two parts are all allocated.
    let split_peak = kv.allocated_bytes() + kv_ret.allocated_bytes() + kv_str.allocated_bytes();
    drop(kv);
    let (state, mut stats) =
        duo_ring_pass_parts(comm, q, kv_ret, kv_str, cfg, pool, plan, on_step)?;
    stats.total.kv_bytes_peak = stats.total.kv_bytes_peak.max(split_peak);
    stats.total.wall_s = start.elapsed().as_secs_f64();
    Ok((state, stats))
}

/// [`duo_ring_pass`] for a plan with both kinds, with the rank's KV already in two blocks: the
/// retrieval KV heads and the streaming KV heads (each in ascending head order, as
/// [`DuoPlan::kv_heads_of`] lists them). A rank that makes its KV where it lives (synthetic
/// inputs, file reads) builds the two parts directly and never holds the whole block.
#[allow(clippy::too_many_arguments)]
pub fn duo_ring_pass_parts<E: Executor>(
    comm: &mut dyn Comm,
    q: &QShard,
    kv_ret: KvBlock,
    kv_str: KvBlock,
    cfg: &RingConfig,
    pool: &E,
    plan: &DuoPlan,
    on_step: &mut dyn FnMut(usize, &StepStats),
) -> Result<(AttnState, DuoRankStats)> {
    let start = Instant::now();
    let (retrieval, streaming) = (
        plan.kv_heads_of(HeadKind::Retrieval),
        plan.kv_heads_of(HeadKind::Streaming),
    );
    if kv_ret.kv_heads != retrieval.len() || kv_str.kv_heads != streaming.len() {
        return Err(Error::config(format!(
            "KV parts of {} + {} heads for a plan of {} retrieval + {} streaming heads",
            kv_ret.kv_heads,
            kv_str.kv_heads,
            retrieval.len(),
            streaming.len()
        )));
    }
    let group = q.heads / plan.kv_heads().max(1);
    let stream_cfg = RingConfig {
        mask: Mask::Streaming {
            sink: plan.sink,
            recent: plan.recent,
        },
        ..*cfg
    };
    let q_heads_of = |kv_heads: &[usize]| -> Vec<usize> {
        kv_heads
            .iter()
            .flat_map(|&k| k * group..(k + 1) * group)
            .collect()
    };
    let (ret_q, str_q) = (q_heads_of(&retrieval), q_heads_of(&streaming));
    let (q_ret, q_str) = (q.select_heads(&ret_q), q.select_heads(&str_q));
    let str_own = kv_str.allocated_bytes();

    let state = AttnState::new(q_ret.heads, q.rows(), q.dim);
    let (state_ret, stats_ret) =
        ring_pass_with_progress(comm, &q_ret, kv_ret, cfg, pool, state, on_step)?;
    let stream_cfg = RingConfig {
        fault: None,
        ..stream_cfg
    };
    let state = AttnState::new(q_str.heads, q.rows(), q.dim);
    let (state_str, stats_str) =
        ring_pass_with_progress(comm, &q_str, kv_str, &stream_cfg, pool, state, on_step)?;

    let mut state = AttnState::new(q.heads, q.rows(), q.dim);
    state.scatter_heads(&state_ret, &ret_q);
    state.scatter_heads(&state_str, &str_q);
    let mut total = merge(&stats_ret, &stats_str);
    total.kv_bytes_peak = (stats_ret.kv_bytes_peak + str_own).max(stats_str.kv_bytes_peak);
    total.wall_s = start.elapsed().as_secs_f64();
    let stats = DuoRankStats {
        total,
        bytes_sent_retrieval: stats_ret.bytes_sent,
        bytes_sent_streaming: stats_str.bytes_sent,
        retrieval: Some(stats_ret),
        streaming: Some(stats_str),
    };
    Ok((state, stats))
}

/// The key positions a streaming head with queries at `queries` may attend, as global ranges
/// (a superset, exact for stride-1 runs): the sink `[0, min(sink, last + 1))` and, per query
/// run, the window `[first − recent + 1, last]`.
pub fn streaming_key_ranges(queries: &Positions, sink: usize, recent: usize) -> Vec<Range<usize>> {
    Mask::Streaming { sink, recent }.visible_keys(queries)
}

/// Stats of a pass that had heads of one kind only.
fn one_kind(stats: RankStats, kind: HeadKind) -> DuoRankStats {
    let bytes = stats.bytes_sent;
    match kind {
        HeadKind::Retrieval => DuoRankStats {
            total: stats.clone(),
            bytes_sent_retrieval: bytes,
            retrieval: Some(stats),
            ..DuoRankStats::default()
        },
        HeadKind::Streaming => DuoRankStats {
            total: stats.clone(),
            bytes_sent_streaming: bytes,
            streaming: Some(stats),
            ..DuoRankStats::default()
        },
    }
}

/// Sums two sub-passes over the same ring: per step (same source), compute, waits and tiles.
fn merge(a: &RankStats, b: &RankStats) -> RankStats {
    let mut tiles = a.tiles;
    tiles += b.tiles;
    let steps = a
        .steps
        .iter()
        .zip(&b.steps)
        .map(|(x, y)| {
            debug_assert_eq!(x.source, y.source);
            let mut tiles = x.tiles;
            tiles += y.tiles;
            StepStats {
                source: x.source,
                compute_s: x.compute_s + y.compute_s,
                comm_wait_s: x.comm_wait_s + y.comm_wait_s,
                tiles,
            }
        })
        .collect();
    RankStats {
        compute_s: a.compute_s + b.compute_s,
        comm_wait_s: a.comm_wait_s + b.comm_wait_s,
        wall_s: a.wall_s + b.wall_s,
        bytes_sent: a.bytes_sent + b.bytes_sent,
        kv_bytes_peak: a.kv_bytes_peak.max(b.kv_bytes_peak),
        tiles,
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ranges_cover_sink_and_windows() {
        let q = Positions::contiguous(100, 50);
        assert_eq!(streaming_key_ranges(&q, 4, 32), vec![0..4, 69..150]);
        assert_eq!(streaming_key_ranges(&q, 4, 0), vec![0..4]);
        let early = Positions::contiguous(0, 3);
        assert_eq!(streaming_key_ranges(&early, 8, 2), vec![0..3, 0..3]);
        assert!(streaming_key_ranges(&Positions::default(), 4, 32).is_empty());
    }
}
