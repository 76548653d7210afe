//! The f64 reference attention used by tests and `--check`.
//!
//! It is the plain definition, one query row at a time: O(N · d) per row, so checks on long
//! sequences sample rows instead of computing all of them.

use crate::mask::Mask;

/// Exact attention of one query row against keys/values indexed by global position.
///
/// `keys` and `values` are `[n][dim]` in global position order; returns `(out[dim], lse)`, with
/// `lse = −∞` and a zero output when the mask allows no key.
pub fn reference_row(
    q: &[f32],
    q_pos: usize,
    keys: &[f32],
    values: &[f32],
    dim: usize,
    mask: Mask,
) -> (Vec<f64>, f64) {
    let n = keys.len().checked_div(dim).unwrap_or(0);
    let scale = 1.0 / (dim as f64).sqrt();
    let scores: Vec<Option<f64>> = (0..n)
        .map(|k| {
            mask.allows(q_pos, k).then(|| {
                let key = &keys[k * dim..(k + 1) * dim];
                q.iter()
                    .zip(key)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()
                    * scale
            })
        })
        .collect();
    let max = scores
        .iter()
        .flatten()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let mut out = vec![0.0f64; dim];
    if max == f64::NEG_INFINITY {
        return (out, f64::NEG_INFINITY);
    }
    let mut sum = 0.0f64;
    for (k, s) in scores.iter().enumerate() {
        if let Some(s) = s {
            let p = (s - max).exp();
            sum += p;
            for (o, &v) in out.iter_mut().zip(&values[k * dim..(k + 1) * dim]) {
                *o += p * v as f64;
            }
        }
    }
    out.iter_mut().for_each(|o| *o /= sum);
    (out, max + sum.ln())
}
