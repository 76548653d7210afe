//! `--check`: a rank's rows against the f64 reference.

use ringattn_runtime::reference::reference_row;
use ringattn_runtime::{Dtype, Finalized, Mask, Positions, QShard, Result, RowSource, TensorKind};
use serde::{Deserialize, Serialize};

/// Largest errors `--check` accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Largest |out − reference|.
    pub out: f64,
    /// Largest |lse − reference|.
    pub lse: f64,
}

impl Tolerance {
    /// f32 KV: out 2e-5, lse 1e-5; bf16 KV (8-bit mantissa): 2e-2 for both.
    pub fn for_dtype(dtype: Dtype) -> Tolerance {
        match dtype {
            Dtype::F32 => Tolerance {
                out: 2e-5,
                lse: 1e-5,
            },
            Dtype::Bf16 => Tolerance {
                out: 2e-2,
                lse: 2e-2,
            },
        }
    }
}

/// Errors found on the checked rows of one or more ranks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// (head, token) rows compared.
    pub rows_checked: u64,
    /// Largest |out − reference| over every element of those rows.
    pub max_abs_err: f64,
    /// Largest |lse − reference|.
    pub max_lse_err: f64,
}

impl CheckResult {
    /// One (head, token) row: its output and lse against the reference's. A NaN error counts
    /// as infinite (it must fail the check, and `f64::max` would drop it); the lse of a row
    /// with no allowed key (reference −∞) is not compared.
    pub fn of_row(out: &[f32], want_out: &[f64], lse: f32, want_lse: f64) -> CheckResult {
        let not_nan = |e: f64| if e.is_nan() { f64::INFINITY } else { e };
        CheckResult {
            rows_checked: 1,
            max_abs_err: out
                .iter()
                .zip(want_out)
                .map(|(&g, &w)| not_nan((g as f64 - w).abs()))
                .fold(0.0, f64::max),
            max_lse_err: if want_lse.is_finite() {
                not_nan((lse as f64 - want_lse).abs())
            } else {
                0.0
            },
        }
    }

    /// Combines the results of two sets of rows.
    pub fn combine(self, other: CheckResult) -> CheckResult {
        CheckResult {
            rows_checked: self.rows_checked + other.rows_checked,
            max_abs_err: self.max_abs_err.max(other.max_abs_err),
            max_lse_err: self.max_lse_err.max(other.max_lse_err),
        }
    }

    /// Within `tol`.
    pub fn passed(&self, tol: Tolerance) -> bool {
        self.max_abs_err <= tol.out && self.max_lse_err <= tol.lse
    }
}

/// Local rows to check: all when `rows` ≥ the shard, else `rows` evenly spaced ones that
/// include the first and the last.
pub fn sample_rows(len: usize, rows: usize) -> Vec<usize> {
    if rows >= len {
        return (0..len).collect();
    }
    if rows <= 1 {
        return vec![len - 1];
    }
    let mut picked: Vec<usize> = (0..rows).map(|i| i * (len - 1) / (rows - 1)).collect();
    picked.dedup();
    picked
}

/// Compares `rows` local rows of `fin` (this rank's output for `q`) with the reference over
/// all `seq` keys, one KV head at a time (K/V of one head materialised at once). `masks[h]` is
/// the mask of KV head h and its query heads (per-head masks of DuoAttention).
pub fn check_rank(
    source: &dyn RowSource,
    q: &QShard,
    fin: &Finalized,
    seq: usize,
    masks: &[Mask],
    rows: usize,
) -> Result<CheckResult> {
    let kv_heads = masks.len();
    let dim = q.dim;
    let local = sample_rows(q.rows(), rows);
    let group = q.heads / kv_heads;
    let all = Positions::contiguous(0, seq);
    let mut result = CheckResult::default();
    for (kv_head, &mask) in masks.iter().enumerate() {
        let mut keys = vec![0.0f32; seq * dim];
        let mut values = vec![0.0f32; seq * dim];
        for (pos, (k, v)) in all
            .iter()
            .zip(keys.chunks_mut(dim).zip(values.chunks_mut(dim)))
        {
            source.fill_row(TensorKind::K, kv_head, pos, k)?;
            source.fill_row(TensorKind::V, kv_head, pos, v)?;
        }
        for head in kv_head * group..(kv_head + 1) * group {
            for &row in &local {
                let (out, lse) = reference_row(
                    q.row(head, row),
                    q.positions.get(row),
                    &keys,
                    &values,
                    dim,
                    mask,
                );
                let i = head * q.rows() + row;
                let got = &fin.out[i * dim..(i + 1) * dim];
                result = result.combine(CheckResult::of_row(got, &out, fin.lse[i], lse));
            }
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_output_fails_and_an_empty_row_has_no_lse_error() {
        let ok = CheckResult::of_row(&[1.0, 2.0], &[1.0, 2.5], 0.25, 0.0);
        assert_eq!((ok.max_abs_err, ok.max_lse_err), (0.5, 0.25));
        let nan = CheckResult::of_row(&[f32::NAN, 2.0], &[1.0, 2.0], f32::NAN, 0.0);
        assert_eq!(
            (nan.max_abs_err, nan.max_lse_err),
            (f64::INFINITY, f64::INFINITY)
        );
        assert!(!nan.passed(Tolerance::for_dtype(Dtype::F32)));
        let empty = CheckResult::of_row(&[0.0], &[0.0], f32::NEG_INFINITY, f64::NEG_INFINITY);
        assert_eq!(empty.max_lse_err, 0.0);
    }

    #[test]
    fn samples_include_ends_and_cap_at_len() {
        assert_eq!(sample_rows(5, 10), vec![0, 1, 2, 3, 4]);
        assert_eq!(sample_rows(100, 3), vec![0, 49, 99]);
        assert_eq!(sample_rows(100, 1), vec![99]);
        let too_far = CheckResult {
            rows_checked: 1,
            max_abs_err: 3e-5,
            max_lse_err: 0.0,
        };
        assert!(!too_far.passed(Tolerance::for_dtype(Dtype::F32)));
        assert!(too_far.passed(Tolerance::for_dtype(Dtype::Bf16)));
    }
}
