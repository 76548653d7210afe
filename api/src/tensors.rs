//! Plain `[heads, tokens, dim]` f32 tensors as model code holds them: picking a rank's rows,
//! putting every rank's rows back in token order, deterministic test data, and the exact f64
//! attention that results are checked against.

use ringattn_runtime::reference::reference_row;
use ringattn_runtime::Mask;

/// Rows `positions` of every head of a `[heads, n, dim]` tensor, as `[heads, positions, dim]`
/// (a rank's shard in shard order, given [`LayerAttention::positions`](crate::LayerAttention::positions)).
pub fn shard_rows(t: &[f32], heads: usize, n: usize, dim: usize, positions: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(heads * positions.len() * dim);
    for h in 0..heads {
        for &p in positions {
            let row = (h * n + p) * dim;
            out.extend_from_slice(&t[row..row + dim]);
        }
    }
    out
}

/// Writes a shard's rows (`[heads, positions, dim]`) into their places of the `[heads, n, dim]`
/// tensor `t`: the inverse of [`shard_rows`] (`dim = 1` for log-sum-exp values).
pub fn scatter_rows(
    shard: &[f32],
    t: &mut [f32],
    heads: usize,
    n: usize,
    dim: usize,
    positions: &[usize],
) {
    let rows = positions.len();
    for h in 0..heads {
        for (i, &p) in positions.iter().enumerate() {
            let (src, dst) = ((h * rows + i) * dim, (h * n + p) * dim);
            t[dst..dst + dim].copy_from_slice(&shard[src..src + dim]);
        }
    }
}

/// `len` deterministic values in [−1, 1) from `seed` (a 64-bit LCG; the same on every machine).
pub fn random_values(len: usize, seed: u64) -> Vec<f32> {
    const A: u64 = 6364136223846793005;
    const C: u64 = 1442695040888963407;
    let mut s = seed.wrapping_mul(A).wrapping_add(C);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(A).wrapping_add(C);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Exact attention in f64 of `q` (`[heads, n, dim]`) over `k`, `v` (`[kv_heads, n, dim]`,
/// query head `h` reads KV head `h / (heads / kv_heads)`) under `mask_of(kv_head)`. Returns
/// `(out [heads, n, dim], lse [heads, n])`. O(n² · dim): for checks on small inputs.
pub fn reference_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (heads, kv_heads, n, dim): (usize, usize, usize, usize),
    mask_of: impl Fn(usize) -> Mask,
) -> (Vec<f64>, Vec<f64>) {
    let group = heads / kv_heads.max(1);
    let (mut out, mut lse) = (
        Vec::with_capacity(heads * n * dim),
        Vec::with_capacity(heads * n),
    );
    for h in 0..heads {
        let g = h / group.max(1);
        let (keys, values) = (
            &k[g * n * dim..(g + 1) * n * dim],
            &v[g * n * dim..(g + 1) * n * dim],
        );
        for p in 0..n {
            let row = &q[(h * n + p) * dim..(h * n + p + 1) * dim];
            let (o, l) = reference_row(row, p, keys, values, dim, mask_of(g));
            out.extend(o);
            lse.push(l);
        }
    }
    (out, lse)
}

/// Largest `|a − b|` over two equally long sequences (0 for empty ones); equal infinities
/// (a row that saw no key) count as no error.
pub fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            if x as f64 == y {
                0.0
            } else {
                (x as f64 - y).abs()
            }
        })
        .fold(0.0, f64::max)
}
