//! `--check`: a rank's rows against the f64 reference, with the runtime's relative tolerances
//! ([`Tolerance::for_dtype`]: an element passes at `|err| <= atol + rtol·|ref|`, the lse
//! relative to `|lse|`; a non-finite output never passes).

use ringattn_runtime::reference::reference_row;
use ringattn_runtime::{Finalized, Mask, Positions, QShard, Result, RowSource, TensorKind};

pub use ringattn_runtime::check::{RowErrors, Tolerance};

/// Errors found on the checked rows of one or more ranks (the runtime's [`RowErrors`]: the
/// largest errors and their ratios to the allowed `atol + rtol·|reference|`).
pub type CheckResult = RowErrors;

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
/// the mask of KV head h and its query heads (per-head masks of DuoAttention); `tol` the
/// allowed errors.
pub fn check_rank(
    source: &dyn RowSource,
    q: &QShard,
    fin: &Finalized,
    seq: usize,
    masks: &[Mask],
    (rows, tol): (usize, Tolerance),
) -> Result<CheckResult> {
    let kv_heads = masks.len();
    let dim = q.dim;
    let local = sample_rows(q.rows(), rows);
    let group = q.heads / kv_heads;
    let all = Positions::contiguous(0, seq);
    let mut result = CheckResult::default();
    for (kv_head, mask) in masks.iter().enumerate() {
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
                    mask.clone(),
                );
                let i = head * q.rows() + row;
                let got = &fin.out[i * dim..(i + 1) * dim];
                result = result.combine(CheckResult::of_row(got, &out, fin.lse[i], lse, tol));
            }
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringattn_runtime::Dtype;

    #[test]
    fn a_nan_output_fails_and_large_magnitudes_pass_at_their_scale() {
        let f32_tol = Tolerance::for_dtype(Dtype::F32);
        let nan = CheckResult::of_row(&[f32::NAN, 2.0], &[1.0, 2.0], f32::NAN, 0.0, f32_tol);
        assert!(!nan.passed());
        let inf = CheckResult::of_row(&[1.0], &[1.0], f32::INFINITY, 4e12, f32_tol);
        assert!(!inf.passed());
        // The case: lse ≈ 300, out error 2.8e-5 at |out| ≈ 3.5.
        let big = CheckResult::of_row(&[3.500028], &[3.5], 300.0002, 300.0, f32_tol);
        assert!(big.passed(), "{big:?}");
        let too_far = CheckResult::of_row(&[1e-4], &[0.0], 0.0, 0.0, f32_tol);
        assert!(!too_far.passed());
        let bf16 =
            CheckResult::of_row(&[1e-4], &[0.0], 0.0, 0.0, Tolerance::for_dtype(Dtype::Bf16));
        assert!(bf16.passed());
    }

    #[test]
    fn samples_include_ends_and_cap_at_len() {
        assert_eq!(sample_rows(5, 10), vec![0, 1, 2, 3, 4]);
        assert_eq!(sample_rows(100, 3), vec![0, 49, 99]);
        assert_eq!(sample_rows(100, 1), vec![99]);
    }
}
