//! Comparing computed attention rows with the f64 reference, with tolerances relative to the
//! magnitudes involved (what `--check` and the tests use).
//!
//! An output element passes when `|out − ref| ≤ atol + rtol·|ref|`, an lse when
//! `|lse − ref| ≤ atol + rtol·|ref|` (so an lse of 300 is allowed f32 rounding at its own
//! scale: an absolute bound alone fails correct results for large scores). A non-finite
//! output or lse never passes. Each row records the worst error and the worst *ratio* of
//! error to allowed error, so results from many rows and ranks combine by `max` and the check
//! passes when every ratio is at most 1.

use serde::{Deserialize, Serialize};

use crate::tensor::Dtype;

/// Allowed error: `atol + rtol·|reference|`, separately for outputs and lse.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    /// Absolute part for output elements.
    pub out_atol: f64,
    /// Relative part for output elements (times |reference element|).
    pub out_rtol: f64,
    /// Absolute part for the lse.
    pub lse_atol: f64,
    /// Relative part for the lse (times |reference lse|).
    pub lse_rtol: f64,
}

impl Tolerance {
    /// f32 KV: out 2e-5 + 2e-5·|ref|, lse 1e-5 + 2e-6·|lse| (about 16 f32 ulps of the lse);
    /// bf16 KV (8-bit mantissa): 2e-2 + 2e-2·|ref| for both.
    pub fn for_dtype(dtype: Dtype) -> Tolerance {
        match dtype {
            Dtype::F32 => Tolerance {
                out_atol: 2e-5,
                out_rtol: 2e-5,
                lse_atol: 1e-5,
                lse_rtol: 2e-6,
            },
            Dtype::Bf16 => Tolerance {
                out_atol: 2e-2,
                out_rtol: 2e-2,
                lse_atol: 2e-2,
                lse_rtol: 2e-2,
            },
        }
    }
}

/// Errors found on some checked rows (one row, or many combined).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RowErrors {
    /// (head, token) rows compared.
    pub rows_checked: u64,
    /// Largest |out − reference| over every element (infinite for a non-finite output).
    pub max_abs_err: f64,
    /// Largest |lse − reference| (infinite for a non-finite lse where a finite one was due).
    pub max_lse_err: f64,
    /// Largest |out − reference| / (atol + rtol·|reference|): the check passes at ≤ 1.
    pub out_ratio: f64,
    /// Largest |lse − reference| / (atol + rtol·|reference|): the check passes at ≤ 1.
    pub lse_ratio: f64,
}

/// |got − want|, with a non-finite `got` (or a NaN difference) counting as infinite.
fn error(got: f64, want: f64) -> f64 {
    let e = (got - want).abs();
    if got.is_finite() && !e.is_nan() {
        e
    } else {
        f64::INFINITY
    }
}

impl RowErrors {
    /// One row: its output and lse against the reference's, under `tol`. The lse of a row
    /// with no allowed key (reference −∞) must be −∞ too; its output must be finite.
    pub fn of_row(out: &[f32], want_out: &[f64], lse: f32, want_lse: f64, tol: Tolerance) -> Self {
        let mut r = RowErrors {
            rows_checked: 1,
            ..RowErrors::default()
        };
        for (&g, &w) in out.iter().zip(want_out) {
            let e = error(g as f64, w);
            r.max_abs_err = r.max_abs_err.max(e);
            r.out_ratio = r.out_ratio.max(e / (tol.out_atol + tol.out_rtol * w.abs()));
        }
        if want_lse.is_finite() {
            let e = error(lse as f64, want_lse);
            r.max_lse_err = e;
            r.lse_ratio = e / (tol.lse_atol + tol.lse_rtol * want_lse.abs());
        } else if lse as f64 != want_lse {
            r.max_lse_err = f64::INFINITY;
            r.lse_ratio = f64::INFINITY;
        }
        r
    }

    /// Combines the errors of two sets of rows.
    pub fn combine(self, other: RowErrors) -> RowErrors {
        RowErrors {
            rows_checked: self.rows_checked + other.rows_checked,
            max_abs_err: self.max_abs_err.max(other.max_abs_err),
            max_lse_err: self.max_lse_err.max(other.max_lse_err),
            out_ratio: self.out_ratio.max(other.out_ratio),
            lse_ratio: self.lse_ratio.max(other.lse_ratio),
        }
    }

    /// Every element and lse within its tolerance (and finite).
    pub fn passed(&self) -> bool {
        self.out_ratio <= 1.0 && self.lse_ratio <= 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F32: Tolerance = Tolerance {
        out_atol: 2e-5,
        out_rtol: 2e-5,
        lse_atol: 1e-5,
        lse_rtol: 2e-6,
    };

    #[test]
    fn relative_tolerance_accepts_large_magnitudes_at_their_scale() {
        // The case: lse ≈ 300, out error 2.8e-5 at |out| ≈ 3.5 (relative 8e-6).
        let r = RowErrors::of_row(&[3.500028], &[3.5], 300.0002, 300.0, F32);
        assert!(r.passed(), "{r:?}");
        assert!(r.max_abs_err > 2e-5, "an absolute-only bound would fail it");
        // The same absolute error at a small magnitude fails.
        let small = RowErrors::of_row(&[0.000030], &[0.0], 1.0, 1.0, F32);
        assert!(!small.passed(), "{small:?}");
        // lse: 1e-4 off at 300 passes (3.3e-7 relative), at 1.0 it fails.
        assert!(RowErrors::of_row(&[0.0], &[0.0], 300.0001, 300.0, F32).passed());
        assert!(!RowErrors::of_row(&[0.0], &[0.0], 1.0001, 1.0, F32).passed());
        assert_eq!(Tolerance::for_dtype(Dtype::F32), F32);
    }

    #[test]
    fn non_finite_results_never_pass() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let r = RowErrors::of_row(&[1.0, bad], &[1.0, 2.0], 0.5, 0.5, F32);
            assert!(!r.passed() && r.max_abs_err.is_infinite(), "{r:?}");
            let l = RowErrors::of_row(&[1.0], &[1.0], bad, 0.5, F32);
            assert!(!l.passed() && l.max_lse_err.is_infinite(), "{l:?}");
        }
        // A row with no allowed key: lse −∞ and zero output pass; a finite lse does not.
        assert!(
            RowErrors::of_row(&[0.0], &[0.0], f32::NEG_INFINITY, f64::NEG_INFINITY, F32).passed()
        );
        assert!(!RowErrors::of_row(&[0.0], &[0.0], 0.0, f64::NEG_INFINITY, F32).passed());
        // A huge reference still needs a finite output.
        assert!(!RowErrors::of_row(&[f32::INFINITY], &[1e300], 0.0, 0.0, F32).passed());
    }

    #[test]
    fn combine_keeps_the_worst_of_each() {
        let a = RowErrors::of_row(&[1.0], &[1.0], 2.0, 2.0, F32);
        let b = RowErrors::of_row(&[1.1], &[1.0], 2.0, 2.0, F32);
        let c = a.combine(b);
        assert_eq!(c.rows_checked, 2);
        assert!((c.max_abs_err - 0.1).abs() < 1e-6 && !c.passed());
        assert!(a.passed() && a.combine(a).passed());
    }
}
