//! The Llama block of our own, on one rank's token shard: RMSNorm, Q/K/V projections, RoPE at
//! each token's TRUE global position (a rank's tokens are not contiguous under striped or
//! zigzag), attention through the per-layer handle (GQA: K/V keep their `kv_heads` heads), the
//! output projection, and the SwiGLU MLP. The final norm and LM head run on one row.

use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::ops::rms_norm;
use candle_nn::rotary_emb::rope_i;
use ringattn_ring::DuoPlan;
use ringattn_runtime::Comm;

use crate::attn::{DistKvCache, LayerAttention};
use crate::error::Result;
use crate::weights::{LayerWeights, ModelConfig, Weights};

/// RoPE tables (`cos`, `sin`: `[tokens, head_dim / 2]`) for a list of global positions, computed
/// as candle's llama computes its table (angle = position · base^(−2i/d) in f32), so a token
/// gets the same rotation wherever it lives.
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// The tables of `positions`.
    pub fn at(positions: &[usize], head_dim: usize, base: f32) -> Result<Self> {
        let theta: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1f32 / base.powf(i as f32 / head_dim as f32))
            .collect();
        let angles: Vec<f32> = positions
            .iter()
            .flat_map(|&p| theta.iter().map(move |&t| p as f32 * t))
            .collect();
        let t = Tensor::from_vec(angles, (positions.len(), theta.len()), &Device::Cpu)?;
        Ok(Rope {
            cos: t.cos()?,
            sin: t.sin()?,
        })
    }
}

/// Seconds spent in attention (ring pass or distributed decode) and in everything else of the
/// blocks (projections, MLP, norms, RoPE: "matmul").
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    /// Attention seconds.
    pub attention_s: f64,
    /// Projection / MLP / norm seconds.
    pub matmul_s: f64,
}

/// `[1, t, heads·d]` → `[1, heads, t, d]`, contiguous.
fn split_heads(x: &Tensor, heads: usize, d: usize) -> Result<Tensor> {
    let t = x.dim(1)?;
    Ok(x.reshape((1, t, heads, d))?.transpose(1, 2)?.contiguous()?)
}

/// The Q (roped), K (roped) and V of `x` (`[1, t, embd]`, already normed), head-major.
/// Crate-visible: the calibration hook (`calibrate`) needs each layer's Q and K.
pub(crate) fn qkv(
    lw: &LayerWeights,
    c: &ModelConfig,
    x: &Tensor,
    rope: &Rope,
) -> Result<[Tensor; 3]> {
    let (q, k, v) = (lw.wq.forward(x)?, lw.wk.forward(x)?, lw.wv.forward(x)?);
    heads_roped(c, &q, &k, &v, rope)
}

/// Projected Q, K, V (`[1, t, features]`) split into heads (head-major), Q and K roped.
pub(crate) fn heads_roped(
    c: &ModelConfig,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    rope: &Rope,
) -> Result<[Tensor; 3]> {
    let q = split_heads(q, c.heads, c.head_dim)?;
    let k = split_heads(k, c.kv_heads, c.head_dim)?;
    let v = split_heads(v, c.kv_heads, c.head_dim)?;
    let q = rope_i(&q, &rope.cos, &rope.sin)?;
    let k = rope_i(&k, &rope.cos, &rope.sin)?;
    Ok([q, k, v])
}

pub(crate) fn flat(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// The attention output `[heads, t, d]` through Wo, plus the residual, then the MLP block.
pub(crate) fn finish(
    lw: &LayerWeights,
    c: &ModelConfig,
    out: Vec<f32>,
    t: usize,
    residual: &Tensor,
) -> Result<Tensor> {
    let y = Tensor::from_vec(out, (1, c.heads, t, c.head_dim), &Device::Cpu)?
        .transpose(1, 2)?
        .reshape((1, t, c.embd))?;
    let x = (lw.wo.forward(&y)? + residual)?;
    let h = rms_norm(&x, &lw.ffn_norm, c.eps as f32)?;
    let gate = candle_nn::ops::silu(&lw.gate.forward(&h)?)?;
    let mlp = lw.down.forward(&(gate * lw.up.forward(&h)?)?)?;
    Ok((mlp + x)?)
}

/// One layer of the prefill on this rank's shard `x` (`[1, t, embd]`, rows in shard order).
/// Returns the layer's output and this rank's roped K and V (`[kv_heads, t, d]`) for the cache.
#[allow(clippy::too_many_arguments)]
pub fn prefill_layer(
    lw: &LayerWeights,
    c: &ModelConfig,
    x: &Tensor,
    rope: &Rope,
    attn: &mut LayerAttention,
    comm: &mut dyn Comm,
    duo: Option<&DuoPlan>,
    timing: &mut Timing,
) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
    let t0 = Instant::now();
    let t = x.dim(1)?;
    let h = rms_norm(x, &lw.attn_norm, c.eps as f32)?;
    let [q, k, v] = qkv(lw, c, &h, rope)?;
    let (q, k, v) = (flat(&q)?, flat(&k)?, flat(&v)?);
    let t1 = Instant::now();
    let out = attn.forward(comm, &q, &k, &v, duo)?;
    let t2 = Instant::now();
    let y = finish(lw, c, out.out, t, x)?;
    timing.attention_s += (t2 - t1).as_secs_f64();
    timing.matmul_s += (t1 - t0).as_secs_f64() + t2.elapsed().as_secs_f64();
    Ok((y, k, v))
}

/// One layer of a decode step for the token at `pos` (`x`: `[1, 1, embd]`, the same on every
/// rank): its K/V go to the distributed cache (stored by their owner), its query attends over
/// every rank's cache.
pub fn decode_layer(
    lw: &LayerWeights,
    c: &ModelConfig,
    x: &Tensor,
    rope: &Rope,
    cache: &mut DistKvCache,
    comm: &mut dyn Comm,
    timing: &mut Timing,
) -> Result<Tensor> {
    let t0 = Instant::now();
    let h = rms_norm(x, &lw.attn_norm, c.eps as f32)?;
    let [q, k, v] = qkv(lw, c, &h, rope)?;
    let (q, k, v) = (flat(&q)?, flat(&k)?, flat(&v)?);
    let t1 = Instant::now();
    let pos = cache.len();
    cache.append(comm, pos, &k, &v)?;
    let out = cache.attend(comm, &q)?;
    let t2 = Instant::now();
    let y = finish(lw, c, out, 1, x)?;
    timing.attention_s += (t2 - t1).as_secs_f64();
    timing.matmul_s += (t1 - t0).as_secs_f64() + t2.elapsed().as_secs_f64();
    Ok(y)
}

/// The hidden rows of `ids` (`[1, t, embd]`).
pub fn embed(w: &Weights, ids: &[u32]) -> Result<Tensor> {
    let idx = Tensor::new(ids, &Device::Cpu)?;
    Ok(w.embedding.index_select(&idx, 0)?.unsqueeze(0)?)
}

/// The logits (`[vocab]`) of row `row` of the last layer's output `x` (`[1, t, embd]`): final
/// norm and LM head on that row only.
pub fn logits_of_row(w: &Weights, x: &Tensor, row: usize) -> Result<Vec<f32>> {
    let x = x.narrow(1, row, 1)?.contiguous()?;
    let h = rms_norm(&x, &w.out_norm, w.config.eps as f32)?;
    let l = w.lm_head.forward(&h)?;
    Ok(l.squeeze(0)?
        .squeeze(0)?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?)
}

/// Index of the largest logit (the first of equal ones): greedy decoding.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}
