//! The online-softmax state: per (query head, query row) a running max `m`, running sum `l`
//! and accumulator `acc[dim]`, all f32.
//!
//! Processing a KV block updates the state (see [`crate::kernel`]); two states over disjoint
//! key sets merge by the log-sum-exp rule ([`AttnState::merge`]); [`AttnState::finalize`] gives
//! `out = acc / l` and `lse = m + ln l`. The same merge serves the ring pass, the decode reduction
//! across ranks and the check against the reference. Never accumulated in bf16: drift across
//! hops is the most reported bug of ring implementations.

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Unnormalised attention state for `heads × rows` query rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttnState {
    /// Number of query heads.
    pub heads: usize,
    /// Number of query rows per head.
    pub rows: usize,
    /// Head dimension.
    pub dim: usize,
    /// Running max of the scaled scores, `[heads][rows]` (−∞ before any key).
    pub m: Vec<f32>,
    /// Running sum of `exp(score − m)`, `[heads][rows]`.
    pub l: Vec<f32>,
    /// Running `Σ exp(score − m) · v`, `[heads][rows][dim]`.
    pub acc: Vec<f32>,
}

/// Final attention output of a set of rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Finalized {
    /// `out[heads][rows][dim]`.
    pub out: Vec<f32>,
    /// `lse[heads][rows]`: log-sum-exp of the scaled scores (−∞ for a row that saw no key).
    pub lse: Vec<f32>,
}

impl AttnState {
    /// The empty state (no key seen yet). Every page is written here (not lazily mapped as
    /// `vec![0.0; n]` would be), so the first kernel call does not pay the page faults.
    /// Panics when the sizes overflow or cannot be allocated: sizes from user input go through
    /// [`AttnState::try_new`].
    pub fn new(heads: usize, rows: usize, dim: usize) -> Self {
        Self::try_new(heads, rows, dim).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`AttnState::new`], or a typed error when `heads × rows × dim` overflows or the
    /// allocator refuses.
    pub fn try_new(heads: usize, rows: usize, dim: usize) -> Result<Self> {
        // An opaque fill value keeps the compiler from turning this into a lazy calloc.
        let filled = |dims: &[usize], value: f32, what: &str| {
            crate::tensor::filled_f32(dims, std::hint::black_box(value), what)
        };
        Ok(AttnState {
            heads,
            rows,
            dim,
            m: filled(&[heads, rows], f32::NEG_INFINITY, "state m")?,
            l: filled(&[heads, rows], 0.0, "state l")?,
            acc: filled(&[heads, rows, dim], 0.0, "state acc")?,
        })
    }

    /// Merges `other` (same rows, a disjoint set of keys) into `self` by log-sum-exp.
    pub fn merge(&mut self, other: &AttnState) {
        assert_eq!(
            (self.heads, self.rows, self.dim),
            (other.heads, other.rows, other.dim),
            "merging states of different shapes"
        );
        let d = self.dim;
        for i in 0..self.m.len() {
            let (m1, m2) = (self.m[i], other.m[i]);
            let m = m1.max(m2);
            if m == f32::NEG_INFINITY {
                continue;
            }
            let a1 = (m1 - m).exp();
            let a2 = (m2 - m).exp();
            self.m[i] = m;
            self.l[i] = self.l[i] * a1 + other.l[i] * a2;
            let acc = &mut self.acc[i * d..(i + 1) * d];
            for (x, y) in acc.iter_mut().zip(&other.acc[i * d..(i + 1) * d]) {
                *x = *x * a1 + *y * a2;
            }
        }
    }

    /// Copies head `i` of `part` (same rows and dim) into head `heads[i]` of `self`: puts the
    /// state of a sub-shard made by `QShard::select_heads(heads)` back in full head order.
    pub fn scatter_heads(&mut self, part: &AttnState, heads: &[usize]) {
        assert_eq!(
            (part.heads, part.rows, part.dim),
            (heads.len(), self.rows, self.dim),
            "scattering a state of another shape"
        );
        let (rows, rd) = (self.rows, self.rows * self.dim);
        for (i, &h) in heads.iter().enumerate() {
            self.m[h * rows..(h + 1) * rows].copy_from_slice(&part.m[i * rows..(i + 1) * rows]);
            self.l[h * rows..(h + 1) * rows].copy_from_slice(&part.l[i * rows..(i + 1) * rows]);
            self.acc[h * rd..(h + 1) * rd].copy_from_slice(&part.acc[i * rd..(i + 1) * rd]);
        }
    }

    /// `out = acc / l`, `lse = m + ln l`; rows that saw no key give 0 and −∞.
    pub fn finalize(&self) -> Finalized {
        let d = self.dim;
        let mut out = vec![0.0f32; self.acc.len()];
        let mut lse = vec![f32::NEG_INFINITY; self.m.len()];
        for i in 0..self.m.len() {
            let l = self.l[i];
            if l > 0.0 {
                let inv = 1.0 / l;
                for (o, a) in out[i * d..(i + 1) * d]
                    .iter_mut()
                    .zip(&self.acc[i * d..(i + 1) * d])
                {
                    *o = a * inv;
                }
                lse[i] = self.m[i] + l.ln();
            }
        }
        Finalized { out, lse }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scatter_heads_puts_each_head_in_its_place() {
        let mut full = AttnState::new(3, 2, 2);
        let mut part = AttnState::new(2, 2, 2);
        part.m = vec![1.0, 2.0, 3.0, 4.0];
        part.l = vec![5.0, 6.0, 7.0, 8.0];
        part.acc = (0..8).map(|x| x as f32).collect();
        full.scatter_heads(&part, &[2, 0]);
        assert_eq!(full.m[..2], [3.0, 4.0]);
        assert_eq!(full.m[4..], [1.0, 2.0]);
        assert!(full.m[2..4].iter().all(|m| *m == f32::NEG_INFINITY));
        assert_eq!(full.l, vec![7.0, 8.0, 0.0, 0.0, 5.0, 6.0]);
        assert_eq!(full.acc[..4], [4.0, 5.0, 6.0, 7.0]);
        assert_eq!(full.acc[8..], [0.0, 1.0, 2.0, 3.0]);
    }
}
