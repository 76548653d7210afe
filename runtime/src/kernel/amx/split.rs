//! f32 → three bf16 parts, and the tile layouts AMX reads them in.
//!
//! AMX multiplies bf16 pairs (8 significant bits) into f32 accumulators. An f32 `x` is split as
//! `x ≈ hi + mid + lo`, each part the bf16 nearest to what the previous parts left
//! (`hi = bf16(x)`, `mid = bf16(x − hi)`, `lo = bf16(x − hi − mid)`: |mid| ≤ 2⁻⁸·|x|,
//! |lo| ≤ 2⁻¹⁶·|x|, and the residual is below 2⁻²⁶·|x| on 100 000 random f32, tested). A
//! product `x·y` is then the six terms whose part indices sum to at most 2 (hi·hi, hi·mid,
//! mid·hi, hi·lo, mid·mid, lo·hi; "bf16x6"); the dropped terms (mid·lo, lo·mid, lo·lo) are at
//! most ≈ 2⁻²³·|x·y| together, the order of f32's own rounding of a product (2⁻²⁴), and of
//! random sign, so the sums stay at f32 accuracy (measured 1.2e-7 max error). Henry, Tang and
//! Heinecke, "Leveraging the bfloat16 Artificial Intelligence Datatype For Higher-Precision
//! Computations" (ARITH 2019), analyse the same scheme.
//!
//! Layouts (u16 = bf16 bits, every buffer zero-padded):
//! - rows (`Q`, `P`): part-major `[part][row][col]`, as the A operand reads them;
//! - K for Q·Kᵀ (the B operand, "VNNI" pairs): `[part][d/2][ld][2]`, element
//!   `(r, j, e) = K[j][2r + e]`;
//! - V for P·V: `[part][ld/2][d][2]`, element `(r, c, e) = V[2r + e][c]`.

/// How many bf16 parts an f32 is split into.
pub(crate) const PARTS: usize = 3;

/// `x` rounded to the nearest bf16 (ties to even), as an f32 whose low 16 bits are zero.
fn round_bf16(x: f32) -> f32 {
    let u = x.to_bits();
    f32::from_bits(u.wrapping_add(0x7FFF + ((u >> 16) & 1)) & 0xFFFF_0000)
}

/// The three bf16 parts of `x` (bit patterns), largest first.
pub(crate) fn split(x: f32) -> [u16; PARTS] {
    let hi = round_bf16(x);
    let mid = round_bf16(x - hi);
    let lo = round_bf16(x - hi - mid);
    [hi, mid, lo].map(|p| (p.to_bits() >> 16) as u16)
}

/// The f32 value of bf16 bits.
#[cfg(test)]
pub(crate) fn widen(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Splits `row` into `parts[p][..row.len()]` with the scalar [`split`]: the reference of
/// [`split_row_avx512`].
#[cfg(test)]
pub(crate) fn split_row(row: &[f32], parts: [&mut [u16]; PARTS]) {
    let [hi, mid, lo] = parts;
    for (j, &x) in row.iter().enumerate() {
        [hi[j], mid[j], lo[j]] = split(x);
    }
}

/// Splits `nk` rows of `d` values into `parts[p][j·d + c]` (the first `PARTS · nk · d`
/// entries): the vector split when AVX-512 is there, else the scalar [`split`].
fn split_rows(x: &[f32], nk: usize, d: usize, parts: &mut [u16]) {
    let (hi, rest) = parts[..PARTS * nk * d].split_at_mut(nk * d);
    let (mid, lo) = rest.split_at_mut(nk * d);
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        for (j, row) in x[..nk * d].chunks_exact(d).enumerate() {
            let dst = [&mut *hi, &mut *mid, &mut *lo].map(|p| p[j * d..].as_mut_ptr());
            // SAFETY: AVX-512F was just detected; `row` holds d floats and each destination
            // row d u16.
            unsafe { split_row_avx512(row.as_ptr(), d, d, dst) };
        }
        return;
    }
    for (i, &v) in x[..nk * d].iter().enumerate() {
        [hi[i], mid[i], lo[i]] = split(v);
    }
}

/// Packs `nk` keys (`k`, rows of `d`) as the B operand of Q·Kᵀ: `panel[p]` is `[d/2][ld][2]`
/// with keys `nk..ld` zero. Only the first `parts` parts are written (1 when K is exactly bf16).
/// `scratch` holds at least `3 · nk · d` u16. Each (dim pair, key) is one 32-bit move: the
/// pack is a transpose of 32-bit words.
pub(crate) fn pack_k(
    k: &[f32],
    dims: (usize, usize, usize),
    parts: usize,
    scratch: &mut [u16],
    panel: &mut [u16],
) {
    let (d, ld) = (dims.1, dims.2);
    pack_parts(k, dims, parts, scratch, panel, |src, dst| {
        for (j, row) in src.chunks_exact(d).enumerate() {
            for (r, pair) in row.chunks_exact(2).enumerate() {
                let at = (r * ld + j) * 2;
                dst[at..at + 2].copy_from_slice(pair);
            }
        }
    });
}

/// Packs `nk` value rows (`v`, rows of `d`) as the B operand of P·V: `panel[p]` is
/// `[ld/2][d][2]` with rows `nk..ld` zero. Only the first `parts` parts are written.
/// `scratch` as for [`pack_k`]; each pair of rows is interleaved element by element.
pub(crate) fn pack_v(
    v: &[f32],
    dims: (usize, usize, usize),
    parts: usize,
    scratch: &mut [u16],
    panel: &mut [u16],
) {
    let d = dims.1;
    pack_parts(v, dims, parts, scratch, panel, |src, dst| {
        for (j, row) in src.chunks_exact(d).enumerate() {
            let out = &mut dst[(j / 2) * d * 2..(j / 2 + 1) * d * 2];
            for (slot, &x) in out.iter_mut().skip(j % 2).step_by(2).zip(row) {
                *slot = x;
            }
        }
    });
}

/// Zeroes `panel`, splits the `nk × d` values of `x` into `scratch`, and lets `place` lay out
/// each of the first `parts` parts (its `[nk][d]` rows) in that part's `d × ld` panel.
fn pack_parts(
    x: &[f32],
    (nk, d, ld): (usize, usize, usize),
    parts: usize,
    scratch: &mut [u16],
    panel: &mut [u16],
    place: impl Fn(&[u16], &mut [u16]),
) {
    let size = d * ld;
    panel.fill(0);
    split_rows(x, nk, d, scratch);
    for p in 0..parts {
        place(
            &scratch[p * nk * d..(p + 1) * nk * d],
            &mut panel[p * size..(p + 1) * size],
        );
    }
}

/// The three bf16 parts of 16 f32 lanes (bits in the low half of each 32-bit lane), largest
/// first: the vector form of [`split`].
///
/// # Safety
/// AVX-512F must be present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn split_lanes(
    x: std::arch::x86_64::__m512,
) -> [std::arch::x86_64::__m512i; PARTS] {
    use std::arch::x86_64::*;
    let round = |x: __m512| {
        let u = _mm512_castps_si512(x);
        let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(u), _mm512_set1_epi32(1));
        let biased = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb);
        let r = _mm512_and_si512(biased, _mm512_set1_epi32(0xFFFF_0000u32 as i32));
        (_mm512_castsi512_ps(r), _mm512_srli_epi32::<16>(r))
    };
    let (hi, hi_bits) = round(x);
    let r = _mm512_sub_ps(x, hi);
    let (mid, mid_bits) = round(r);
    let (_, lo_bits) = round(_mm512_sub_ps(r, mid));
    [hi_bits, mid_bits, lo_bits]
}

/// Stores the parts of [`split_lanes`] at `dst[p] + j`, lanes of `store` only.
///
/// # Safety
/// AVX-512F must be present; each `dst[p] + j` writable for the lanes of `store`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn store_parts(
    parts: [std::arch::x86_64::__m512i; PARTS],
    dst: [*mut u16; PARTS],
    j: usize,
    store: std::arch::x86_64::__mmask16,
) {
    for (bits, d) in parts.into_iter().zip(dst) {
        std::arch::x86_64::_mm512_mask_cvtepi32_storeu_epi16(d.add(j).cast(), store, bits);
    }
}

/// The AVX-512 split of one row (the query rows of an item): lanes `n_valid..n_total` are
/// written as zero.
///
/// # Safety
/// AVX-512F must be present; `src` readable for `n_valid` f32 and each `dst[p]` writable for
/// `n_total` u16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn split_row_avx512(
    src: *const f32,
    n_valid: usize,
    n_total: usize,
    dst: [*mut u16; PARTS],
) {
    use std::arch::x86_64::*;
    let mut j = 0;
    while j < n_total {
        let valid = lanes(n_valid.saturating_sub(j));
        let x = _mm512_maskz_loadu_ps(valid, src.add(j));
        store_parts(split_lanes(x), dst, j, lanes(n_total - j));
        j += 16;
    }
}

/// One online-softmax step on a row of raw scores (as the other paths' `softmax_row`), writing
/// the probabilities straight into their bf16 parts `dst[p][..cols]` (keys `nk..cols` zero)
/// instead of back into the row. Returns the accumulator factor alpha.
///
/// The probabilities are split by truncation, not rounding: `hi` = the upper 16 bits of `p`,
/// `mid` = those of `p − hi`, `lo` = those of `p − hi − mid`. For a normal f32 the three parts
/// hold its 24 significant bits exactly, and taking upper halves is one word permute per two
/// vectors (this runs once per score, so its cost matters; the dropped products P_mid·V_lo
/// and P_lo·V_mid stay below 2⁻²²·|P·V|).
///
/// # Safety
/// AVX-512F and AVX-512BW must be present; `cols` a multiple of 32; `row` readable for `nk`
/// f32, each `dst[p]` writable for `cols` u16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn softmax_split_row(
    row: *const f32,
    nk: usize,
    cols: usize,
    scale: f32,
    m: &mut f32,
    l: &mut f32,
    dst: [*mut u16; PARTS],
) -> f32 {
    use super::super::avx512_softmax::{exp2_arg, row_max};
    use super::super::driver::{overflowed, row_step, RowStep};
    use std::arch::x86_64::*;
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    let (m_new, alpha) = match row_step(row_max(row, nk), scale, *m) {
        RowStep::Update { m_new, alpha } => (m_new, alpha),
        step => {
            for d in dst {
                std::ptr::write_bytes(d, 0, cols);
            }
            return if step == RowStep::Overflowed {
                overflowed(m)
            } else {
                1.0
            };
        }
    };
    let (vscale, vm) = (_mm512_set1_ps(scale), _mm512_set1_ps(m_new));
    let log2e = _mm512_set1_ps(std::f32::consts::LOG2_E);
    let upper = _mm512_set1_epi32(0xFFFF_0000u32 as i32);
    // Word 2i + 1 of (a, b) for i < 32: the upper halves of 32 f32 lanes, in order.
    let odd_words = _mm512_set_epi16(
        63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25, 23, 21, 19,
        17, 15, 13, 11, 9, 7, 5, 3, 1,
    );
    let prob = |j: usize| {
        let valid = lanes(nk.saturating_sub(j));
        let x = exp2_arg(
            _mm512_mask_loadu_ps(neg_inf, valid, row.add(j)),
            vscale,
            vm,
            log2e,
        );
        _mm512_maskz_mov_ps(valid, super::super::avx512_softmax::exp2(x))
    };
    let residual = |x: __m512| {
        let hi = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), upper));
        _mm512_castps_si512(_mm512_sub_ps(x, hi))
    };
    let mut vsum = _mm512_setzero_ps();
    let mut j = 0;
    while j < cols {
        let (e0, e1) = (prob(j), prob(j + 16));
        vsum = _mm512_add_ps(vsum, _mm512_add_ps(e0, e1));
        let (hi0, hi1) = (_mm512_castps_si512(e0), _mm512_castps_si512(e1));
        let (mid0, mid1) = (residual(e0), residual(e1));
        let (lo0, lo1) = (
            residual(_mm512_castsi512_ps(mid0)),
            residual(_mm512_castsi512_ps(mid1)),
        );
        for (p, (a, b)) in [(hi0, hi1), (mid0, mid1), (lo0, lo1)]
            .into_iter()
            .enumerate()
        {
            let words = _mm512_permutex2var_epi16(a, odd_words, b);
            _mm512_storeu_si512(dst[p].add(j).cast(), words);
        }
        j += 32;
    }
    let sum = _mm512_reduce_add_ps(vsum);
    if !sum.is_finite() {
        // A NaN score (exp2 propagates it): Q·K left the f32 range.
        for d in dst {
            std::ptr::write_bytes(d, 0, cols);
        }
        return overflowed(m);
    }
    *l = *l * alpha + sum;
    *m = m_new;
    alpha
}

#[cfg(target_arch = "x86_64")]
use super::super::avx512_softmax::lanes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_parts_carry_f32_precision() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..100_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let x = f32::from_bits((state >> 32) as u32 & 0x7FFF_FFFF);
            if !x.is_finite() || x.abs() < 1e-30 || x.abs() > 1e30 {
                continue;
            }
            let sum: f64 = split(x).iter().map(|&b| widen(b) as f64).sum();
            let err = (sum - x as f64).abs() / (x as f64).abs();
            assert!(err <= 2f64.powi(-26), "{x}: relative residual {err}");
        }
    }

    #[test]
    fn packed_layouts_hold_each_element_once() {
        let (nk, d, ld) = (5, 4, 8);
        let k: Vec<f32> = (0..nk * d).map(|i| 1.0 + i as f32).collect();
        let mut panel = vec![7u16; 3 * d * ld];
        let mut scratch = vec![0u16; 3 * nk * d];
        pack_k(&k, (nk, d, ld), 3, &mut scratch, &mut panel);
        for j in 0..ld {
            for c in 0..d {
                let got = widen(panel[((c / 2) * ld + j) * 2 + c % 2]);
                assert_eq!(got, if j < nk { k[j * d + c] } else { 0.0 });
            }
        }
        pack_v(&k, (nk, d, ld), 1, &mut scratch, &mut panel);
        for j in 0..ld {
            for c in 0..d {
                let got = widen(panel[((j / 2) * d + c) * 2 + j % 2]);
                assert_eq!(got, if j < nk { k[j * d + c] } else { 0.0 });
            }
        }
        assert!(
            panel[d * ld..].iter().all(|&b| b == 0),
            "parts not asked for stay zero"
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_split_equals_the_scalar_split() {
        if !is_x86_feature_detected!("avx512f") {
            return;
        }
        let row: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 1000) as f32 / 997.0 - 0.3)
            .collect();
        let (n_valid, n_total) = (37, 48);
        let mut got = vec![vec![9u16; n_total]; 3];
        let mut want = vec![vec![0u16; n_total]; 3];
        let [a, b, c] = &mut want[..] else {
            unreachable!()
        };
        split_row(&row, [&mut a[..], &mut b[..], &mut c[..]]);
        let ptrs = [0, 1, 2].map(|p| got[p].as_mut_ptr());
        // SAFETY: AVX-512F checked above; row holds n_valid floats, each part n_total u16.
        unsafe { split_row_avx512(row.as_ptr(), n_valid, n_total, ptrs) };
        assert_eq!(got, want);
    }
}
