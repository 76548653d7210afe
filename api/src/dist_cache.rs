//! One layer's KV cache kept distributed across the ranks for decode (tree-style decoding).
//!
//! Every position is stored on exactly one rank: prefill positions where the layout put them,
//! decode positions on the layout's decode owner (striped: round robin, so the cache stays
//! balanced). Each [`DistKvCache::attend`] computes every rank's partial state over its rows
//! ([`decode_attend`]) and merges them by log-sum-exp in rank order
//! ([`Comm::all_reduce_state`]), so every rank gets the same output, independent of the
//! thread count. DuoAttention streaming heads keep only the sink and the recent window (the
//! rows their mask lets the next query see), cut back on every rank after each append.

use std::sync::Arc;

use ringattn_ring::duo::decode_masks_for;
use ringattn_ring::{DuoPlan, HeadKind, Layout};
use ringattn_runtime::{decode_attend, AttnState, Comm, KvCache, Mask, Scheduler};

use crate::error::ApiError;
use crate::layer::{check_len, LayerAttention};

/// One layer's KV cache kept distributed across the ranks for decode.
#[derive(Debug)]
pub struct DistKvCache {
    rank: usize,
    world: usize,
    prefill: usize,
    heads: usize,
    kv_heads: usize,
    dim: usize,
    len: usize,
    max_new: usize,
    layout: Arc<dyn Layout>,
    duo: Option<DuoPlan>,
    masks: Vec<Mask>,
    cache: KvCache,
    exec: Arc<Scheduler>,
}

impl DistKvCache {
    /// The cache of `layer`'s rank from its prefill K/V shard (`[kv_heads, tokens, head_dim]` in
    /// shard order, as [`LayerAttention::forward`] takes them), with room for `max_new` decode
    /// tokens. `duo`: the layer's DuoAttention plan (streaming heads keep their window only).
    /// Not collective: each rank keeps its own rows.
    pub fn from_prefill(
        layer: &LayerAttention,
        k: &[f32],
        v: &[f32],
        duo: Option<&DuoPlan>,
        max_new: usize,
    ) -> Result<Self, ApiError> {
        layer.check_kv("k", k)?;
        layer.check_kv("v", v)?;
        if let Some(plan) = duo {
            layer.check_duo(plan)?;
        }
        let spec = layer.spec();
        let (rank, world, seq) = (layer.rank(), layer.world(), spec.seq);
        let layout = layer.token_layout();
        let owned_new = (seq..seq + max_new)
            .filter(|&p| layout.decode_owner(p, world, seq) == rank)
            .count();
        let positions = layer.positions();
        let keep = |g: usize, pos: usize| match duo {
            Some(plan) if plan.kinds[g] == HeadKind::Streaming => {
                pos < plan.sink || pos + plan.recent > seq
            }
            _ => true,
        };
        let capacities: Vec<usize> = (0..spec.kv_heads)
            .map(|g| {
                let kept = positions.iter().filter(|&&p| keep(g, p)).count();
                match duo {
                    Some(plan) if plan.kinds[g] == HeadKind::Streaming => {
                        (kept + owned_new).min(plan.sink + plan.recent + 1)
                    }
                    _ => kept + owned_new,
                }
            })
            .collect();
        let dim = spec.head_dim;
        let mut cache = KvCache::new(dim, spec.dtype, &capacities);
        let rows = positions.len();
        for g in 0..spec.kv_heads {
            for (i, &pos) in positions.iter().enumerate().filter(|&(_, &p)| keep(g, p)) {
                let r = (g * rows + i) * dim..(g * rows + i + 1) * dim;
                cache.head_mut(g).append(pos, &k[r.clone()], &v[r])?;
            }
        }
        Ok(DistKvCache {
            rank,
            world,
            prefill: seq,
            heads: spec.heads,
            kv_heads: spec.kv_heads,
            dim,
            len: seq,
            max_new,
            layout,
            duo: duo.cloned(),
            masks: decode_masks_for(spec.kv_heads, duo, layer.mask()),
            cache,
            exec: Arc::clone(layer.executor()),
        })
    }

    /// Tokens in the whole (global) sequence so far: the prefill plus the appended ones.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the sequence has no token (never, after a prefill of at least one token).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rank that stores position `pos`: the layout's owner for prefill positions, the
    /// layout's decode owner after them.
    pub fn owner(&self, pos: usize) -> usize {
        if pos >= self.prefill {
            return self.layout.decode_owner(pos, self.world, self.prefill);
        }
        (0..self.world)
            .find(|&r| {
                self.layout
                    .positions(r, self.world, self.prefill)
                    .local_index(pos)
                    .is_some()
            })
            .unwrap_or(0)
    }

    /// Collective: every rank passes the new token's `k`, `v` (`[kv_heads, head_dim]`) at global
    /// position `pos`, which must be [`len`](Self::len); only the owner stores them. Streaming
    /// heads are then cut back to their sink and recent window on every rank.
    pub fn append(
        &mut self,
        comm: &mut dyn Comm,
        pos: usize,
        k: &[f32],
        v: &[f32],
    ) -> Result<(), ApiError> {
        self.check_comm(comm)?;
        if pos != self.len {
            return Err(ApiError::AppendPosition { pos, len: self.len });
        }
        if pos >= self.prefill + self.max_new {
            return Err(ApiError::CacheFull {
                max_new: self.max_new,
            });
        }
        let d = self.dim;
        check_len("k", k, self.kv_heads * d)?;
        check_len("v", v, self.kv_heads * d)?;
        if self.owner(pos) == self.rank {
            for g in 0..self.kv_heads {
                let r = g * d..(g + 1) * d;
                self.cache.head_mut(g).append(pos, &k[r.clone()], &v[r])?;
            }
        }
        self.len += 1;
        self.cut_streaming();
        self.evict_unseen();
        Ok(())
    }

    /// Drops, on every head whose mask lets keys fall out of sight for good (sliding windows,
    /// documents), the rows the newest query and every later one cannot see: a windowed cache
    /// keeps about W keys over all ranks.
    fn evict_unseen(&mut self) {
        let newest = self.len - 1;
        for (g, mask) in self.masks.iter().enumerate() {
            let first = mask.first_needed_key(newest);
            if first > 0 {
                self.cache.head_mut(g).evict_below(first);
            }
        }
    }

    /// Keeps, on every streaming head, the sink rows and the rows the newest query may see.
    fn cut_streaming(&mut self) {
        let Some(plan) = &self.duo else { return };
        let newest = self.len - 1;
        for g in plan.kv_heads_of(HeadKind::Streaming) {
            let head = self.cache.head_mut(g);
            let in_window = head
                .positions()
                .iter()
                .filter(|&&p| p >= plan.sink && p + plan.recent > newest)
                .count();
            head.truncate_streaming(plan.sink, in_window);
        }
    }

    /// Collective: every rank passes the same query (`[heads, head_dim]`) of the newest token
    /// (position `len() − 1`); each computes its partial state over its rows and the states are
    /// merged by log-sum-exp across the ranks. Every rank returns `out` (`[heads, head_dim]`).
    pub fn attend(&mut self, comm: &mut dyn Comm, q: &[f32]) -> Result<Vec<f32>, ApiError> {
        self.check_comm(comm)?;
        check_len("q", q, self.heads * self.dim)?;
        if self.len == 0 {
            return Err(ApiError::EmptyCache);
        }
        let mut state = AttnState::try_new(self.heads, 1, self.dim)?;
        decode_attend(
            q,
            self.len - 1,
            &self.cache,
            &self.masks,
            &mut state,
            &*self.exec,
        );
        comm.all_reduce_state(&mut state)?;
        Ok(state.finalize().out)
    }

    /// Bytes of K/V allocated on this rank.
    pub fn kv_bytes(&self) -> u64 {
        self.cache.allocated_bytes()
    }

    /// This rank's rows, per KV head (for inspection and tests).
    pub fn local(&self) -> &KvCache {
        &self.cache
    }

    fn check_comm(&self, comm: &dyn Comm) -> Result<(), ApiError> {
        if comm.rank() != self.rank || comm.size() != self.world {
            return Err(ApiError::RankMismatch {
                rank: comm.rank(),
                world: comm.size(),
                what: "the cache's rank and world",
            });
        }
        Ok(())
    }
}
