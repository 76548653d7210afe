// TEMPORARY: replaced by ringattn::LayerAttention at merge
//! A stand-in for the library's per-layer API (issue 12, `ringattn::{LayerSpec, LayerAttention,
//! DistKvCache}`), with exactly the contract's names and meanings, built on the ring pass
//! (`ringattn_ring::ring_pass`, `duo_ring_pass`), the layouts of `ringattn_striped` and the
//! runtime's decode kernel. When the `lib-api` branch is merged this file is deleted and the
//! model imports the same names from `ringattn`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use ringattn_ring::{duo_ring_pass, ring_pass, DuoPlan, HeadKind, Layout, RingConfig};
use ringattn_runtime::{
    decode_attend, AttnState, Comm, Dtype, KvBlock, KvCache, Mask, Positions, QShard, SchedConfig,
    SchedKind, Scheduler, TileShape,
};
use ringattn_striped::LayoutKind;

/// Errors of the per-layer attention API (stand-in: wraps the runtime's error).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A shape or value that does not fit the layer.
    #[error("{0}")]
    Config(String),
    /// A failure below the API (kernel, communication).
    #[error(transparent)]
    Runtime(#[from] ringattn_runtime::Error),
}

/// Which layout places the tokens on the ranks (one name mapping: `FromStr` / `Display`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutChoice {
    /// Ring Attention's contiguous blocks.
    Contiguous,
    /// Striped Attention's round robin.
    Striped,
    /// Two mirrored chunks per rank.
    Zigzag,
    /// Let the cost model choose (stand-in: striped, the causal-balanced layout).
    Auto,
}

impl LayoutChoice {
    fn kind(self) -> LayoutKind {
        match self {
            LayoutChoice::Contiguous => LayoutKind::Contiguous,
            LayoutChoice::Striped | LayoutChoice::Auto => LayoutKind::Striped,
            LayoutChoice::Zigzag => LayoutKind::Zigzag,
        }
    }
}

impl LayoutChoice {
    /// The name written in specs and reports.
    pub fn name(self) -> &'static str {
        match self {
            LayoutChoice::Auto => "auto",
            other => other.kind().name(),
        }
    }
}

impl FromStr for LayoutChoice {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, ApiError> {
        match s {
            "contiguous" => Ok(LayoutChoice::Contiguous),
            "striped" => Ok(LayoutChoice::Striped),
            "zigzag" => Ok(LayoutChoice::Zigzag),
            "auto" => Ok(LayoutChoice::Auto),
            o => Err(ApiError::Config(format!(
                "unknown layout `{o}` (expected contiguous, striped, zigzag or auto)"
            ))),
        }
    }
}

impl fmt::Display for LayoutChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything one attention layer needs that does not change between calls.
#[derive(Clone, Debug)]
pub struct LayerSpec {
    /// Query heads.
    pub heads: usize,
    /// KV heads (GQA when fewer than `heads`).
    pub kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Total tokens of the prefill, all ranks.
    pub seq: usize,
    /// Causal mask.
    pub causal: bool,
    /// Token placement.
    pub layout: LayoutChoice,
    /// Kernel tile; `None` = the kernel's default.
    pub tile: Option<TileShape>,
    /// K/V storage type.
    pub dtype: Dtype,
}

/// The kernel executor of one rank (`threads` threads pinned to `cores`, unpinned when empty)
/// for [`LayerAttention::new`].
pub fn executor_for(threads: usize, cores: Vec<usize>) -> Result<Arc<Scheduler>, ApiError> {
    let cfg = SchedConfig::new(SchedKind::Hybrid, threads.max(1), cores);
    Ok(Arc::new(Scheduler::new(cfg)?))
}

/// One rank's attention for one layer shape; created once per rank, called for every layer.
pub struct LayerAttention {
    spec: LayerSpec,
    rank: usize,
    world: usize,
    layout: &'static dyn Layout,
    shard: Positions,
    positions: Vec<usize>,
    exec: Arc<Scheduler>,
}

/// One layer's output on this rank.
pub struct LayerOutput {
    /// `[heads, tokens, dim]`.
    pub out: Vec<f32>,
    /// `[heads, tokens]`.
    pub lse: Vec<f32>,
}

impl LayerAttention {
    /// The handle of `rank` of `world` for layers shaped by `spec`, kernels on `exec`.
    pub fn new(
        spec: &LayerSpec,
        rank: usize,
        world: usize,
        exec: Arc<Scheduler>,
    ) -> Result<Self, ApiError> {
        if spec.heads == 0 || spec.kv_heads == 0 || spec.heads % spec.kv_heads != 0 {
            return Err(ApiError::Config(format!(
                "heads {} is not a positive multiple of kv_heads {}",
                spec.heads, spec.kv_heads
            )));
        }
        if world == 0 || rank >= world || spec.seq < world {
            return Err(ApiError::Config(format!(
                "rank {rank} of world {world} for seq {} tokens",
                spec.seq
            )));
        }
        let layout = spec.layout.kind().layout();
        let shard = layout.positions(rank, world, spec.seq);
        Ok(LayerAttention {
            spec: spec.clone(),
            rank,
            world,
            layout,
            positions: shard.iter().collect(),
            shard,
            exec,
        })
    }

    /// This rank's global token positions, in shard order.
    pub fn positions(&self) -> &[usize] {
        &self.positions
    }

    /// The layout that runs (`Auto` resolved).
    pub fn layout(&self) -> LayoutKind {
        self.spec.layout.kind()
    }

    /// Number of tokens this rank owns.
    pub fn tokens(&self) -> usize {
        self.positions.len()
    }

    /// Attention of this rank's tokens over the whole sequence (collective).
    pub fn forward(
        &mut self,
        comm: &mut dyn Comm,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        duo: Option<&DuoPlan>,
    ) -> Result<LayerOutput, ApiError> {
        let s = &self.spec;
        let (n, d) = (self.tokens(), s.head_dim);
        if q.len() != s.heads * n * d || k.len() != s.kv_heads * n * d || k.len() != v.len() {
            return Err(ApiError::Config(format!(
                "q/k/v of {}/{}/{} values do not fit {} tokens",
                q.len(),
                k.len(),
                v.len(),
                n
            )));
        }
        let qs = QShard {
            heads: s.heads,
            dim: d,
            positions: self.shard.clone(),
            data: q.to_vec(),
        };
        let kv = KvBlock {
            origin: self.rank,
            kv_heads: s.kv_heads,
            dim: d,
            positions: self.shard.clone(),
            k: ringattn_runtime::tensor::KvData::from_f32(k.to_vec(), s.dtype),
            v: ringattn_runtime::tensor::KvData::from_f32(v.to_vec(), s.dtype),
        };
        let cfg = RingConfig {
            mask: if s.causal { Mask::Causal } else { Mask::None },
            tile: s.tile.unwrap_or_default(),
            fault: None,
        };
        let pool = &*self.exec;
        let state = match duo {
            Some(plan) => duo_ring_pass(comm, &qs, kv, &cfg, pool, plan, &mut |_, _| {})?.0,
            None => ring_pass(comm, &qs, kv, &cfg, pool)?.0,
        };
        let fin = state.finalize();
        Ok(LayerOutput {
            out: fin.out,
            lse: fin.lse,
        })
    }
}

/// One layer's KV cache kept distributed across the ranks for decode.
pub struct DistKvCache {
    cache: KvCache,
    masks: Vec<Mask>,
    streaming: Vec<usize>,
    window: (usize, usize),
    len: usize,
    seq: usize,
    world: usize,
    rank: usize,
    heads: usize,
    dim: usize,
    layout: &'static dyn Layout,
    exec: Arc<Scheduler>,
}

impl DistKvCache {
    /// From this rank's prefill K/V shard (same layout as `forward`'s k/v), room for `max_new`
    /// tokens. Streaming heads keep only the rows a later query may see (sink + recent).
    pub fn from_prefill(
        layer: &LayerAttention,
        k: &[f32],
        v: &[f32],
        duo: Option<&DuoPlan>,
        max_new: usize,
    ) -> Result<Self, ApiError> {
        let s = &layer.spec;
        let (n, d) = (layer.tokens(), s.head_dim);
        if k.len() != s.kv_heads * n * d || v.len() != k.len() {
            return Err(ApiError::Config(format!(
                "k/v of {}/{} values do not fit {n} tokens",
                k.len(),
                v.len()
            )));
        }
        let streaming = duo.map_or(Vec::new(), |p| p.kv_heads_of(HeadKind::Streaming));
        let window = duo.map_or((0, 0), |p| (p.sink, p.recent));
        let caps: Vec<usize> = (0..s.kv_heads)
            .map(|g| {
                if streaming.contains(&g) {
                    (window.0 + window.1 + 1).min(n + max_new)
                } else {
                    n + max_new
                }
            })
            .collect();
        let mut cache = KvCache::new(d, s.dtype, &caps);
        for g in 0..s.kv_heads {
            let head = cache.head_mut(g);
            for (i, &pos) in layer.positions.iter().enumerate() {
                let keep = !streaming.contains(&g) || pos < window.0 || pos + window.1 >= s.seq;
                if keep {
                    let r = (g * n + i) * d..(g * n + i + 1) * d;
                    head.append(pos, &k[r.clone()], &v[r])?;
                }
            }
        }
        Ok(DistKvCache {
            cache,
            masks: (0..s.kv_heads)
                .map(|g| duo.map_or(Mask::Causal, |p| p.mask_of(g, Mask::Causal)))
                .collect(),
            streaming,
            window,
            len: s.seq,
            seq: s.seq,
            world: layer.world,
            rank: layer.rank,
            heads: s.heads,
            dim: d,
            layout: layer.layout,
            exec: Arc::clone(&layer.exec),
        })
    }

    /// Tokens in the whole (global) sequence so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the sequence holds no token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rank that stores position `pos`.
    pub fn owner(&self, pos: usize) -> usize {
        if pos < self.seq {
            (0..self.world)
                .find(|&r| {
                    self.layout
                        .positions(r, self.world, self.seq)
                        .local_index(pos)
                        .is_some()
                })
                .unwrap_or(0)
        } else {
            self.layout.decode_owner(pos, self.world, self.seq)
        }
    }

    /// Collective: the new token's k, v (`[kv_heads, head_dim]`) at `pos` (= `len()`); only
    /// the owner stores them (streaming heads: bounded sink + recent).
    pub fn append(
        &mut self,
        _comm: &mut dyn Comm,
        pos: usize,
        k: &[f32],
        v: &[f32],
    ) -> Result<(), ApiError> {
        let d = self.dim;
        if pos != self.len || k.len() != self.cache.kv_heads() * d || v.len() != k.len() {
            return Err(ApiError::Config(format!(
                "append at {pos} (len {}) with {}/{} values",
                self.len,
                k.len(),
                v.len()
            )));
        }
        if self.owner(pos) == self.rank {
            for g in 0..self.cache.kv_heads() {
                let r = g * d..(g + 1) * d;
                self.cache.head_mut(g).append(pos, &k[r.clone()], &v[r])?;
                if self.streaming.contains(&g) {
                    let (sink, recent) = self.window;
                    self.cache.head_mut(g).truncate_streaming(sink, recent);
                }
            }
        }
        self.len += 1;
        Ok(())
    }

    /// Collective: attention of the newest token's query (`[heads, head_dim]`) over every rank's
    /// shard, LSE-merged across ranks; every rank receives `out [heads, head_dim]`.
    pub fn attend(&mut self, comm: &mut dyn Comm, q: &[f32]) -> Result<Vec<f32>, ApiError> {
        if q.len() != self.heads * self.dim {
            return Err(ApiError::Config(format!(
                "query of {} values, expected {}",
                q.len(),
                self.heads * self.dim
            )));
        }
        let mut state = AttnState::new(self.heads, 1, self.dim);
        let pos = self.len - 1;
        decode_attend(q, pos, &self.cache, &self.masks, &mut state, &*self.exec);
        comm.all_reduce_state(&mut state)?;
        Ok(state.finalize().out)
    }

    /// Bytes held on this rank.
    pub fn kv_bytes(&self) -> u64 {
        self.cache.allocated_bytes()
    }
}
