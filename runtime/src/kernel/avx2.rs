//! AVX2 + FMA micro-kernels (8 f32 lanes, 16 vector registers): the fallback for CPUs without
//! AVX-512. Same structure as `avx512.rs` with register tiles sized for 16 registers: Q·Kᵀ
//! 6 rows × 16 keys, P·V 6 rows × 16 columns.
//!
//! Every `unsafe` here is either a call of a `#[target_feature(enable = "avx2,fma")]` function,
//! sound because an [`Avx2`] value exists only after the CPU reported AVX2 and FMA, or a raw
//! pointer access whose bounds the safe wrapper asserted first.

use std::arch::x86_64::*;

use super::driver::{finish_row, overflowed, row_step, Micro, RowStep};
use super::pack::pack_v_f32;
use crate::tensor::KvData;

/// Proof that this CPU has AVX2 and FMA.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2 {
    _detected: (),
}

impl Avx2 {
    /// `Some` only when the CPU supports AVX2 and FMA.
    pub(crate) fn new() -> Option<Self> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
            .then_some(Avx2 { _detected: () })
    }
}

impl Micro for Avx2 {
    const LANES: usize = 8;
    const ISA: super::Isa = super::Isa::Avx2;
    // Four blocks per default tile: causal diagonal tiles skip their Empty row blocks.
    const Q_BLOCK: usize = 64;
    // The width of the Q·Kᵀ register block: its [d][16] K slice is contiguous (8 KiB at
    // d = 128) and stays in L1 while the query rows stream past.
    const K_COLS: usize = 16;
    type V = f32;

    fn pack_v(
        self,
        v: &KvData,
        head: usize,
        rows: usize,
        start: usize,
        nk: usize,
        d: usize,
        dst: &mut [f32],
    ) {
        pack_v_f32(v, head, rows, start, (nk, d), V_COLS, dst);
    }

    fn qk(self, q: &[f32], nq: usize, d: usize, kt: &[f32], ld: usize, s: &mut [f32]) {
        assert!(
            ld.is_multiple_of(8) && q.len() >= nq * d && kt.len() >= d * ld && s.len() >= nq * ld
        );
        // SAFETY: AVX2+FMA are present (self exists); all accesses are within the asserted bounds.
        unsafe { qk(q.as_ptr(), nq, d, kt.as_ptr(), ld, s.as_mut_ptr()) }
    }

    fn softmax_row(self, row: &mut [f32], scale: f32, m: &mut f32, l: &mut f32) -> f32 {
        // SAFETY: AVX2+FMA are present; vector accesses cover whole 8-lane chunks of `row` only.
        unsafe { softmax_row(row, scale, m, l) }
    }

    fn softmax_rows(
        self,
        scores: &mut [f32],
        ld: usize,
        nk: usize,
        scale: f32,
        m: &mut [f32],
        l: &mut [f32],
        alpha: &mut [f32],
    ) {
        let nq = m.len();
        assert!(nk <= ld && l.len() >= nq && alpha.len() >= nq && scores.len() >= nq * ld);
        // SAFETY: AVX2+FMA are present; rows 0..nq of stride ld hold nk ≤ ld scores each and
        // the kernels touch only those; m, l, alpha hold nq values.
        unsafe {
            softmax_rows(
                scores.as_mut_ptr(),
                ld,
                nk,
                scale,
                m.as_mut_ptr(),
                l.as_mut_ptr(),
                alpha.as_mut_ptr(),
                nq,
            )
        }
    }

    fn pv(
        self,
        p: &[f32],
        ld: usize,
        nq: usize,
        nk: usize,
        v: &[f32],
        d: usize,
        alpha: &[f32],
        acc: &mut [f32],
    ) {
        assert!(
            nk <= ld
                && p.len() >= nq * ld
                && v.len() >= nk * d
                && alpha.len() >= nq
                && acc.len() >= nq * d
        );
        // SAFETY: AVX2+FMA are present; every access is inside the asserted bounds (the last
        // vector of a row is a masked load/store ending at the row's end).
        unsafe {
            pv(
                p.as_ptr(),
                ld,
                nq,
                nk,
                v.as_ptr(),
                d,
                alpha.as_ptr(),
                acc.as_mut_ptr(),
            )
        }
    }
}

/// Columns per block of packed V: the P·V register block's width, so the `[nk][16]` V slice
/// it walks is contiguous (see [`pack_v_f32`]).
const V_COLS: usize = 16;

#[target_feature(enable = "avx2,fma")]
unsafe fn qk(q: *const f32, nq: usize, d: usize, kt: *const f32, ld: usize, s: *mut f32) {
    // Key blocks outside, query rows inside, so the K slice stays in L1 (see avx512.rs).
    let mut j = 0;
    while j < ld {
        let wide = ld - j >= 16;
        // K_COLS = 16: this block of keys is a contiguous [d][16] (or [d][8]) stretch.
        let (ktj, sj) = (kt.add(j * d), s.add(j));
        let mut i = 0;
        while i < nq {
            let mr = (nq - i).min(6);
            let (qi, si) = (q.add(i * d), sj.add(i * ld));
            macro_rules! block {
                ($mr:literal) => {
                    if wide {
                        qk_block::<$mr, 2, 0>(qi, d, ktj, ld, si)
                    } else {
                        qk_block::<$mr, 1, 0>(qi, d, ktj, ld, si)
                    }
                };
            }
            match mr {
                // The hot block with the usual head dims as constants: the six broadcast
                // addresses become base + constant displacement (no per-row address adds).
                6 if wide && d == 128 => qk_block::<6, 2, 128>(qi, d, ktj, ld, si),
                6 if wide && d == 64 => qk_block::<6, 2, 64>(qi, d, ktj, ld, si),
                6 => block!(6),
                5 => block!(5),
                4 => block!(4),
                3 => block!(3),
                2 => block!(2),
                _ => block!(1),
            }
            i += mr;
        }
        j += if wide { 16 } else { 8 };
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn qk_block<const MR: usize, const NC: usize, const D: usize>(
    q: *const f32,
    d: usize,
    kt: *const f32,
    ld: usize,
    s: *mut f32,
) {
    // D != 0: the head dim as a compile-time constant (must equal `d`).
    let d = if D == 0 { d } else { D };
    let mut acc = [[_mm256_setzero_ps(); NC]; MR];
    for p in 0..d {
        let mut k = [_mm256_setzero_ps(); NC];
        for (c, kc) in k.iter_mut().enumerate() {
            *kc = _mm256_loadu_ps(kt.add((p * NC + c) * 8));
        }
        for (i, acc_i) in acc.iter_mut().enumerate() {
            let b = _mm256_broadcast_ss(&*q.add(i * d + p));
            for (a, &kc) in acc_i.iter_mut().zip(&k) {
                *a = _mm256_fmadd_ps(b, kc, *a);
            }
        }
    }
    for (i, acc_i) in acc.iter().enumerate() {
        for (c, &a) in acc_i.iter().enumerate() {
            _mm256_storeu_ps(s.add(i * ld + c * 8), a);
        }
    }
}

/// 2^x for every lane; lanes below −126 (and −∞) give exactly 0, NaN lanes NaN.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn exp2(x: __m256) -> __m256 {
    const C: [f32; 5] = super::EXP2_POLY;
    let floor = _mm256_set1_ps(-126.0);
    // Not-less-than, unordered true: NaN lanes stay valid; max returns its second operand
    // (x) when one is NaN.
    let valid = _mm256_cmp_ps::<_CMP_NLT_UQ>(x, floor);
    let x = _mm256_max_ps(floor, x);
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
    let f = _mm256_sub_ps(x, n);
    let mut p = _mm256_set1_ps(C[4]);
    for &c in C[..4].iter().rev() {
        p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(c));
    }
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0));
    let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(bits)), valid)
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn hmax(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_shuffle_ps::<1>(m, m));
    _mm_cvtss_f32(m)
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
    _mm_cvtss_f32(s)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_row(row: &mut [f32], scale: f32, m: &mut f32, l: &mut f32) -> f32 {
    let n = row.len();
    let full = n - n % 8;
    let ptr = row.as_mut_ptr();
    let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
    for j in (0..full).step_by(8) {
        vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(ptr.add(j)));
    }
    let row_max = row[full..].iter().copied().fold(hmax(vmax), f32::max);
    let (m_new, alpha) = match row_step(row_max, scale, *m) {
        RowStep::Update { m_new, alpha } => (m_new, alpha),
        step => {
            row.fill(0.0);
            return if step == RowStep::Overflowed {
                overflowed(m)
            } else {
                1.0
            };
        }
    };
    // (s·scale − m_new)·log₂e, the product rounded first: ≤ 0 for every score (see row_step).
    let log2e = std::f32::consts::LOG2_E;
    let (vscale, vm, vl) = (
        _mm256_set1_ps(scale),
        _mm256_set1_ps(m_new),
        _mm256_set1_ps(log2e),
    );
    let mut vsum = _mm256_setzero_ps();
    for j in (0..full).step_by(8) {
        let y = _mm256_mul_ps(_mm256_loadu_ps(ptr.add(j)), vscale);
        let e = exp2(_mm256_mul_ps(_mm256_sub_ps(y, vm), vl));
        _mm256_storeu_ps(ptr.add(j), e);
        vsum = _mm256_add_ps(vsum, e);
    }
    let mut sum = hsum(vsum);
    for x in &mut row[full..] {
        *x = ((*x * scale - m_new) * log2e).exp2();
        sum += *x;
    }
    // A NaN score (exp2 propagates it): Q·K left the f32 range.
    finish_row(row, sum, (m_new, alpha), m, l)
}

/// Rows of one softmax group (as in `avx512.rs`): independent reductions and `exp` chains
/// that the out-of-order core overlaps.
const GROUP: usize = 4;

#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn softmax_rows(
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
        let row = std::slice::from_raw_parts_mut(s.add(i * ld), n);
        *alpha.add(i) = softmax_row(row, scale, &mut *m.add(i), &mut *l.add(i));
    }
}

/// [`softmax_row`] on [`GROUP`] rows at once, bitwise the same per row (same operations in the
/// same order). A blocked or overflowing row sends the group to the one-row code.
#[target_feature(enable = "avx2,fma")]
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
    let full = n - n % 8;
    let row = |r: usize| std::slice::from_raw_parts_mut(s.add(r * ld), n);
    let mut vmax = [_mm256_set1_ps(f32::NEG_INFINITY); GROUP];
    for j in (0..full).step_by(8) {
        for (r, v) in vmax.iter_mut().enumerate() {
            *v = _mm256_max_ps(*v, _mm256_loadu_ps(s.add(r * ld + j)));
        }
    }
    let mut step = [(0.0f32, 1.0f32); GROUP];
    for (r, st) in step.iter_mut().enumerate() {
        let row_max = row(r)[full..].iter().copied().fold(hmax(vmax[r]), f32::max);
        match row_step(row_max, scale, *m.add(r)) {
            RowStep::Update { m_new, alpha } => *st = (m_new, alpha),
            _ => {
                for r in 0..GROUP {
                    *alpha.add(r) = softmax_row(row(r), scale, &mut *m.add(r), &mut *l.add(r));
                }
                return;
            }
        }
    }
    let log2e = std::f32::consts::LOG2_E;
    let (vscale, vl) = (_mm256_set1_ps(scale), _mm256_set1_ps(log2e));
    let vm = step.map(|(m_new, _)| _mm256_set1_ps(m_new));
    let mut vsum = [_mm256_setzero_ps(); GROUP];
    for j in (0..full).step_by(8) {
        for r in 0..GROUP {
            let at = s.add(r * ld + j);
            let y = _mm256_mul_ps(_mm256_loadu_ps(at), vscale);
            let e = exp2(_mm256_mul_ps(_mm256_sub_ps(y, vm[r]), vl));
            _mm256_storeu_ps(at, e);
            vsum[r] = _mm256_add_ps(vsum[r], e);
        }
    }
    for (r, &(m_new, a)) in step.iter().enumerate() {
        let mut sum = hsum(vsum[r]);
        for x in &mut row(r)[full..] {
            *x = ((*x * scale - m_new) * log2e).exp2();
            sum += *x;
        }
        *alpha.add(r) = finish_row(row(r), sum, (m_new, a), &mut *m.add(r), &mut *l.add(r));
    }
}

/// Load/store mask for lanes `0..n` (n ≤ 8).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn lanes(n: usize) -> __m256i {
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), idx)
}

#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn pv(
    p: *const f32,
    ld: usize,
    nq: usize,
    nk: usize,
    v: *const f32,
    d: usize,
    alpha: *const f32,
    acc: *mut f32,
) {
    // Blocks of 16 output columns × 6 rows (12 accumulators); each V load feeds 6 FMAs. V is
    // packed in blocks of V_COLS = 16 columns: this block's [nk][16] slice (8 KiB at nk = 128)
    // is contiguous and stays in L1.
    let vectors = d.div_ceil(8);
    // Rows of whole vectors: plain loads and stores (a masked load in the key loop costs).
    let whole = d.is_multiple_of(8);
    let mut c0 = 0;
    while c0 < vectors {
        let nv = (vectors - c0).min(2);
        let col = c0 * 8;
        let tail = lanes(d - col - (nv - 1) * 8);
        let w = V_COLS.min(d - col);
        let (vc, ac) = (v.add(col * nk), acc.add(col));
        let dw = (d, w);
        let mut i = 0;
        while i < nq {
            let mr = (nq - i).min(6);
            let (pi, al, ai) = (p.add(i * ld), alpha.add(i), ac.add(i * d));
            macro_rules! block {
                ($mr:literal) => {
                    match (nv, whole) {
                        (2, true) => pv_block::<$mr, 2, false, 0>(pi, ld, nk, vc, dw, al, ai, tail),
                        (2, false) => pv_block::<$mr, 2, true, 0>(pi, ld, nk, vc, dw, al, ai, tail),
                        (_, true) => pv_block::<$mr, 1, false, 0>(pi, ld, nk, vc, dw, al, ai, tail),
                        _ => pv_block::<$mr, 1, true, 0>(pi, ld, nk, vc, dw, al, ai, tail),
                    }
                };
            }
            match mr {
                // P's row stride (and V's, 16) as constants for the default key tiles.
                6 if w == 16 && ld == 128 => {
                    pv_block::<6, 2, false, 128>(pi, ld, nk, vc, dw, al, ai, tail)
                }
                6 if w == 16 && ld == 64 => {
                    pv_block::<6, 2, false, 64>(pi, ld, nk, vc, dw, al, ai, tail)
                }
                6 => block!(6),
                5 => block!(5),
                4 => block!(4),
                3 => block!(3),
                2 => block!(2),
                _ => block!(1),
            }
            i += mr;
        }
        c0 += nv;
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn pv_block<const MR: usize, const NV: usize, const MASKED: bool, const LD: usize>(
    p: *const f32,
    ld: usize,
    nk: usize,
    v: *const f32,
    (d, w): (usize, usize),
    alpha: *const f32,
    acc: *mut f32,
    tail: __m256i,
) {
    // LD != 0: the row stride of P as a compile-time constant (must equal `ld`), and V rows
    // (stride `w`) full NV·8 columns wide.
    let ld = if LD == 0 { ld } else { LD };
    let w = if LD == 0 { w } else { NV * 8 };
    let all = _mm256_set1_epi32(-1);
    let mask = |c: usize| if c + 1 == NV { tail } else { all };
    // MASKED = false: every vector of the block is whole (tail all ones).
    let load = |at: *const f32, c: usize| {
        if MASKED {
            _mm256_maskload_ps(at, mask(c))
        } else {
            _mm256_loadu_ps(at)
        }
    };
    let mut a = [[_mm256_setzero_ps(); NV]; MR];
    for (i, a_i) in a.iter_mut().enumerate() {
        let al = _mm256_set1_ps(*alpha.add(i));
        for (c, x) in a_i.iter_mut().enumerate() {
            *x = _mm256_mul_ps(al, load(acc.add(i * d + c * 8), c));
        }
    }
    for k in 0..nk {
        let mut vv = [_mm256_setzero_ps(); NV];
        for (c, x) in vv.iter_mut().enumerate() {
            *x = load(v.add(k * w + c * 8), c);
        }
        for (i, a_i) in a.iter_mut().enumerate() {
            let b = _mm256_broadcast_ss(&*p.add(i * ld + k));
            for (x, &vc) in a_i.iter_mut().zip(&vv) {
                *x = _mm256_fmadd_ps(b, vc, *x);
            }
        }
    }
    for (i, a_i) in a.iter().enumerate() {
        for (c, &x) in a_i.iter().enumerate() {
            if MASKED {
                _mm256_maskstore_ps(acc.add(i * d + c * 8), mask(c), x);
            } else {
                _mm256_storeu_ps(acc.add(i * d + c * 8), x);
            }
        }
    }
}
