//! Tensor-parallel decode: the weight-heavy products of a decode step split across the ranks.
//!
//! A decode step multiplies one row by every weight matrix once, so it is bound by reading the
//! weights. Run redundantly, P ranks would each read all of them; here each rank computes a
//! fixed range of every matrix's output features (rows, [`share`]) from the packed blocks
//! ([`Linear::matvec_rows`], which reads only those rows) and an all-gather
//! ([`Comm::all_gather`]) gives every rank the whole vector. Per layer: the Q|K|V rows (one
//! all-gather), the Wo rows, the gate and up rows (SwiGLU applied to the rank's slice, then
//! all-gathered) and the down rows — four all-gathers; the LM head's rows are gathered on rank 0
//! only, which samples. The attention stays as it was: the KV caches distributed, the query on
//! every rank, states merged by log-sum-exp ([`DistKvCache`]). Every output feature is computed
//! by the same dot product as in the whole product, so the result does not depend on how the
//! rows are split, and the row ranges are fixed once per rank (no weights are copied or
//! re-sliced per token).
//!
//! Bytes (SmolLM2-135M as held for decode: Q4_1 blocks at 0.75 B a weight with f32 scales, the
//! Q8_0 head at 1.125 B): a layer's seven matrices hold 576 × 6,144 = 3.54 M weights (2.65 MB),
//! 30 layers 80 MB, the 49,152 × 576 head 32 MB: ~112 MB read per token. Redundantly every rank
//! reads all 112 MB; split, each reads ~112 / P MB, and the ranks together read each weight once.
//! What the split adds per token: 30 × 3,648 floats all-gathered (0.44 MB), 196 KB of logits to
//! rank 0, and 4 × 30 + 1 collectives of latency.

use std::ops::Range;
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::ops::rms_norm;
use ringattn_runtime::Comm;

use crate::attn::DistKvCache;
use crate::block::{flat, heads_roped, Rope, Timing};
use crate::error::{ModelError, Result};
use crate::qlinear::Linear;
use crate::weights::{LayerWeights, ModelConfig, Weights};

/// Rank `rank`'s share of `n` rows among `world` ranks: `[rank·n/world, (rank+1)·n/world)`
/// (contiguous, sizes differing by at most one, together exactly `0..n`).
pub fn share(n: usize, rank: usize, world: usize) -> Range<usize> {
    let world = world.max(1);
    rank * n / world..(rank + 1) * n / world
}

/// One rank's part of tensor-parallel decode: its row range of every matrix of a decode step,
/// fixed when it is made (every layer has the same shapes, so one range per matrix kind).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeSplit {
    rank: usize,
    world: usize,
    /// Q rows (heads · head_dim), K and V rows (kv_heads · head_dim), hidden size, MLP size,
    /// vocabulary: the output features of the matrices split.
    q: usize,
    kv: usize,
    embd: usize,
    ffn: usize,
    vocab: usize,
}

impl DecodeSplit {
    /// The split of rank `rank` of `world`, or `None` when some projection (or the LM head) has
    /// no packed blocks of the expected shape ([`WeightFormat`](crate::WeightFormat) other than
    /// the default): decode then runs every projection on every rank.
    pub fn new(w: &Weights, rank: usize, world: usize) -> Option<DecodeSplit> {
        let c = &w.config;
        let s = DecodeSplit {
            rank,
            world: world.max(1),
            q: c.heads * c.head_dim,
            kv: c.kv_heads * c.head_dim,
            embd: c.embd,
            ffn: c.ffn,
            vocab: c.vocab,
        };
        let fits = |lin: &Linear, rows: usize| lin.packed_rows() == Some(rows);
        let layers_fit = w.layers.iter().all(|l| {
            fits(&l.wq, s.q)
                && fits(&l.wk, s.kv)
                && fits(&l.wv, s.kv)
                && fits(&l.wo, s.embd)
                && fits(&l.gate, s.ffn)
                && fits(&l.up, s.ffn)
                && fits(&l.down, s.embd)
        });
        (layers_fit && fits(&w.lm_head, s.vocab)).then_some(s)
    }

    /// This rank's rows of a matrix with `n` output features.
    fn mine(&self, n: usize) -> Range<usize> {
        share(n, self.rank, self.world)
    }

    /// One layer of a decode step (`x`: `[1, 1, embd]`, the same on every rank; collective):
    /// the token's K/V go to the distributed cache, its query attends over every rank's cache.
    /// The all-gathers count as matmul time.
    #[allow(clippy::too_many_arguments)]
    pub fn layer(
        &self,
        lw: &LayerWeights,
        c: &ModelConfig,
        x: &Tensor,
        rope: &Rope,
        cache: &mut DistKvCache,
        comm: &mut dyn Comm,
        timing: &mut Timing,
    ) -> Result<Tensor> {
        let t0 = Instant::now();
        let h = flat(&rms_norm(x, &lw.attn_norm, c.eps as f32)?)?;
        let mut mine = rows(&lw.wq, &h, self.mine(self.q))?;
        mine.extend(rows(&lw.wk, &h, self.mine(self.kv))?);
        mine.extend(rows(&lw.wv, &h, self.mine(self.kv))?);
        let [q, k, v] = self.unpack_qkv(comm, &mine)?;
        let [q, k, v] = heads_roped(c, &row(q)?, &row(k)?, &row(v)?, rope)?;
        let (q, k, v) = (flat(&q)?, flat(&k)?, flat(&v)?);
        let t1 = Instant::now();
        let pos = cache.len();
        cache.append(comm, pos, &k, &v)?;
        let out = cache.attend(comm, &q)?;
        let t2 = Instant::now();
        let y = self.finish(lw, c, &out, x, comm)?;
        timing.attention_s += (t2 - t1).as_secs_f64();
        timing.matmul_s += (t1 - t0).as_secs_f64() + t2.elapsed().as_secs_f64();
        Ok(y)
    }

    /// The logits (`[vocab]`) of `x` (`[1, 1, embd]`) on rank 0, `None` on the others
    /// (collective): final norm, this rank's rows of the LM head, gathered on rank 0.
    pub fn logits(&self, w: &Weights, x: &Tensor, comm: &mut dyn Comm) -> Result<Option<Vec<f32>>> {
        let h = flat(&rms_norm(x, &w.out_norm, w.config.eps as f32)?)?;
        let mine = rows(&w.lm_head, &h, self.mine(self.vocab))?;
        let Some(parts) = comm.gather(0, f32_bytes(&mine))? else {
            return Ok(None);
        };
        let logits: Vec<f32> = parts.iter().flat_map(|p| bytes_f32(p)).collect();
        check_len(comm, "logits", logits.len(), self.vocab)?;
        Ok(Some(logits))
    }

    /// Every rank's Q|K|V rows (`mine`: this rank's, in that order) put together: the whole
    /// Q, K and V of the token on every rank.
    fn unpack_qkv(&self, comm: &mut dyn Comm, mine: &[f32]) -> Result<[Vec<f32>; 3]> {
        let parts = comm.all_gather(f32_bytes(mine))?;
        let [mut q, mut k, mut v] = [0, 1, 2].map(|_| Vec::new());
        for (r, part) in parts.iter().enumerate() {
            let part = bytes_f32(part);
            let (nq, nkv) = (
                share(self.q, r, self.world).len(),
                share(self.kv, r, self.world).len(),
            );
            check_len(comm, "Q|K|V part", part.len(), nq + 2 * nkv)?;
            q.extend_from_slice(&part[..nq]);
            k.extend_from_slice(&part[nq..nq + nkv]);
            v.extend_from_slice(&part[nq + nkv..]);
        }
        Ok([q, k, v])
    }

    /// The attention output (`[heads, 1, head_dim]`: the token's `[embd]` row, head-major)
    /// through Wo plus the residual, then the SwiGLU MLP plus its residual: `[1, 1, embd]`.
    fn finish(
        &self,
        lw: &LayerWeights,
        c: &ModelConfig,
        out: &[f32],
        residual: &Tensor,
        comm: &mut dyn Comm,
    ) -> Result<Tensor> {
        let o = rows(&lw.wo, out, self.mine(self.embd))?;
        let x = (row(all_gather(comm, &o, self.embd)?)? + residual)?;
        let h = flat(&rms_norm(&x, &lw.ffn_norm, c.eps as f32)?)?;
        let mine = self.mine(self.ffn);
        let n = mine.len();
        let gate = Tensor::from_vec(rows(&lw.gate, &h, mine.clone())?, n, &Device::Cpu)?;
        let up = Tensor::from_vec(rows(&lw.up, &h, mine)?, n, &Device::Cpu)?;
        let act = (candle_nn::ops::silu(&gate)? * up)?.to_vec1::<f32>()?;
        let act = all_gather(comm, &act, self.ffn)?;
        let down = rows(&lw.down, &act, self.mine(self.embd))?;
        Ok((row(all_gather(comm, &down, self.embd)?)? + x)?)
    }
}

/// Rows `r` of `lin · x` from its packed blocks.
fn rows(lin: &Linear, x: &[f32], r: Range<usize>) -> Result<Vec<f32>> {
    lin.matvec_rows(x, r.clone())
        .ok_or_else(|| ModelError::Invalid {
            field: "weights",
            reason: format!(
                "rows {r:?} of a {} × {} projection: no packed blocks of that shape",
                lin.packed_rows().unwrap_or(0),
                x.len()
            ),
        })
}

/// `v` as a `[1, 1, len]` tensor (one token's row).
fn row(v: Vec<f32>) -> Result<Tensor> {
    let n = v.len();
    Ok(Tensor::from_vec(v, (1, 1, n), &Device::Cpu)?)
}

/// Every rank's slice (`mine`: this rank's) put together in rank order: `n` values.
fn all_gather(comm: &mut dyn Comm, mine: &[f32], n: usize) -> Result<Vec<f32>> {
    let whole: Vec<f32> = comm
        .all_gather(f32_bytes(mine))?
        .iter()
        .flat_map(|p| bytes_f32(p))
        .collect();
    check_len(comm, "all-gathered vector", whole.len(), n)?;
    Ok(whole)
}

fn check_len(comm: &dyn Comm, what: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        return Ok(());
    }
    Err(ModelError::Runtime(ringattn_runtime::Error::Comm {
        rank: comm.rank(),
        reason: format!("tensor-parallel decode: {what} of {got} values, expected {want}"),
    }))
}

/// Little-endian bytes of `v` (what the collectives carry).
pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The `f32`s of little-endian bytes (a trailing partial value is dropped).
pub(crate) fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_rows_once_in_order_and_differ_by_at_most_one() {
        for n in [0, 1, 5, 192, 576, 49_152] {
            for world in 1..=5 {
                let ranges: Vec<_> = (0..world).map(|r| share(n, r, world)).collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[world - 1].end, n);
                for pair in ranges.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start, "n={n} world={world}");
                }
                let lens: Vec<_> = ranges.iter().map(|r| r.len()).collect();
                let (lo, hi) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
                assert!(hi - lo <= 1, "n={n} world={world}: {lens:?}");
            }
        }
    }

    #[test]
    fn f32_bytes_round_trip() {
        let v = [0.0f32, -1.5, f32::MAX, 1e-30];
        assert_eq!(bytes_f32(&f32_bytes(&v)), v);
    }
}
