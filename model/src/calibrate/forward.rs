//! The model's prefill in one process on one rank, layer by layer: the calibration and fidelity
//! tools need what `generate` hides (every layer's input, Q and K, and the logits of many rows),
//! and a per-layer DuoAttention plan of their own choosing. Attention runs through the same
//! [`LayerAttention`] handle as `generate` (world of 1), so a plan means the same thing here.

use candle_core::Tensor;
use candle_nn::ops::rms_norm;
use ringattn_ring::DuoPlan;
use ringattn_runtime::local::{local_world, LocalComm};
use ringattn_runtime::Dtype;

use crate::attn::{executor_for, LayerAttention, LayerSpec, LayoutChoice};
use crate::block::{embed, finish, flat, logits_of_row, qkv, Rope};
use crate::error::{ModelError, Result};
use crate::Model;

/// What the per-layer hook sees: the layer index, Q (`[heads, t, d]`, roped) and K
/// (`[kv_heads, t, d]`, roped) of every token, in position order.
pub type QkHook<'a> = &'a mut dyn FnMut(usize, &[f32], &[f32]);

/// A one-rank forward over a fixed token list.
pub struct Forward<'m> {
    model: &'m Model,
    attn: LayerAttention,
    comm: LocalComm,
    rope: Rope,
    ids: Vec<u32>,
}

impl<'m> Forward<'m> {
    /// A forward over `ids` with `threads` kernel threads (the caller's rayon pool runs the
    /// projections).
    pub fn new(model: &'m Model, ids: &[u32], threads: usize) -> Result<Self> {
        let c = &model.weights.config;
        if ids.is_empty() {
            return Err(ModelError::EmptyPrompt);
        }
        let spec = LayerSpec {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
            seq: ids.len(),
            causal: true,
            layout: LayoutChoice::Striped,
            tile: None,
            dtype: Dtype::F32,
        };
        let exec = executor_for(threads.max(1), Vec::new())?;
        let attn = LayerAttention::new(&spec, 0, 1, exec)?;
        // One rank owns every token, in order: row i is position i.
        debug_assert!(attn.positions().iter().enumerate().all(|(i, &p)| i == p));
        let rope = Rope::at(attn.positions(), c.head_dim, c.rope_base)?;
        let comm = local_world(1).pop().ok_or_else(|| ModelError::Invalid {
            field: "world",
            reason: "no local rank".into(),
        })?;
        Ok(Forward {
            model,
            attn,
            comm,
            rope,
            ids: ids.to_vec(),
        })
    }

    /// (layers, KV heads) of the model.
    pub fn shape(&self) -> (usize, usize) {
        let c = &self.model.weights.config;
        (c.layers, c.kv_heads)
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no tokens (never: [`Forward::new`] refuses an empty list).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The embedded tokens, the input of layer 0 (`[1, t, embd]`).
    pub fn embedded(&self) -> Result<Tensor> {
        embed(&self.model.weights, &self.ids)
    }

    /// Layer `l` on `x` with an optional plan; `hook` sees its Q and K first.
    pub fn layer(
        &mut self,
        l: usize,
        x: &Tensor,
        plan: Option<&DuoPlan>,
        hook: Option<QkHook<'_>>,
    ) -> Result<Tensor> {
        let w = &*self.model.weights;
        let (c, lw) = (&w.config, &w.layers[l]);
        let h = rms_norm(x, &lw.attn_norm, c.eps as f32)?;
        let [q, k, v] = qkv(lw, c, &h, &self.rope)?;
        let (q, k, v) = (flat(&q)?, flat(&k)?, flat(&v)?);
        if let Some(hook) = hook {
            hook(l, &q, &k);
        }
        let out = self.attn.forward(&mut self.comm, &q, &k, &v, plan)?;
        finish(lw, c, out.out, self.ids.len(), x)
    }

    /// Layers `from..` on `x`, layer `l` with `plans[l]` (`None`: full attention everywhere).
    pub fn layers_from(
        &mut self,
        from: usize,
        mut x: Tensor,
        plans: Option<&[DuoPlan]>,
    ) -> Result<Tensor> {
        for l in from..self.model.weights.config.layers {
            x = self.layer(l, &x, plans.map(|p| &p[l]), None)?;
        }
        Ok(x)
    }

    /// The logits of each of `rows` of the last layer's output `x`.
    pub fn logits(&self, x: &Tensor, rows: std::ops::Range<usize>) -> Result<Vec<Vec<f32>>> {
        rows.map(|r| logits_of_row(&self.model.weights, x, r))
            .collect()
    }
}

/// Softmax of `logits` in f64.
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let e: Vec<f64> = logits.iter().map(|&x| (x as f64 - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// KL(p ‖ q) of the next-token distributions of two logit vectors (natural log, ≥ 0).
pub fn kl_divergence(p_logits: &[f32], q_logits: &[f32]) -> f64 {
    let (p, q) = (softmax(p_logits), softmax(q_logits));
    let kl: f64 = p
        .iter()
        .zip(&q)
        .filter(|(&pi, _)| pi > 0.0)
        .map(|(&pi, &qi)| pi * (pi.ln() - qi.max(f64::MIN_POSITIVE).ln()))
        .sum();
    kl.max(0.0)
}
