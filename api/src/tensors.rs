//! Plain `[heads, tokens, dim]` f32 tensors as model code holds them: picking a rank's rows
//! and putting every rank's rows back in token order.

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
