//! The online softmax on 16 f32 lanes (AVX-512F), shared by the AVX-512, AVX512-BF16 and AMX
//! paths: a vectorised row max, `exp2` by range reduction (round, degree-5 polynomial, `scalef`)
//! and masked tails with no scalar loop; [`GROUP`] rows at a time so their reductions and `exp`
//! chains overlap.
//!
//! Every `unsafe` here is a `#[target_feature(enable = "avx512f")]` function whose callers hold
//! an [`Avx512`](super::avx512::Avx512) (the CPU reported AVX-512F) and pass rows they bounded.

use std::arch::x86_64::*;

use super::driver::{finish_row, overflowed, row_step, RowStep};

/// Lanes `0..n` of a 16-lane mask (n ≤ 16).
#[inline]
pub(crate) fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xFFFF
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// 2^x for every lane; lanes below −126 (and −∞) give exactly 0, NaN lanes give NaN (so a
/// NaN score shows in the row sum).
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn exp2(x: __m512) -> __m512 {
    const C: [f32; 5] = super::EXP2_POLY;
    // Not-less-than, unordered true: NaN lanes stay valid; max returns its second operand
    // (x) when one is NaN.
    let valid = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x, _mm512_set1_ps(-126.0));
    let x = _mm512_max_ps(_mm512_set1_ps(-126.0), x);
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
    let f = _mm512_sub_ps(x, n);
    let mut p = _mm512_set1_ps(C[4]);
    for &c in C[..4].iter().rev() {
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c));
    }
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0));
    // Zero-masked scalef: the invalid lanes' zeros cost no extra instruction.
    _mm512_maskz_scalef_ps(valid, p, n)
}

/// The largest of `row[..n]`.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn row_max(row: *const f32, n: usize) -> f32 {
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut vmax = neg_inf;
    let mut j = 0;
    while j < n {
        vmax = _mm512_max_ps(
            vmax,
            _mm512_mask_loadu_ps(neg_inf, lanes(n - j), row.add(j)),
        );
        j += 16;
    }
    _mm512_reduce_max_ps(vmax)
}

/// The `exp2` argument of raw scores `s`: `(s·scale − m)·log₂e` with the product rounded before
/// the subtraction, so it is ≤ 0 whenever `m ≥ max(s)·scale` (see [`row_step`]).
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn exp2_arg(s: __m512, scale: __m512, m: __m512, log2e: __m512) -> __m512 {
    _mm512_mul_ps(_mm512_sub_ps(_mm512_mul_ps(s, scale), m), log2e)
}

#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn softmax_row(
    row: *mut f32,
    n: usize,
    scale: f32,
    m: &mut f32,
    l: &mut f32,
) -> f32 {
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    let (m_new, alpha) = match row_step(row_max(row, n), scale, *m) {
        RowStep::Update { m_new, alpha } => (m_new, alpha),
        step => {
            std::ptr::write_bytes(row, 0, n);
            return if step == RowStep::Overflowed {
                overflowed(m)
            } else {
                1.0
            };
        }
    };
    let (vscale, vm) = (_mm512_set1_ps(scale), _mm512_set1_ps(m_new));
    let log2e = _mm512_set1_ps(std::f32::consts::LOG2_E);
    let mut vsum = _mm512_setzero_ps();
    let mut j = 0;
    while j < n {
        let k = lanes(n - j);
        let x = exp2_arg(
            _mm512_mask_loadu_ps(neg_inf, k, row.add(j)),
            vscale,
            vm,
            log2e,
        );
        // Lanes past the row were loaded as −∞: exp2 already made them 0.
        let e = exp2(x);
        _mm512_mask_storeu_ps(row.add(j), k, e);
        vsum = _mm512_add_ps(vsum, e);
        j += 16;
    }
    let row = std::slice::from_raw_parts_mut(row, n);
    finish_row(row, _mm512_reduce_add_ps(vsum), (m_new, alpha), m, l)
}

/// Rows of one softmax group: four rows' max reductions, scalar steps and `exp` chains are
/// independent, so the out-of-order core overlaps them (one row at a time waits on each).
pub(crate) const GROUP: usize = 4;

#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn softmax_rows(
    s: *mut f32,
    ld: usize,
    n: usize,
    scale: f32,
    m: *mut f32,
    l: *mut f32,
    alpha: *mut f32,
    nq: usize,
) {
    let mut i = 0;
    while i + GROUP <= nq {
        softmax_group(
            s.add(i * ld),
            ld,
            n,
            scale,
            m.add(i),
            l.add(i),
            alpha.add(i),
        );
        i += GROUP;
    }
    for i in i..nq {
        *alpha.add(i) = softmax_row(s.add(i * ld), n, scale, &mut *m.add(i), &mut *l.add(i));
    }
}

/// Pass 1 of a softmax group of [`GROUP`] rows (stride `ld`, `n` scores each): their maxes
/// and online-softmax steps `(m_new, alpha)`, or `None` when a row is blocked or overflows
/// (the group then takes the one-row code).
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn group_steps(
    s: *const f32,
    ld: usize,
    n: usize,
    scale: f32,
    m: *const f32,
) -> Option<[(f32, f32); GROUP]> {
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut vmax = [neg_inf; GROUP];
    let mut j = 0;
    while j < n {
        let k = lanes(n - j);
        for (r, v) in vmax.iter_mut().enumerate() {
            *v = _mm512_max_ps(*v, _mm512_mask_loadu_ps(neg_inf, k, s.add(r * ld + j)));
        }
        j += 16;
    }
    let mut steps = [(0.0f32, 1.0f32); GROUP];
    for (r, step) in steps.iter_mut().enumerate() {
        match row_step(_mm512_reduce_max_ps(vmax[r]), scale, *m.add(r)) {
            RowStep::Update { m_new, alpha } => *step = (m_new, alpha),
            _ => return None,
        }
    }
    Some(steps)
}

/// [`softmax_row`] on [`GROUP`] rows at once, bitwise the same per row (same operations in the
/// same order), the rows' `exp` chains interleaved.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn softmax_group(
    s: *mut f32,
    ld: usize,
    n: usize,
    scale: f32,
    m: *mut f32,
    l: *mut f32,
    alpha: *mut f32,
) {
    let Some(steps) = group_steps(s, ld, n, scale, m) else {
        for r in 0..GROUP {
            let (mr, lr) = (&mut *m.add(r), &mut *l.add(r));
            *alpha.add(r) = softmax_row(s.add(r * ld), n, scale, mr, lr);
        }
        return;
    };
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    let (vscale, log2e) = (
        _mm512_set1_ps(scale),
        _mm512_set1_ps(std::f32::consts::LOG2_E),
    );
    let vm = steps.map(|(m_new, _)| _mm512_set1_ps(m_new));
    let mut vsum = [_mm512_setzero_ps(); GROUP];
    let mut j = 0;
    while j < n {
        let k = lanes(n - j);
        for r in 0..GROUP {
            let at = s.add(r * ld + j);
            let x = exp2_arg(_mm512_mask_loadu_ps(neg_inf, k, at), vscale, vm[r], log2e);
            let e = exp2(x); // lanes past the row: −∞ in, 0 out
            _mm512_mask_storeu_ps(at, k, e);
            vsum[r] = _mm512_add_ps(vsum[r], e);
        }
        j += 16;
    }
    for (r, &step) in steps.iter().enumerate() {
        let sum = _mm512_reduce_add_ps(vsum[r]);
        let (mr, lr) = (&mut *m.add(r), &mut *l.add(r));
        let row = std::slice::from_raw_parts_mut(s.add(r * ld), n);
        *alpha.add(r) = finish_row(row, sum, step, mr, lr);
    }
}
