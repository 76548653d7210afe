//! AVX-512F micro-kernels (16 f32 lanes, 32 vector registers).
//!
//! - Q·Kᵀ: register tile of up to 8 query rows × 32 keys (16 accumulators); per head dimension
//!   one load of two K vectors (K is packed transposed, in 32-key blocks: each block's [d][32]
//!   slice is contiguous) and 8 broadcast FMAs per vector; key blocks outside, query rows
//!   inside, so the K slice stays in L1.
//! - softmax: [`super::avx512_softmax`] (vectorised max and `exp2`, four rows at a time).
//! - P·V: register tile of 4 rows × 64 output columns (16 accumulators): per key four
//!   contiguous V loads (256 bytes) shared by the 4 rows; V packed in 64-column blocks so the
//!   slice a tile walks is contiguous; the accumulator is rescaled by alpha on load.
//!
//! Every `unsafe` here is either a call of a `#[target_feature(enable = "avx512f")]` function,
//! sound because an [`Avx512`] value exists only after the CPU reported AVX-512F, or a raw
//! pointer access whose bounds the safe wrapper asserted first.

use std::arch::x86_64::*;

use super::avx512_softmax::{lanes, softmax_row, softmax_rows};
use super::driver::Micro;
use super::pack::pack_v_f32;
use crate::tensor::KvData;

/// Proof that this CPU has AVX-512F; the only way to reach the kernels below.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512 {
    _detected: (),
}

impl Avx512 {
    /// `Some` only when the CPU supports AVX-512F.
    pub(crate) fn new() -> Option<Self> {
        is_x86_feature_detected!("avx512f").then_some(Avx512 { _detected: () })
    }
}

impl Micro for Avx512 {
    const LANES: usize = 16;
    const ISA: super::Isa = super::Isa::Avx512;
    // Four blocks per default tile: causal diagonal tiles skip their Empty row blocks.
    const Q_BLOCK: usize = 64;
    // The width of the Q·Kᵀ register block: its [d][32] K slice is contiguous (16 KiB at
    // d = 128) and stays in L1 while the query rows stream past.
    const K_COLS: usize = 32;
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
            ld.is_multiple_of(16) && q.len() >= nq * d && kt.len() >= d * ld && s.len() >= nq * ld
        );
        // SAFETY: AVX-512F is present (self exists); all accesses are within the asserted bounds.
        unsafe { qk(q.as_ptr(), nq, d, kt.as_ptr(), ld, s.as_mut_ptr()) }
    }

    fn softmax_row(self, row: &mut [f32], scale: f32, m: &mut f32, l: &mut f32) -> f32 {
        // SAFETY: AVX-512F is present; the kernel touches row[..row.len()] only (masked tail).
        unsafe { softmax_row(row.as_mut_ptr(), row.len(), scale, m, l) }
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
        // SAFETY: AVX-512F is present; rows 0..nq of stride ld hold nk ≤ ld scores each and the
        // kernels touch only those (masked tails); m, l, alpha hold nq values.
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
        // SAFETY: AVX-512F is present; every access is inside the asserted bounds (the last
        // vector of a row is masked to the row's end).
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

/// Columns per block of packed V: the P·V register block's width, so the `[nk][64]` V slice
/// it walks is contiguous (see [`pack_v_f32`]).
const V_COLS: usize = 64;

#[target_feature(enable = "avx512f")]
unsafe fn qk(q: *const f32, nq: usize, d: usize, kt: *const f32, ld: usize, s: *mut f32) {
    // Column blocks outside, row blocks inside: a [d][32] slice of the K panel (16 KiB at
    // d = 128) stays in L1 while the query rows stream past it.
    let mut j = 0;
    while j < ld {
        let wide = ld - j >= 32;
        // K_COLS = 32: this block of keys is a contiguous [d][32] (or [d][16]) stretch.
        let (ktj, sj) = (kt.add(j * d), s.add(j));
        let mut i = 0;
        while i < nq {
            let mr = (nq - i).min(8);
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
                // The hot block with the usual head dims as constants: the eight broadcast
                // addresses become base + constant displacement (no per-row address adds).
                8 if wide && d == 128 => qk_block::<8, 2, 128>(qi, d, ktj, ld, si),
                8 if wide && d == 64 => qk_block::<8, 2, 64>(qi, d, ktj, ld, si),
                8 => block!(8),
                7 => block!(7),
                6 => block!(6),
                5 => block!(5),
                4 => block!(4),
                3 => block!(3),
                2 => block!(2),
                _ => block!(1),
            }
            i += mr;
        }
        j += if wide { 32 } else { 16 };
    }
}

#[target_feature(enable = "avx512f")]
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
    let mut acc = [[_mm512_setzero_ps(); NC]; MR];
    for p in 0..d {
        let mut k = [_mm512_setzero_ps(); NC];
        for (c, kc) in k.iter_mut().enumerate() {
            *kc = _mm512_loadu_ps(kt.add((p * NC + c) * 16));
        }
        for (i, acc_i) in acc.iter_mut().enumerate() {
            let b = _mm512_set1_ps(*q.add(i * d + p));
            for (a, &kc) in acc_i.iter_mut().zip(&k) {
                *a = _mm512_fmadd_ps(b, kc, *a);
            }
        }
    }
    for (i, acc_i) in acc.iter().enumerate() {
        for (c, &a) in acc_i.iter().enumerate() {
            _mm512_storeu_ps(s.add(i * ld + c * 16), a);
        }
    }
}

#[target_feature(enable = "avx512f")]
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
    // Blocks of 64 output columns × 4 rows (16 accumulators): per key four contiguous V loads
    // (one 256-byte row of the block) each feed 4 FMAs. V is packed in blocks of V_COLS = 64
    // columns: this block's [nk][64] slice is contiguous. (8 rows × 32 columns, the shape of
    // Q·Kᵀ's, is faster on L1-resident data but not in the kernel, where its P rows are read
    // from L2 twice as often.)
    let vectors = d.div_ceil(16);
    let mut c0 = 0;
    while c0 < vectors {
        let nv = (vectors - c0).min(V_COLS / 16);
        let col = c0 * 16;
        let w = V_COLS.min(d - col);
        let tail = lanes(d - col - (nv - 1) * 16);
        let (vc, ac) = (v.add(col * nk), acc.add(col));
        let dw = (d, w);
        let mut i = 0;
        while i < nq {
            let mr = (nq - i).min(4);
            let (pi, al, ai) = (p.add(i * ld), alpha.add(i), ac.add(i * d));
            macro_rules! block {
                ($mr:literal) => {
                    match nv {
                        4 => pv_block::<$mr, 4, 0>(pi, ld, nk, vc, dw, al, ai, tail),
                        3 => pv_block::<$mr, 3, 0>(pi, ld, nk, vc, dw, al, ai, tail),
                        2 => pv_block::<$mr, 2, 0>(pi, ld, nk, vc, dw, al, ai, tail),
                        _ => pv_block::<$mr, 1, 0>(pi, ld, nk, vc, dw, al, ai, tail),
                    }
                };
            }
            // The hot block: full 64-column V rows and P's stride as constants.
            match mr {
                4 if w == 64 && ld == 128 => {
                    pv_block::<4, 4, 128>(pi, ld, nk, vc, dw, al, ai, tail)
                }
                4 if w == 64 && ld == 64 => pv_block::<4, 4, 64>(pi, ld, nk, vc, dw, al, ai, tail),
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

#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn pv_block<const MR: usize, const NV: usize, const LD: usize>(
    p: *const f32,
    ld: usize,
    nk: usize,
    v: *const f32,
    (d, w): (usize, usize),
    alpha: *const f32,
    acc: *mut f32,
    tail: __mmask16,
) {
    // LD != 0: the row stride of P as a compile-time constant (must equal `ld`), and V rows
    // (stride `w`) full NV·16 columns wide.
    let ld = if LD == 0 { ld } else { LD };
    let w = if LD == 0 { w } else { NV * 16 };
    let mask = |c: usize| if c + 1 == NV { tail } else { 0xFFFF };
    let mut a = [[_mm512_setzero_ps(); NV]; MR];
    for (i, a_i) in a.iter_mut().enumerate() {
        let al = _mm512_set1_ps(*alpha.add(i));
        for (c, x) in a_i.iter_mut().enumerate() {
            *x = _mm512_mul_ps(al, _mm512_maskz_loadu_ps(mask(c), acc.add(i * d + c * 16)));
        }
    }
    for k in 0..nk {
        let mut vv = [_mm512_setzero_ps(); NV];
        for (c, x) in vv.iter_mut().enumerate() {
            *x = _mm512_maskz_loadu_ps(mask(c), v.add(k * w + c * 16));
        }
        for (i, a_i) in a.iter_mut().enumerate() {
            let b = _mm512_set1_ps(*p.add(i * ld + k));
            for (x, &vc) in a_i.iter_mut().zip(&vv) {
                *x = _mm512_fmadd_ps(b, vc, *x);
            }
        }
    }
    for (i, a_i) in a.iter().enumerate() {
        for (c, &x) in a_i.iter().enumerate() {
            _mm512_mask_storeu_ps(acc.add(i * d + c * 16), mask(c), x);
        }
    }
}
