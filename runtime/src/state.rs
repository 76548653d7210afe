//! The online-softmax state: per (query head, query row) a running max `m`, running sum `l`
//! and accumulator `acc[dim]`, all f32.
//!
//! Processing a KV block updates the state (see [`crate::kernel`]); two states over disjoint
//! key sets merge by the log-sum-exp rule ([`AttnState::merge`]); [`AttnState::finalize`] gives
//! `out = acc / l` and `lse = m + ln l`. The same merge serves the ring pass, the decode reduction
//! across ranks and the check against the reference. Never accumulated in bf16: drift across
//! hops is the most reported bug of ring implementations.

use serde::{Deserialize, Serialize};

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
    pub fn new(heads: usize, rows: usize, dim: usize) -> Self {
        let filled = |n: usize, value: f32| {
            let mut v = Vec::with_capacity(n);
            // An opaque fill value keeps the compiler from turning this into a lazy calloc.
            v.resize(n, std::hint::black_box(value));
            v
        };
        AttnState {
            heads,
            rows,
            dim,
            m: filled(heads * rows, f32::NEG_INFINITY),
            l: filled(heads * rows, 0.0),
            acc: filled(heads * rows * dim, 0.0),
        }
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
