//! The per-layer handle for model code: one rank's attention for one layer shape, created once
//! and called for every layer with this rank's Q/K/V shard.
//!
//! The handle fixes what does not change between calls (shape, mask, layout, this rank's token
//! positions, tile shape, K/V storage type, the kernel executor); each [`LayerAttention::forward`]
//! runs one ring pass (or DuoAttention's, with a plan) over the caller's buffers. Positions are
//! exposed so the caller can apply RoPE at every token's true position before the call.

use std::sync::Arc;

use ringattn_ring::{duo_ring_pass, ring_pass, DuoPlan, Layout, RankStats, RingConfig};
use ringattn_runtime::{
    Comm, Documents, Dtype, KvBlock, KvData, Mask, Positions, QShard, SchedConfig, SchedKind,
    Scheduler, TileShape,
};
use ringattn_striped::{plan, LayoutKind};

use crate::error::{nonzero, ApiError};
use crate::layout::LayoutChoice;

/// Everything one attention layer needs that does not change between calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerSpec {
    /// Query heads.
    pub heads: usize,
    /// KV heads (GQA when fewer: query head `h` reads KV head `h / (heads / kv_heads)`).
    pub kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Total tokens of the prefill, all ranks together.
    pub seq: usize,
    /// Causal mask (a query sees itself and earlier tokens) or none.
    pub causal: bool,
    /// Token layout across the ranks; `Auto` is resolved once, at [`LayerAttention::new`].
    pub layout: LayoutChoice,
    /// Kernel tile shape; `None` = the kernel's default.
    pub tile: Option<TileShape>,
    /// Storage type of K and V (computation is f32 either way).
    pub dtype: Dtype,
}

impl LayerSpec {
    /// Checks the sizes for a world of `world` ranks.
    pub fn validate(&self, world: usize) -> Result<(), ApiError> {
        let tile = self.tile_shape();
        nonzero(&[
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("seq", self.seq),
            ("world", world),
            ("tile.q", tile.q),
            ("tile.k", tile.k),
        ])?;
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(ApiError::HeadsNotMultiple {
                heads: self.heads,
                kv_heads: self.kv_heads,
            });
        }
        if world > self.seq {
            return Err(ApiError::TooManyRanks {
                world,
                seq: self.seq,
            });
        }
        Ok(())
    }

    /// The tile shape the kernel uses.
    pub fn tile_shape(&self) -> TileShape {
        self.tile.unwrap_or_default()
    }

    /// The mask of the layer (of its retrieval heads under DuoAttention).
    pub fn mask(&self) -> Mask {
        if self.causal {
            Mask::Causal
        } else {
            Mask::None
        }
    }
}

/// A kernel executor for one rank: `threads` threads of the hybrid scheduler, pinned to `cores`
/// (one CPU id per thread) or unpinned when `cores` is empty. Shared by every layer of a rank.
pub fn executor_for(threads: usize, cores: Vec<usize>) -> Result<Arc<Scheduler>, ApiError> {
    nonzero(&[("threads", threads)])?;
    let cfg = SchedConfig::new(SchedKind::Hybrid, threads, cores);
    Ok(Arc::new(Scheduler::new(cfg)?))
}

/// What one [`LayerAttention::forward`] returns for this rank's queries, in shard order.
#[derive(Clone, Debug)]
pub struct LayerOutput {
    /// Attention output, `[heads, tokens, head_dim]`.
    pub out: Vec<f32>,
    /// Log-sum-exp of each query's scores, `[heads, tokens]` (−∞ where the mask allows no key).
    pub lse: Vec<f32>,
    /// Measurements of the ring pass on this rank.
    pub stats: RankStats,
}

/// One rank's attention for one layer shape; created once per rank, called for every layer.
#[derive(Debug)]
pub struct LayerAttention {
    spec: LayerSpec,
    rank: usize,
    world: usize,
    kind: LayoutKind,
    layout: Arc<dyn Layout>,
    positions: Positions,
    position_list: Vec<usize>,
    ring: RingConfig,
    exec: Arc<Scheduler>,
}

impl LayerAttention {
    /// The handle of rank `rank` of `world` for layers of shape `spec`, running its kernels on
    /// `exec` ([`executor_for`]). `LayoutChoice::Auto` is resolved here by the partitioner's cost
    /// model (for the layer's mask), the same on every rank.
    pub fn new(
        spec: &LayerSpec,
        rank: usize,
        world: usize,
        exec: Arc<Scheduler>,
    ) -> Result<Self, ApiError> {
        Self::with_mask(spec, rank, world, exec, None, None)
    }

    /// [`LayerAttention::new`] with a sliding window `window` and / or packed documents `docs`
    /// on top of the spec's causal flag (the documents must add up to `spec.seq`; tokens
    /// decoded later belong to the last document). The layout is planned for that mask; the
    /// documents layout (`LayoutChoice::Docs`) needs `docs`.
    pub fn with_mask(
        spec: &LayerSpec,
        rank: usize,
        world: usize,
        exec: Arc<Scheduler>,
        window: Option<usize>,
        docs: Option<Documents>,
    ) -> Result<Self, ApiError> {
        spec.validate(world)?;
        crate::spec::check_mask(window, false, false)?;
        spec.layout.check_docs(docs.is_some())?;
        if let Some(d) = &docs {
            d.check_total(spec.seq)?;
        }
        if rank >= world {
            return Err(ApiError::RankMismatch {
                rank,
                world,
                what: "the world (rank must be below world)",
            });
        }
        let mask = Mask::span(spec.causal, window, docs);
        let tile = spec.tile_shape();
        let kind = match spec.layout.fixed() {
            Some(kind) => kind,
            None => {
                plan(
                    spec.layout.plan_choice(),
                    world,
                    spec.seq,
                    mask.clone(),
                    tile,
                )
                .kind
            }
        };
        let layout = kind.build(&mask);
        let positions = layout.positions(rank, world, spec.seq);
        Ok(LayerAttention {
            spec: *spec,
            rank,
            world,
            kind,
            layout,
            position_list: positions.iter().collect(),
            positions,
            ring: RingConfig {
                mask,
                tile,
                fault: None,
            },
            exec,
        })
    }

    /// The layer shape.
    pub fn spec(&self) -> &LayerSpec {
        &self.spec
    }

    /// The layer's mask (of its retrieval heads under DuoAttention): the spec's causal flag
    /// with the window and documents given at creation.
    pub fn mask(&self) -> &Mask {
        &self.ring.mask
    }

    /// This rank's index.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn world(&self) -> usize {
        self.world
    }

    /// The layout in use (`Auto` resolved).
    pub fn layout(&self) -> LayoutKind {
        self.kind
    }

    /// The layout's implementation (built with the layer's documents): which rank owns which
    /// position, and where decoded tokens go.
    pub fn token_layout(&self) -> Arc<dyn Layout> {
        Arc::clone(&self.layout)
    }

    /// This rank's global token positions, in shard order (increasing).
    pub fn positions(&self) -> &[usize] {
        &self.position_list
    }

    /// This rank's positions as arithmetic runs.
    pub fn position_runs(&self) -> &Positions {
        &self.positions
    }

    /// Number of tokens this rank owns.
    pub fn tokens(&self) -> usize {
        self.position_list.len()
    }

    /// The kernel executor.
    pub fn executor(&self) -> &Arc<Scheduler> {
        &self.exec
    }

    /// One layer's attention for this rank's queries. `q` is `[heads, tokens, head_dim]`, `k`
    /// and `v` `[kv_heads, tokens, head_dim]`, for THIS rank's tokens in shard order (row `i` is
    /// position `positions()[i]`). Collective: every rank of the world calls it with its own
    /// shard. `duo`: an optional DuoAttention plan for this layer (retrieval / streaming KV
    /// heads; needs a causal layer).
    pub fn forward(
        &mut self,
        comm: &mut dyn Comm,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        duo: Option<&DuoPlan>,
    ) -> Result<LayerOutput, ApiError> {
        self.check_comm(comm)?;
        let (q, kv) = self.shard(q, k, v)?;
        let (state, stats) = match duo {
            Some(plan) => {
                self.check_duo(plan)?;
                let ring = &self.ring;
                let (state, stats) =
                    duo_ring_pass(comm, &q, kv, ring, &*self.exec, plan, &mut |_, _| {})?;
                (state, stats.total)
            }
            None => ring_pass(comm, &q, kv, &self.ring, &*self.exec)?,
        };
        let fin = state.finalize();
        Ok(LayerOutput {
            out: fin.out,
            lse: fin.lse,
            stats,
        })
    }

    /// Fails unless `comm` is this handle's rank in a world of this handle's size.
    pub(crate) fn check_comm(&self, comm: &dyn Comm) -> Result<(), ApiError> {
        if comm.rank() != self.rank || comm.size() != self.world {
            return Err(ApiError::RankMismatch {
                rank: comm.rank(),
                world: comm.size(),
                what: "the layer handle's rank and world",
            });
        }
        Ok(())
    }

    /// Fails unless `plan` fits this layer.
    pub(crate) fn check_duo(&self, plan: &DuoPlan) -> Result<(), ApiError> {
        if plan.kv_heads() != self.spec.kv_heads {
            return Err(ApiError::DuoHeads {
                plan: plan.kv_heads(),
                kv_heads: self.spec.kv_heads,
            });
        }
        if !self.spec.causal {
            return Err(ApiError::DuoNeedsCausal);
        }
        if self.ring.mask.docs().is_some() {
            return Err(ApiError::DuoWithDocs);
        }
        Ok(())
    }

    /// Checks a `[kv_heads, tokens, head_dim]` buffer's length.
    pub(crate) fn check_kv(&self, field: &'static str, buf: &[f32]) -> Result<(), ApiError> {
        check_len(
            field,
            buf,
            self.spec.kv_heads * self.tokens() * self.spec.head_dim,
        )
    }

    /// The caller's buffers as the ring's query shard and KV block.
    fn shard(&self, q: &[f32], k: &[f32], v: &[f32]) -> Result<(QShard, KvBlock), ApiError> {
        let (s, rows) = (&self.spec, self.tokens());
        check_len("q", q, s.heads * rows * s.head_dim)?;
        self.check_kv("k", k)?;
        self.check_kv("v", v)?;
        let q = QShard {
            heads: s.heads,
            dim: s.head_dim,
            positions: self.positions.clone(),
            data: q.to_vec(),
        };
        let kv = KvBlock {
            origin: self.rank,
            kv_heads: s.kv_heads,
            dim: s.head_dim,
            positions: self.positions.clone(),
            k: KvData::from_f32(k.to_vec(), s.dtype),
            v: KvData::from_f32(v.to_vec(), s.dtype),
        };
        Ok((q, kv))
    }
}

/// Fails unless `buf` has `expected` elements.
pub(crate) fn check_len(field: &'static str, buf: &[f32], expected: usize) -> Result<(), ApiError> {
    if buf.len() != expected {
        return Err(ApiError::Shape {
            field,
            got: buf.len(),
            expected,
        });
    }
    Ok(())
}
