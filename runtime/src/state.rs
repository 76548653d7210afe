//! The online-softmax state: per (query head, query row) a running max `m`, running sum `l`
//! and accumulator `acc[dim]`, all f32.
//!
//! Processing a KV block updates the state (see [`crate::kernel`]); two states over disjoint
//! key sets merge by the log-sum-exp rule ([`AttnState::merge`]); [`AttnState::finalize`] gives
//! `out = acc / l` and `lse = m + ln l`. The same merge serves the ring pass, the decode reduction
//! across ranks and the check against the reference. Never accumulated in bf16: drift across
//! hops is the most reported bug of ring implementations.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::positions::Positions;

/// The running max of a row whose scores left the f32 range (a Q·K product overflowed, or
/// overflowing terms cancelled into NaN): +∞. It is sticky (no later key lowers it, merges keep
/// it, no `exp(∞ − ∞)` is ever taken) and [`AttnState::finalize_checked`] reports it.
pub const OVERFLOWED: f32 = f32::INFINITY;

/// Merges the partial `(m2, l2, acc2)` of one query row into `(m, l, acc)` by log-sum-exp: the
/// one merge rule of the ring pass, the decode reduction and the kernel's callers. Never forms
/// `∞ − ∞`: an [`OVERFLOWED`] row stays overflowed.
pub fn merge_row(m: &mut f32, l: &mut f32, acc: &mut [f32], m2: f32, l2: f32, acc2: &[f32]) {
    let mx = m.max(m2);
    if mx == f32::NEG_INFINITY {
        return;
    }
    if mx == OVERFLOWED {
        *m = OVERFLOWED;
        return;
    }
    let (a1, a2) = ((*m - mx).exp(), (m2 - mx).exp());
    *m = mx;
    *l = *l * a1 + l2 * a2;
    for (x, &y) in acc.iter_mut().zip(acc2) {
        *x = *x * a1 + y * a2;
    }
}

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
    /// Running `Σ exp(score − m) · v`, `[heads][rows][dim]`, in units of `2^v_exp`.
    pub acc: Vec<f32>,
    /// The power of two `acc` is scaled down by: 0, or [`crate::vscale::V_SCALE_EXP`] once a
    /// block with |v| near `f32::MAX` was seen (see [`crate::vscale`]); `finalize` scales back.
    #[serde(default)]
    pub v_exp: i32,
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
            v_exp: 0,
        })
    }

    /// Brings `acc` to units of `2^exp` (`exp` ≥ [`v_exp`](Self::v_exp); a smaller one is a
    /// no-op): multiplies it by the exact power of two `2^(v_exp − exp)`.
    pub fn rescale_to(&mut self, exp: i32) {
        if exp > self.v_exp {
            let f = crate::vscale::pow2(self.v_exp - exp);
            self.acc.iter_mut().for_each(|x| *x *= f);
            self.v_exp = exp;
        }
    }

    /// Merges `other` (same rows, a disjoint set of keys) into `self` by log-sum-exp.
    pub fn merge(&mut self, other: &AttnState) {
        assert_eq!(
            (self.heads, self.rows, self.dim),
            (other.heads, other.rows, other.dim),
            "merging states of different shapes"
        );
        if other.v_exp > self.v_exp {
            self.rescale_to(other.v_exp);
        } else if other.v_exp < self.v_exp {
            let mut scaled = other.clone();
            scaled.rescale_to(self.v_exp);
            return self.merge(&scaled);
        }
        let d = self.dim;
        for i in 0..self.m.len() {
            merge_row(
                &mut self.m[i],
                &mut self.l[i],
                &mut self.acc[i * d..(i + 1) * d],
                other.m[i],
                other.l[i],
                &other.acc[i * d..(i + 1) * d],
            );
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
        if part.v_exp != self.v_exp {
            self.rescale_heads(part.v_exp, heads);
        }
    }

    /// [`finalize`](Self::finalize), refusing a result f32 cannot hold: a row whose scores
    /// overflowed, or whose output or lse is not finite, is [`Error::Overflow`] naming the
    /// tensor, the query head and the row's global position (`positions` are the rows'
    /// positions). Finite inputs thus never give NaN or ±∞ silently.
    pub fn finalize_checked(&self, positions: &Positions) -> Result<Finalized> {
        let fin = self.finalize();
        let rows = self.rows.max(1);
        let d = self.dim;
        let overflow = |tensor, i: usize, reason: &str| Error::Overflow {
            tensor,
            head: i / rows,
            position: if i % rows < positions.len() {
                positions.get(i % rows)
            } else {
                i % rows
            },
            reason: reason.to_string(),
        };
        for i in 0..self.m.len() {
            if self.m[i] == OVERFLOWED || self.m[i].is_nan() {
                return Err(overflow(
                    "scores",
                    i,
                    "a query·key score is beyond the f32 range (|q·k|/√d > 3.4e38)",
                ));
            }
            if fin.lse[i].is_nan() || fin.lse[i] == f32::INFINITY {
                return Err(overflow(
                    "lse",
                    i,
                    "the log-sum-exp is beyond the f32 range",
                ));
            }
            if fin.out[i * d..(i + 1) * d].iter().any(|x| !x.is_finite()) {
                return Err(overflow(
                    "out",
                    i,
                    "the weighted sum of V rows is beyond the f32 range (|v| near 3.4e38)",
                ));
            }
        }
        Ok(fin)
    }

    /// Puts the heads `heads` (just copied from a state at exponent `exp`) and the others at
    /// one exponent, the larger of `exp` and [`v_exp`](Self::v_exp).
    fn rescale_heads(&mut self, exp: i32, heads: &[usize]) {
        let rd = self.rows * self.dim;
        let target = exp.max(self.v_exp);
        for h in 0..self.heads {
            let from = if heads.contains(&h) { exp } else { self.v_exp };
            if from < target {
                let f = crate::vscale::pow2(from - target);
                self.acc[h * rd..(h + 1) * rd]
                    .iter_mut()
                    .for_each(|x| *x *= f);
            }
        }
        self.v_exp = target;
    }

    /// `out = acc / l · 2^v_exp`, `lse = m + ln l`; rows that saw no key give 0 and −∞, rows
    /// whose scores overflowed give NaN and +∞ (use [`finalize_checked`](Self::finalize_checked)
    /// to refuse them). Scaling back never turns a finite result into ±∞: the output is a convex
    /// combination of V rows, so a product past `f32::MAX` is rounding and is clamped to it.
    pub fn finalize(&self) -> Finalized {
        let d = self.dim;
        let mut out = vec![0.0f32; self.acc.len()];
        let mut lse = vec![f32::NEG_INFINITY; self.m.len()];
        for i in 0..self.m.len() {
            let l = self.l[i];
            if self.m[i] == OVERFLOWED || self.m[i].is_nan() {
                out[i * d..(i + 1) * d].fill(f32::NAN);
                lse[i] = f32::INFINITY;
            } else if l > 0.0 {
                let inv = 1.0 / l;
                for (o, a) in out[i * d..(i + 1) * d]
                    .iter_mut()
                    .zip(&self.acc[i * d..(i + 1) * d])
                {
                    *o = a * inv;
                }
                if self.v_exp != 0 {
                    scale_back(&mut out[i * d..(i + 1) * d], self.v_exp);
                }
                lse[i] = self.m[i] + l.ln();
            }
        }
        Finalized { out, lse }
    }
}

/// Multiplies the finite values of `out` by `2^exp` (as two exact steps, since `2^exp` itself
/// may not be an f32), clamping a finite value the rounding pushed past `f32::MAX`.
fn scale_back(out: &mut [f32], exp: i32) {
    let (e1, e2) = (exp / 2, exp - exp / 2);
    let (f1, f2) = (crate::vscale::pow2(e1), crate::vscale::pow2(e2));
    for o in out {
        if o.is_finite() {
            *o = (*o * f1 * f2).clamp(f32::MIN, f32::MAX);
        }
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
