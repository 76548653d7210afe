//! Q·Kᵀ with `vdpbf16ps` for `--qk-dtype bf16` (see [`super::qk_dtype`]): Q rounded to bf16
//! as well as K, each instruction 16 keys × 2 dimensions — twice the f32 FMA's work.
//!
//! - K packed as dimension pairs: one u32 holds the bf16 values of dimensions 2p and 2p+1 of a
//!   key, in column blocks of 32 keys (`K_COLS`, as the f32 path), each block a `[pairs][w]`
//!   stretch. The panel keeps its f32 element type (the bits are stored with `f32::from_bits`,
//!   never used as floats), so the driver's packed K buffers serve both precisions.
//! - Q rounded once per call into the same pairs (round to nearest even), one row of pairs per
//!   query row, in a per-thread buffer; each pair is broadcast into a register tile of 8 rows ×
//!   32 keys (16 accumulators), as the f32 path's 8 × 32.
//!
//! Every `unsafe` here is a call of a `#[target_feature(enable = "avx512f,avx512bf16")]`
//! function, sound because the caller holds an [`Avx512Bf16`](super::avx512_bf16::Avx512Bf16)
//! (the CPU reported both), or a raw pointer access whose bounds the safe wrapper asserted.

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::avx512::Avx512;
use super::avx512_softmax::lanes;
use super::driver::Micro;
use super::pack::column_blocks;

/// Keys per column block of a packed K panel: the register tile's width, the f32 path's.
const K_COLS: usize = <Avx512 as Micro>::K_COLS;

/// The bf16 bits of `x`, rounded to nearest even (NaN stays NaN).
fn bf16_bits(x: f32) -> u32 {
    u32::from(half::bf16::from_f32(x).to_bits())
}

/// Dimensions `2p` and `2p + 1` of `row` as one u32 (the odd dimension zero past the end).
fn pair(row: &[f32], p: usize) -> u32 {
    let hi = row.get(2 * p + 1).map_or(0, |&x| bf16_bits(x));
    bf16_bits(row[2 * p]) | (hi << 16)
}

/// Packs one key tile (`k`: `nk` rows of `d`) for [`qk`]: `ld` keys (zero past `nk`) in blocks
/// of [`K_COLS`], each block a `[pairs][w]` stretch (`pairs = ⌈d/2⌉`); key `j` of pair `p` in
/// the block starting at key `b` is at `dst[b·pairs + p·w + (j − b)]`. The panel's other
/// `d·ld − pairs·ld` elements are zeroed.
pub(crate) fn pack_pairs(k: &[f32], (nk, d, ld): (usize, usize, usize), dst: &mut [f32]) {
    let pairs = d.div_ceil(2);
    assert!(k.len() >= nk * d && dst.len() >= d * ld && nk <= ld);
    for (b, w) in column_blocks(ld, K_COLS) {
        let block = &mut dst[b * pairs..(b + w) * pairs];
        for (p, row) in block.chunks_exact_mut(w).enumerate() {
            for (j, slot) in (b..).zip(row.iter_mut()) {
                let bits = if j < nk {
                    pair(&k[j * d..(j + 1) * d], p)
                } else {
                    0
                };
                *slot = f32::from_bits(bits);
            }
        }
    }
    dst[pairs * ld..d * ld].fill(0.0);
}

thread_local! {
    /// Q rows rounded to bf16 pairs, reused by every call on this thread.
    static Q_PAIRS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// `s[i·ld + j] = Σ_p bf16(q[i·d + p]) · K[j][p]` for `i < nq`, `j < ld` (`ld` a multiple of
/// 16), `kt` being K packed by [`pack_pairs`]. Products are exact in f32, sums f32.
pub(crate) fn qk(
    _proof: super::avx512_bf16::Avx512Bf16,
    q: &[f32],
    (nq, d): (usize, usize),
    kt: &[f32],
    ld: usize,
    s: &mut [f32],
) {
    let pairs = d.div_ceil(2);
    assert!(
        ld.is_multiple_of(16) && q.len() >= nq * d && kt.len() >= pairs * ld && s.len() >= nq * ld
    );
    Q_PAIRS.with_borrow_mut(|qp| {
        // round_rows writes every pair of the nq rows: grow the buffer only, no zero-fill.
        if qp.len() < nq * pairs {
            qp.resize(nq * pairs, 0);
        }
        let kt = kt.as_ptr().cast();
        // SAFETY: AVX-512F and AVX512-BF16 are present (`_proof` exists); q holds nq rows of d
        // and qp nq rows of `pairs` (resized), kt `pairs·ld` u32 (f32 bits of the same size),
        // s nq rows of ld: asserted.
        unsafe {
            round_rows(q.as_ptr(), (nq, d), qp.as_mut_ptr());
            qk_pairs(qp.as_ptr(), nq, pairs, kt, ld, s.as_mut_ptr())
        }
    });
}

/// Rows `0..nq` of `q` (`d` each) rounded to bf16 pairs (nearest even, `vcvtne2ps2bf16`) in
/// rows of `⌈d/2⌉` u32 at `dst`; an odd `d`'s last pair has a zero high half.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn round_rows(q: *const f32, (nq, d): (usize, usize), dst: *mut u32) {
    let pairs = d.div_ceil(2);
    for i in 0..nq {
        let (row, out) = (q.add(i * d), dst.add(i * pairs));
        let mut c = 0;
        while c < d {
            let lo = _mm512_maskz_loadu_ps(lanes(d - c), row.add(c));
            let hi = _mm512_maskz_loadu_ps(lanes(d.saturating_sub(c + 16)), row.add(c + 16));
            // Lanes 0..16 of the result are `lo` rounded, 16..32 `hi`: 16 pairs in order.
            let packed = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_mask_storeu_epi32(out.add(c / 2).cast(), lanes(pairs - c / 2), packed);
            c += 32;
        }
    }
}

#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn qk_pairs(q: *const u32, nq: usize, pairs: usize, kt: *const u32, ld: usize, s: *mut f32) {
    // Column blocks outside, row blocks inside: a block's [pairs][32] K slice (8 KiB at d = 128)
    // stays in L1 while the query rows stream past it.
    let mut j = 0;
    while j < ld {
        let wide = ld - j >= 32;
        let (ktj, sj) = (kt.add(j * pairs), s.add(j));
        let mut i = 0;
        while i < nq {
            let mr = (nq - i).min(8);
            let (qi, si) = (q.add(i * pairs), sj.add(i * ld));
            macro_rules! block {
                ($mr:literal) => {
                    if wide {
                        qk_block::<$mr, 2, 0>(qi, pairs, ktj, ld, si)
                    } else {
                        qk_block::<$mr, 1, 0>(qi, pairs, ktj, ld, si)
                    }
                };
            }
            match mr {
                // The usual head dims (64 and 32 pairs) as constants, as the f32 path.
                8 if wide && pairs == 64 => qk_block::<8, 2, 64>(qi, pairs, ktj, ld, si),
                8 if wide && pairs == 32 => qk_block::<8, 2, 32>(qi, pairs, ktj, ld, si),
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

#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn qk_block<const MR: usize, const NC: usize, const P: usize>(
    q: *const u32,
    pairs: usize,
    kt: *const u32,
    ld: usize,
    s: *mut f32,
) {
    // P != 0: the pair count as a compile-time constant (must equal `pairs`).
    let pairs = if P == 0 { pairs } else { P };
    let as_bh = |x: __m512i| std::mem::transmute::<__m512i, __m512bh>(x);
    let mut acc = [[_mm512_setzero_ps(); NC]; MR];
    for p in 0..pairs {
        let mut k = [as_bh(_mm512_setzero_si512()); NC];
        for (c, kc) in k.iter_mut().enumerate() {
            *kc = as_bh(_mm512_loadu_si512(kt.add((p * NC + c) * 16).cast()));
        }
        for (i, acc_i) in acc.iter_mut().enumerate() {
            let b = as_bh(_mm512_set1_epi32(*q.add(i * pairs + p) as i32));
            for (a, &kc) in acc_i.iter_mut().zip(&k) {
                *a = _mm512_dpbf16_ps(*a, b, kc);
            }
        }
    }
    for (i, acc_i) in acc.iter().enumerate() {
        for (c, &a) in acc_i.iter().enumerate() {
            _mm512_storeu_ps(s.add(i * ld + c * 16), a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::avx512_bf16::Avx512Bf16;

    fn round(x: f32) -> f64 {
        f64::from(half::bf16::from_f32(x).to_f32())
    }

    #[test]
    fn pairs_land_where_the_kernel_reads_them() {
        let (nk, d, ld) = (37, 5, 48);
        let k: Vec<f32> = (0..nk * d).map(|i| 1.0 + i as f32).collect();
        let mut dst = vec![f32::NAN; d * ld];
        pack_pairs(&k, (nk, d, ld), &mut dst);
        let pairs = d.div_ceil(2);
        for (b, w) in [(0, 32), (32, 16)] {
            for p in 0..pairs {
                for j in b..b + w {
                    let bits = dst[b * pairs + p * w + (j - b)].to_bits();
                    let want = if j < nk {
                        pair(&k[j * d..(j + 1) * d], p)
                    } else {
                        0
                    };
                    assert_eq!(bits, want, "key {j} pair {p}");
                }
            }
        }
        assert!(dst[pairs * ld..].iter().all(|&x| x == 0.0));
        // Dimension 4 is the last (odd d): the high half of its pair is zero.
        assert_eq!(dst[2 * 32].to_bits() >> 16, 0);
    }

    #[test]
    fn scores_match_the_f64_product_of_the_rounded_values() {
        let Some(proof) = Avx512Bf16::new(true) else {
            eprintln!("no AVX512-BF16 on this CPU: vdpbf16ps Q·Kᵀ not reachable here");
            return;
        };
        for (nq, nk, d, ld) in [
            (8, 32, 128, 32),
            (13, 45, 64, 48),
            (3, 7, 9, 16),
            (1, 1, 1, 16),
        ] {
            let q: Vec<f32> = (0..nq * d)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let k: Vec<f32> = (0..nk * d)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 9.0)
                .collect();
            let mut kt = vec![0.0; d * ld];
            pack_pairs(&k, (nk, d, ld), &mut kt);
            let mut s = vec![f32::NAN; nq * ld];
            qk(proof, &q, (nq, d), &kt, ld, &mut s);
            for i in 0..nq {
                for j in 0..ld {
                    let (want, mag) = if j < nk {
                        let terms = (0..d).map(|p| round(q[i * d + p]) * round(k[j * d + p]));
                        terms.fold((0.0, 0.0), |(s, m), t: f64| (s + t, m + t.abs()))
                    } else {
                        (0.0, 0.0)
                    };
                    let got = f64::from(s[i * ld + j]);
                    // Exact products summed in f32: at most (d + 2) roundings of the magnitude.
                    assert!(
                        (got - want).abs() <= (d as f64 + 2.0) * f64::from(f32::EPSILON) * mag,
                        "nq {nq} d {d} row {i} key {j}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
