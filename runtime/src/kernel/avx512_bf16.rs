//! AVX512-BF16 micro-kernels for bf16 K/V on CPUs without AMX (AMD Zen 4/5, Intel Cooper Lake):
//! P·V with `vdpbf16ps` (32 bf16 products per instruction, twice the f32 FMA's 16).
//!
//! - Q·Kᵀ is the AVX-512 f32 kernel on K widened once per block: Q stays f32 — the same as
//!   splitting Q into bf16 parts until it is exact, as the AMX path does. A single bf16 part of
//!   Q would add score errors of 2⁻⁹·Σ|qᵢkᵢ|, which grow with the scores (0.2 at |score| ≈ 100),
//!   not a bound; the f32 product keeps them at f32 rounding. That single part is the opt-in
//!   `--qk-dtype bf16` ([`super::avx512_bf16_qk`]): Q·Kᵀ on `vdpbf16ps` too.
//! - softmax: the AVX-512 one, writing each probability rounded to bf16 (round to nearest even,
//!   `vcvtne2ps2bf16`) as key pairs in place of the f32 row; the sum `l` adds the f32 values, so
//!   `lse` keeps f32 accuracy (ring merges weigh states by it) and each weight of
//!   `out = Σ p̃·v / Σ p` is off by ≤ 2⁻⁹ relative: |out error| ≤ 2⁻⁹·max|v| beyond the f32 path
//!   on the same bf16 K/V (≈ 2e-3; measured ≈ 1e-3 in runtime/tests/bf16_dot.rs), within the
//!   2e-2 bound of bf16 K/V.
//! - P·V: V packed as key pairs (one u32 = the bf16 values of keys 2k and 2k+1 at one column)
//!   in blocks of 64 columns, so the `[pairs][64]` slice a register tile of 4 rows × 64 columns
//!   walks is contiguous (16 KiB per 128 keys); one `vdpbf16ps` per two keys.
//!
//! Every `unsafe` here is a call of a `#[target_feature(enable = "avx512f,avx512bf16")]`
//! function, sound because an [`Avx512Bf16`] value exists only after the CPU reported both, or a
//! raw pointer access whose bounds the safe wrapper asserted first.

use std::arch::x86_64::*;

use super::avx512::Avx512;
use super::avx512_softmax::{exp2, exp2_arg, group_steps, lanes, row_max, GROUP};
use super::driver::{finish_row, overflowed, row_step, Micro, RowStep};
use super::pack::column_blocks;
use crate::tensor::KvData;

/// Proof that this CPU has AVX-512F and AVX512-BF16; the only way to reach the kernels below.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512Bf16 {
    f32_path: Avx512,
    /// Q rounded to bf16 for Q·Kᵀ (`--qk-dtype bf16`): K packed as bf16 dimension pairs and
    /// Q·Kᵀ on `vdpbf16ps`; else Q·Kᵀ is the f32 path's.
    round_q: bool,
}

impl Avx512Bf16 {
    /// `Some` only when the CPU supports AVX-512F and AVX512-BF16; `round_q` picks the Q·Kᵀ.
    pub(crate) fn new(round_q: bool) -> Option<Self> {
        let f32_path = Avx512::new()?;
        is_x86_feature_detected!("avx512bf16").then_some(Avx512Bf16 { f32_path, round_q })
    }

    /// Whether Q·Kᵀ rounds Q to bf16 (`--qk-dtype bf16`).
    pub(crate) fn rounds_q(self) -> bool {
        self.round_q
    }
}

impl Micro for Avx512Bf16 {
    const LANES: usize = 16;
    const ISA: super::Isa = super::Isa::Avx512;
    type V = u32;
    const KEYS_PER_V: usize = 2;
    const Q_BLOCK: usize = 64; // as the f32 path
    const K_COLS: usize = Avx512::K_COLS; // Q·Kᵀ is the f32 path's

    fn pack_v(
        self,
        v: &KvData,
        head: usize,
        rows: usize,
        start: usize,
        nk: usize,
        d: usize,
        dst: &mut [u32],
    ) {
        let bits = |r: usize, c: usize| -> u32 {
            match v {
                KvData::Bf16(x) => u32::from(x[(head * rows + start + r) * d + c].to_bits()),
                KvData::F32(x) => {
                    u32::from(half::bf16::from_f32(x[(head * rows + start + r) * d + c]).to_bits())
                }
            }
        };
        // Column blocks of V_COLS, each a [pairs][w] stretch (as `pack_v_f32` lays out f32 V).
        let pairs = nk.div_ceil(2);
        for (b, w) in column_blocks(d, V_COLS) {
            let block = &mut dst[b * pairs..(b + w) * pairs];
            for (pair, row) in block.chunks_exact_mut(w).enumerate() {
                for (c, slot) in (b..).zip(row.iter_mut()) {
                    let (k0, k1) = (2 * pair, 2 * pair + 1);
                    let hi = if k1 < nk { bits(k1, c) } else { 0 };
                    *slot = bits(k0, c) | (hi << 16);
                }
            }
        }
    }

    fn pack_k(self, k: &[f32], shape: (usize, usize, usize), dst: &mut [f32]) {
        match self.round_q {
            true => super::avx512_bf16_qk::pack_pairs(k, shape, dst),
            false => self.f32_path.pack_k(k, shape, dst),
        }
    }

    fn qk(self, q: &[f32], nq: usize, d: usize, kt: &[f32], ld: usize, s: &mut [f32]) {
        match self.round_q {
            true => super::avx512_bf16_qk::qk(self, q, (nq, d), kt, ld, s),
            false => self.f32_path.qk(q, nq, d, kt, ld, s),
        }
    }

    fn softmax_row(self, row: &mut [f32], scale: f32, m: &mut f32, l: &mut f32) -> f32 {
        // SAFETY: AVX-512F and AVX512-BF16 are present; reads touch row[..len] and the pair
        // stores row[..len.div_ceil(2)] only (both masked).
        unsafe { softmax_row_bf16(row.as_mut_ptr(), row.len(), scale, m, l) }
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
        // SAFETY: AVX-512F and AVX512-BF16 are present; rows 0..nq of stride ld hold nk ≤ ld
        // scores each, the kernels read those and write each row's pairs over its start;
        // m, l, alpha hold nq values.
        unsafe {
            softmax_rows_bf16(
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
        v: &[u32],
        d: usize,
        alpha: &[f32],
        acc: &mut [f32],
    ) {
        let pairs = nk.div_ceil(2);
        assert!(
            pairs <= ld
                && (nq == 0 || p.len() >= (nq - 1) * ld + pairs)
                && v.len() >= pairs * d
                && alpha.len() >= nq
                && acc.len() >= nq * d
        );
        // SAFETY: AVX-512F and AVX512-BF16 are present; every access is inside the asserted
        // bounds (the last vector of a row is masked to the row's end).
        unsafe {
            pv(
                p.as_ptr().cast(),
                ld,
                nq,
                pairs,
                v.as_ptr(),
                d,
                alpha.as_ptr(),
                acc.as_mut_ptr(),
            )
        }
    }
}

/// Columns per block of packed V pairs: the P·V register tile's width.
const V_COLS: usize = 64;

/// The AVX-512 online-softmax step, writing `p̃ = bf16(p)` as key pairs (u32 `j` = keys
/// `2j`, `2j + 1`) over the start of the row and adding Σ p (f32) to `l`.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn softmax_row_bf16(row: *mut f32, n: usize, scale: f32, m: &mut f32, l: &mut f32) -> f32 {
    match row_step(row_max(row, n), scale, *m) {
        RowStep::Update { m_new, alpha } => {
            let sum = exp_pairs(row, n, scale, m_new);
            finish_row(
                std::slice::from_raw_parts_mut(row, n),
                sum,
                (m_new, alpha),
                m,
                l,
            )
        }
        step => {
            std::ptr::write_bytes(row, 0, n);
            if step == RowStep::Overflowed {
                overflowed(m)
            } else {
                1.0
            }
        }
    }
}

/// [`softmax_row_bf16`] on rows `0..nq` (stride `ld`), bitwise the same per row: the maxes
/// and steps of [`GROUP`] rows are taken together ([`group_steps`]), then each row's pairs.
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn softmax_rows_bf16(
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
    while i < nq {
        let rows = if i + GROUP <= nq { GROUP } else { 1 };
        let (si, mi) = (s.add(i * ld), m.add(i));
        let steps = (rows == GROUP)
            .then(|| group_steps(si, ld, n, scale, mi))
            .flatten();
        for r in 0..rows {
            let (row, mr, lr) = (si.add(r * ld), &mut *m.add(i + r), &mut *l.add(i + r));
            *alpha.add(i + r) = match steps {
                Some(steps) => {
                    let sum = exp_pairs(row, n, scale, steps[r].0);
                    finish_row(
                        std::slice::from_raw_parts_mut(row, n),
                        sum,
                        steps[r],
                        mr,
                        lr,
                    )
                }
                None => softmax_row_bf16(row, n, scale, mr, lr),
            };
        }
        i += rows;
    }
}

/// Writes the row's probabilities `exp(s·scale − m_new)` as bf16 key pairs over its start and
/// returns their f32 sum.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn exp_pairs(row: *mut f32, n: usize, scale: f32, m_new: f32) -> f32 {
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    let (vscale, vm) = (_mm512_set1_ps(scale), _mm512_set1_ps(m_new));
    let log2e = _mm512_set1_ps(std::f32::consts::LOG2_E);
    let prob = |j: usize| {
        let k = lanes(n.saturating_sub(j));
        let x = exp2_arg(
            _mm512_mask_loadu_ps(neg_inf, k, row.add(j)),
            vscale,
            vm,
            log2e,
        );
        exp2(x) // lanes past the row: −∞ in, 0 out
    };
    let mut vsum = _mm512_setzero_ps();
    let mut j = 0;
    while j < n {
        // Scores j..j+32 are read before their pairs go to row[j/2..j/2+16]: in place, every
        // store lands on floats already read (j/2 + 16 ≤ j + 32), masked to the row's pairs.
        let (e0, e1) = (prob(j), prob(j + 16));
        let packed = _mm512_cvtne2ps_pbh(e1, e0);
        let bits = _mm512_castsi512_ps(std::mem::transmute::<__m512bh, __m512i>(packed));
        _mm512_mask_storeu_ps(row.add(j / 2), lanes((n - j).div_ceil(2)), bits);
        vsum = _mm512_add_ps(vsum, _mm512_add_ps(e0, e1));
        j += 32;
    }
    _mm512_reduce_add_ps(vsum)
}

#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn pv(
    p: *const u32,
    ld: usize,
    nq: usize,
    pairs: usize,
    v: *const u32,
    d: usize,
    alpha: *const f32,
    acc: *mut f32,
) {
    let vectors = d.div_ceil(16);
    let mut c0 = 0;
    while c0 < vectors {
        let nv = (vectors - c0).min(4);
        let col = c0 * 16;
        let tail = lanes(d - col - (nv - 1) * 16);
        // This block's [pairs][w] slice of V (packed in V_COLS-column blocks).
        let w = V_COLS.min(d - col);
        let (vc, ac) = (v.add(col * pairs), acc.add(col));
        let dw = (d, w);
        let mut i = 0;
        while i < nq {
            let mr = (nq - i).min(4);
            let (pi, al, ai) = (p.add(i * ld), alpha.add(i), ac.add(i * d));
            macro_rules! block {
                ($mr:literal) => {
                    match nv {
                        4 => pv_block::<$mr, 4>(pi, ld, pairs, vc, dw, al, ai, tail),
                        3 => pv_block::<$mr, 3>(pi, ld, pairs, vc, dw, al, ai, tail),
                        2 => pv_block::<$mr, 2>(pi, ld, pairs, vc, dw, al, ai, tail),
                        _ => pv_block::<$mr, 1>(pi, ld, pairs, vc, dw, al, ai, tail),
                    }
                };
            }
            match mr {
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

#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn pv_block<const MR: usize, const NV: usize>(
    p: *const u32,
    ld: usize,
    pairs: usize,
    v: *const u32,
    (d, w): (usize, usize),
    alpha: *const f32,
    acc: *mut f32,
    tail: __mmask16,
) {
    // V pair rows are `w` u32 apart (the block's width); acc rows `d` floats.
    let mask = |c: usize| if c + 1 == NV { tail } else { 0xFFFF };
    let mut a = [[_mm512_setzero_ps(); NV]; MR];
    for (i, a_i) in a.iter_mut().enumerate() {
        let al = _mm512_set1_ps(*alpha.add(i));
        for (c, x) in a_i.iter_mut().enumerate() {
            *x = _mm512_mul_ps(al, _mm512_maskz_loadu_ps(mask(c), acc.add(i * d + c * 16)));
        }
    }
    let as_bh = |x: __m512i| std::mem::transmute::<__m512i, __m512bh>(x);
    for k in 0..pairs {
        let mut vv = [as_bh(_mm512_setzero_si512()); NV];
        for (c, x) in vv.iter_mut().enumerate() {
            *x = as_bh(_mm512_maskz_loadu_epi32(
                mask(c),
                v.add(k * w + c * 16).cast(),
            ));
        }
        for (i, a_i) in a.iter_mut().enumerate() {
            let b = as_bh(_mm512_set1_epi32(*p.add(i * ld + k) as i32));
            for (x, &vc) in a_i.iter_mut().zip(&vv) {
                *x = _mm512_dpbf16_ps(*x, b, vc);
            }
        }
    }
    for (i, a_i) in a.iter().enumerate() {
        for (c, &x) in a_i.iter().enumerate() {
            _mm512_mask_storeu_ps(acc.add(i * d + c * 16), mask(c), x);
        }
    }
}
