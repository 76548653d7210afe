//! Distributed decode after a ring prefill, plain or with DuoAttention (tree-style decoding).
//!
//! After the prefill of `N` tokens each rank holds the K/V of its layout positions. Then:
//!
//! - **Retrieval heads** (every head without a plan): the full cache stays distributed. The
//!   token at position `p = N + step` is appended on its owner, [`Layout::decode_owner`]
//!   (striped: `p mod P`, so the cache stays balanced; contiguous: the last rank; zigzag: rank
//!   0, which owns the last of the 2P chunks).
//! - **Streaming heads**: at decode start their sink tokens (`k < sink`) and last `recent`
//!   prefill tokens are gathered to ONE rank, the owner of the last prefill token (the
//!   *stream rank*); the other ranks drop them. The stream rank keeps a bounded cache, appends
//!   each new streaming K/V row and cuts back to sink + recent rows after every step
//!   ([`HeadCache::truncate_streaming`](ringattn_runtime::HeadCache::truncate_streaming)).
//!
//! Each step: the owner makes the query row of every head and the new K/V rows (from the
//! input, as file inputs would be read), appends its retrieval rows and broadcasts the query
//! with the streaming heads' K/V; every rank computes a partial state over its cache
//! ([`decode_attend`], retrieval heads under `Mask::Causal`, streaming heads under
//! `Mask::Streaming` — query `p` sees key `k` iff `k <= p` and (`k < sink` or `p − k < recent`),
//! the same rule as the prefill); the partials are gathered to the owner and merged by
//! log-sum-exp in rank order, which finalises the output row. Results therefore do not depend
//! on the thread count, and an all-retrieval plan is bitwise plain decode.

use std::time::Instant;

use ringattn_runtime::{
    decode_attend, AttnState, Comm, Dtype, Error, Executor, KvBlock, KvCache, KvHeadSubset, Mask,
    QShard, Result, RowSource, TensorKind, TileShape,
};
use serde::{Deserialize, Serialize};

mod cache;
mod roles;

use super::plan::{DuoPlan, HeadKind};
use crate::layout::Layout;
use crate::pass::{ring_pass_with_progress, RankStats, RingConfig, StepStats};
use cache::{build_cache, decode_bytes, encode};
pub use roles::{decode_masks, decode_masks_for, DecodeRoles};

/// Shape and length of a decode run, identical on every rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeSpec {
    /// Prompt length `N`: tokens prefilled by the ring pass.
    pub prefill: usize,
    /// Tokens decoded after the prefill (positions `N..N + steps`).
    pub steps: usize,
    /// Query heads.
    pub heads: usize,
    /// KV heads (GQA when fewer than `heads`).
    pub kv_heads: usize,
    /// Head dimension.
    pub dim: usize,
    /// Storage type of the cached K and V.
    pub dtype: Dtype,
}

impl DecodeSpec {
    /// Checks the sizes against a world of `world` ranks and the plan.
    pub fn validate(&self, world: usize, duo: Option<&DuoPlan>) -> Result<()> {
        if self.heads == 0 || self.kv_heads == 0 || self.dim == 0 || world == 0 {
            return Err(Error::config(
                "heads, kv_heads, head dim and world must be at least 1",
            ));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(Error::config(format!(
                "{} heads is not a multiple of {} KV heads",
                self.heads, self.kv_heads
            )));
        }
        if self.prefill.checked_add(self.steps).is_none() {
            return Err(Error::config(format!(
                "prefill {} + steps {} passes the largest position",
                self.prefill, self.steps
            )));
        }
        if self.prefill < world {
            return Err(Error::config(format!(
                "a prefill of {} tokens over {world} ranks: every rank needs at least one token",
                self.prefill
            )));
        }
        match duo {
            Some(plan) if plan.kv_heads() != self.kv_heads => Err(Error::config(format!(
                "the DuoAttention plan has {} KV heads, the run {}",
                plan.kv_heads(),
                self.kv_heads
            ))),
            _ => Ok(()),
        }
    }
}

/// The decoded output of one token, on the rank that owns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecodedRow {
    /// Decode step (0-based).
    pub step: usize,
    /// Absolute position of the token (`prefill + step`).
    pub pos: usize,
    /// `out[heads][dim]`.
    pub out: Vec<f32>,
    /// `lse[heads]` (−∞ for a head that saw no key).
    pub lse: Vec<f32>,
}

/// Measurements of one decode step on one rank.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DecodeStepStats {
    /// Absolute position decoded.
    pub pos: usize,
    /// Owner of the token.
    pub owner: usize,
    /// Wall seconds of the step on this rank.
    pub step_s: f64,
    /// Seconds in the decode kernel.
    pub compute_s: f64,
    /// Seconds outside the kernel: the query broadcast (on the owner: making the query and K/V
    /// rows too) and the reduction, including waiting for other ranks.
    pub comm_wait_s: f64,
    /// (query head, key) pairs this rank computed.
    pub pairs: u64,
}

/// Measurements of the decode phase on one rank.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DecodeStats {
    /// Seconds filling the cache (and gathering the streaming heads' rows).
    pub setup_s: f64,
    /// Wall seconds of all steps.
    pub wall_s: f64,
    /// Seconds in the decode kernel, all steps.
    pub compute_s: f64,
    /// Seconds in broadcasts and reductions, all steps.
    pub comm_wait_s: f64,
    /// Bytes this rank sent (streaming rows at setup, queries, partial states).
    pub bytes_sent: u64,
    /// Most KV cache bytes allocated at once (capacities × element size).
    pub kv_bytes_peak: u64,
    /// Rows cached at the end, all heads.
    pub cache_rows: usize,
    /// (query head, key) pairs computed, all steps.
    pub pairs: u64,
    /// Per-step measurements.
    pub steps: Vec<DecodeStepStats>,
}

/// What a rank ends the decode with.
#[derive(Clone, Debug)]
pub struct DecodeOutput {
    /// The rows of the tokens this rank owns, in step order.
    pub rows: Vec<DecodedRow>,
    /// Its measurements.
    pub stats: DecodeStats,
    /// Its cache after the last step.
    pub cache: KvCache,
}

/// The prefill: a causal ring pass over every head (the run's mask for decode), or with `duo`
/// DuoAttention's prefill ([`duo_ring_pass`](super::duo_ring_pass): streaming heads attend and
/// send only their windows), this rank's shard made from `source`. Returns its state and
/// measurements (`bytes_sent` of all heads) and the bytes of those sent for streaming heads.
#[allow(clippy::too_many_arguments)]
pub fn prefill_for_decode<E: Executor>(
    comm: &mut dyn Comm,
    layout: &dyn Layout,
    source: &dyn RowSource,
    spec: &DecodeSpec,
    duo: Option<&DuoPlan>,
    tile: TileShape,
    pool: &E,
    on_step: &mut dyn FnMut(usize, &StepStats),
) -> Result<(AttnState, RankStats, u64)> {
    let base = Mask::Causal;
    prefill_for_decode_masked(
        comm,
        layout,
        source,
        spec,
        (duo, &base),
        tile,
        pool,
        on_step,
    )
}

/// [`prefill_for_decode`] under `base` (a causal mask, possibly with a sliding window or packed
/// documents) instead of the plain causal mask.
#[allow(clippy::too_many_arguments)]
pub fn prefill_for_decode_masked<E: Executor>(
    comm: &mut dyn Comm,
    layout: &dyn Layout,
    source: &dyn RowSource,
    spec: &DecodeSpec,
    (duo, base): (Option<&DuoPlan>, &Mask),
    tile: TileShape,
    pool: &E,
    on_step: &mut dyn FnMut(usize, &StepStats),
) -> Result<(AttnState, RankStats, u64)> {
    let (rank, world) = (comm.rank(), comm.size());
    let positions = layout.positions(rank, world, spec.prefill);
    let q = QShard::from_source(source, spec.heads, spec.dim, positions.clone())?;
    // K/V of the KV heads `heads`, made where they live.
    let kv_of = |heads: &[usize]| {
        let view = KvHeadSubset {
            inner: source,
            heads,
        };
        KvBlock::from_source_as(
            &view,
            rank,
            heads.len(),
            spec.dim,
            positions.clone(),
            spec.dtype,
        )
    };
    let cfg = RingConfig {
        mask: base.clone(),
        tile,
        fault: None,
    };
    if let Some(plan) = duo {
        let (ret, st) = (
            plan.kv_heads_of(HeadKind::Retrieval),
            plan.kv_heads_of(HeadKind::Streaming),
        );
        let (state, stats) = if ret.is_empty() || st.is_empty() {
            let kv = kv_of(&(0..spec.kv_heads).collect::<Vec<_>>())?;
            super::duo_ring_pass(comm, &q, kv, &cfg, pool, plan, on_step)?
        } else {
            let (r, s) = (kv_of(&ret)?, kv_of(&st)?);
            super::duo_ring_pass_parts(comm, &q, r, s, &cfg, pool, plan, on_step)?
        };
        return Ok((state, stats.total, stats.bytes_sent_streaming));
    }
    let kv = KvBlock::from_source_as(source, rank, spec.kv_heads, spec.dim, positions, spec.dtype)?;
    let state = AttnState::new(spec.heads, q.rows(), spec.dim);
    let (state, stats) = ring_pass_with_progress(comm, &q, kv, &cfg, pool, state, on_step)?;
    Ok((state, stats, 0))
}

/// Fills this rank's cache after the prefill and runs every decode step (see the module docs).
/// `duo: None` is plain decode (every head retrieval).
///
/// The cache is filled from `source`, the rows the prefill read (inputs are generated or read
/// where they live), with every head's capacity reserved at once; the prefill's ring buffers
/// are released by then, so they never coexist with the cache.
#[allow(clippy::too_many_arguments)]
pub fn decode<E: Executor>(
    comm: &mut dyn Comm,
    layout: &dyn Layout,
    source: &dyn RowSource,
    spec: &DecodeSpec,
    duo: Option<&DuoPlan>,
    pool: &E,
    on_step: &mut dyn FnMut(usize, &DecodeStepStats),
) -> Result<DecodeOutput> {
    decode_masked(
        comm,
        layout,
        source,
        spec,
        (duo, &Mask::Causal),
        pool,
        on_step,
    )
}

/// [`decode`] under `base` for retrieval heads (causal, possibly with a sliding window or
/// packed documents; decoded tokens belong to the last document). Every rank drops the cached
/// keys no later query can see ([`Mask::first_needed_key`]): a windowed cache keeps about W
/// keys in all, whatever the number of steps.
#[allow(clippy::too_many_arguments)]
pub fn decode_masked<E: Executor>(
    comm: &mut dyn Comm,
    layout: &dyn Layout,
    source: &dyn RowSource,
    spec: &DecodeSpec,
    (duo, base): (Option<&DuoPlan>, &Mask),
    pool: &E,
    on_step: &mut dyn FnMut(usize, &DecodeStepStats),
) -> Result<DecodeOutput> {
    let world = comm.size();
    spec.validate(world, duo)?;
    let roles = DecodeRoles::new(layout, world, spec);
    let setup = Instant::now();
    let (mut cache, setup_bytes) = build_cache(comm, layout, source, spec, duo, &roles)?;
    let mut stats = DecodeStats {
        setup_s: setup.elapsed().as_secs_f64(),
        bytes_sent: setup_bytes,
        kv_bytes_peak: cache.allocated_bytes(),
        ..DecodeStats::default()
    };
    let masks = decode_masks_for(spec.kv_heads, duo, base);
    evict(&mut cache, &masks, spec.prefill);
    let rows = run_steps(
        comm,
        source,
        spec,
        (duo, &masks),
        &roles,
        &mut cache,
        pool,
        &mut stats,
        on_step,
    )?;
    stats.cache_rows = cache.rows();
    Ok(DecodeOutput { rows, stats, cache })
}

/// The owner's message of one step: every head's query row, and the streaming heads' new K/V.
#[derive(Default, Serialize, Deserialize)]
struct StepMessage {
    q: Vec<f32>,
    stream_k: Vec<f32>,
    stream_v: Vec<f32>,
}

/// Drops, on every head whose mask allows it, the cached keys that no query from `next_pos`
/// on can see.
fn evict(cache: &mut KvCache, masks: &[Mask], next_pos: usize) {
    for (g, mask) in masks.iter().enumerate() {
        let first = mask.first_needed_key(next_pos);
        if first > 0 {
            cache.head_mut(g).evict_below(first);
        }
    }
}

/// The owner's message for the token at `pos`: every head's query row and the streaming heads'
/// new K/V; the retrieval heads' K/V rows are appended to the owner's cache.
fn owner_message(
    source: &dyn RowSource,
    spec: &DecodeSpec,
    streaming: &[usize],
    pos: usize,
    cache: &mut KvCache,
) -> Result<StepMessage> {
    let dim = spec.dim;
    let (mut k, mut v) = (vec![0.0f32; dim], vec![0.0f32; dim]);
    let mut msg = StepMessage {
        q: vec![0.0f32; spec.heads * dim],
        ..StepMessage::default()
    };
    for (h, row) in msg.q.chunks_exact_mut(dim).enumerate() {
        source.fill_row(TensorKind::Q, h, pos, row)?;
    }
    for g in 0..spec.kv_heads {
        source.fill_row(TensorKind::K, g, pos, &mut k)?;
        source.fill_row(TensorKind::V, g, pos, &mut v)?;
        if !streaming.contains(&g) {
            cache.head_mut(g).append(pos, &k, &v)?;
        } else {
            msg.stream_k.extend_from_slice(&k);
            msg.stream_v.extend_from_slice(&v);
        }
    }
    Ok(msg)
}

/// Gathers every rank's partial state of the token at `pos` to `owner`, which merges them in
/// rank order and returns the finished row (`None` on the other ranks). Counts the bytes sent.
fn reduce_to_owner(
    comm: &mut dyn Comm,
    state: &AttnState,
    (owner, step, pos): (usize, usize, usize),
    stats: &mut DecodeStats,
) -> Result<Option<DecodedRow>> {
    let rank = comm.rank();
    let part = encode(rank, state)?;
    if rank != owner {
        stats.bytes_sent += part.len() as u64;
    }
    let Some(parts) = comm.gather(owner, part)? else {
        return Ok(None);
    };
    let mut merged = AttnState::new(state.heads, 1, state.dim);
    for p in &parts {
        merged.merge(&decode_bytes(rank, p)?);
    }
    let fin = merged.finalize_checked(&ringattn_runtime::Positions::contiguous(pos, 1))?;
    Ok(Some(DecodedRow {
        step,
        pos,
        out: fin.out,
        lse: fin.lse,
    }))
}

#[allow(clippy::too_many_arguments)]
fn run_steps<E: Executor>(
    comm: &mut dyn Comm,
    source: &dyn RowSource,
    spec: &DecodeSpec,
    (duo, masks): (Option<&DuoPlan>, &[Mask]),
    roles: &DecodeRoles,
    cache: &mut KvCache,
    pool: &E,
    stats: &mut DecodeStats,
    on_step: &mut dyn FnMut(usize, &DecodeStepStats),
) -> Result<Vec<DecodedRow>> {
    let (rank, dim) = (comm.rank(), spec.dim);
    let streaming: Vec<usize> = duo.map_or(Vec::new(), |p| p.kv_heads_of(HeadKind::Streaming));
    let mut rows = Vec::new();
    let start = Instant::now();
    for (step, &owner) in roles.owners.iter().enumerate() {
        let t0 = Instant::now();
        let pos = spec.prefill + step;
        let mut msg = StepMessage::default();
        if rank == owner {
            msg = owner_message(source, spec, &streaming, pos, cache)?;
        }
        let payload = if rank == owner {
            encode(rank, &msg)?
        } else {
            Vec::new()
        };
        let bytes = comm.broadcast(owner, payload)?;
        if rank == owner {
            stats.bytes_sent += (bytes.len() * (comm.size() - 1)) as u64;
        } else {
            msg = decode_bytes(rank, &bytes)?;
        }
        if rank == roles.stream_rank {
            for (i, &g) in streaming.iter().enumerate() {
                let r = i * dim..(i + 1) * dim;
                cache
                    .head_mut(g)
                    .append(pos, &msg.stream_k[r.clone()], &msg.stream_v[r])?;
            }
        }
        stats.kv_bytes_peak = stats.kv_bytes_peak.max(cache.allocated_bytes());
        let t1 = Instant::now();
        let mut state = AttnState::new(spec.heads, 1, dim);
        let pairs = decode_attend(&msg.q, pos, cache, masks, &mut state, pool);
        let compute_s = t1.elapsed().as_secs_f64();
        if let (true, Some(plan)) = (rank == roles.stream_rank, duo) {
            for &g in &streaming {
                cache.head_mut(g).truncate_streaming(plan.sink, plan.recent);
            }
        }
        evict(cache, masks, pos + 1);
        let t2 = Instant::now();
        rows.extend(reduce_to_owner(comm, &state, (owner, step, pos), stats)?);
        let step_stats = DecodeStepStats {
            pos,
            owner,
            step_s: t0.elapsed().as_secs_f64(),
            compute_s,
            comm_wait_s: (t1 - t0).as_secs_f64() + t2.elapsed().as_secs_f64(),
            pairs,
        };
        stats.compute_s += step_stats.compute_s;
        stats.comm_wait_s += step_stats.comm_wait_s;
        stats.pairs += pairs;
        on_step(step, &step_stats);
        stats.steps.push(step_stats);
    }
    stats.wall_s = start.elapsed().as_secs_f64();
    Ok(rows)
}
