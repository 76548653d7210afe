//! The projections ([`Linear`]): dequantized f32 weights for prefill (a large matmul, compute
//! bound: candle's gemm wins there) and, for decode (one or a few rows, memory bound), the
//! same GGUF blocks kept packed ([`Packed`]: Q4_1 or Q8_0, 5–6× fewer bytes than f32) with a
//! matrix-vector product that reads them directly.
//!
//! Exactness: the packed product multiplies the f32 activations by the weights as stored
//! (`w = d·q + m` per block of 32), computed as `d·Σ q·x + m·Σ x` — the same weights the f32
//! path uses, summed in another order (differences ~1e-6 relative). Unlike candle's quantized
//! matmul (and llama.cpp) it does NOT re-quantize the activations to 8 bits, which changes the
//! model's answers (issue 14). It runs on the caller's rayon pool, so each rank's threads do
//! their own rank's projections.

use std::borrow::Cow;
use std::ops::Range;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use half::f16;
use rayon::prelude::*;

use crate::error::Result;

/// Weights per GGUF block (Q4_1, Q8_0).
const BLOCK: usize = 32;

/// A product with at most this many rows (tokens) takes the packed path when there is one.
pub const PACKED_MAX_ROWS: usize = 4;

/// Output rows per rayon task of the packed product.
const ROWS_PER_TASK: usize = 16;

/// A GGUF block type the packed product reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// 32 unsigned 4-bit values, a scale `d` and a minimum `m`: `w = d·q + m`.
    Q4_1,
    /// 32 signed 8-bit values and a scale `d`: `w = d·q`.
    Q8_0,
}

/// A weight matrix `[rows, cols]` in GGUF blocks along `cols`, scales unpacked to f32.
pub struct Packed {
    kind: Kind,
    rows: usize,
    cols: usize,
    /// `d` of every block, row-major (`rows · cols / 32`).
    scale: Vec<f32>,
    /// `m` of every block (Q4_1; empty for Q8_0).
    min: Vec<f32>,
    /// The quantized values: 16 bytes a block (Q4_1: low nibbles are values 0..16, high
    /// nibbles 16..32, as stored) or 32 (Q8_0, as i8).
    quants: Vec<u8>,
}

impl Packed {
    /// The blocks of `q` (`[rows, cols]`), or `None` for a type the packed product lacks.
    pub fn from_qtensor(q: &QTensor) -> Result<Option<Packed>> {
        let (kind, quant_bytes, header) = match q.dtype() {
            GgmlDType::Q4_1 => (Kind::Q4_1, BLOCK / 2, 4),
            GgmlDType::Q8_0 => (Kind::Q8_0, BLOCK, 2),
            _ => return Ok(None),
        };
        let dims = q.shape().dims();
        let [rows, cols] = dims else { return Ok(None) };
        let (rows, cols) = (*rows, *cols);
        if cols % BLOCK != 0 {
            return Ok(None);
        }
        let data: Cow<'_, [u8]> = q.data()?;
        let blocks = rows * cols / BLOCK;
        let size = header + quant_bytes;
        if data.len() != blocks * size {
            return Ok(None);
        }
        let mut p = Packed {
            kind,
            rows,
            cols,
            scale: Vec::with_capacity(blocks),
            min: Vec::with_capacity(if kind == Kind::Q4_1 { blocks } else { 0 }),
            quants: Vec::with_capacity(blocks * quant_bytes),
        };
        let half_at = |b: &[u8], i: usize| f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
        for b in data.chunks_exact(size) {
            p.scale.push(half_at(b, 0));
            if kind == Kind::Q4_1 {
                p.min.push(half_at(b, 2));
            }
            p.quants.extend_from_slice(&b[header..]);
        }
        Ok(Some(p))
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        4 * (self.scale.len() + self.min.len()) + self.quants.len()
    }

    /// `out[r] = Σ_c w[r, c] · x[c]` for one activation row `x` (`cols` values).
    fn matvec(&self, x: &[f32], out: &mut [f32]) {
        self.matvec_rows(x, 0..self.rows, out);
    }

    /// [`matvec`](Self::matvec) for the output rows `rows` only (`out[i]` is row
    /// `rows.start + i`): reads only those rows' blocks, and computes each row exactly as the
    /// whole product does (tensor-parallel decode splits a matrix's rows across ranks).
    fn matvec_rows(&self, x: &[f32], rows: Range<usize>, out: &mut [f32]) {
        let nb = self.cols / BLOCK;
        let qb = self.quants.len() / (self.rows * nb);
        // Σ x per block: the `m` term of Q4_1.
        let xsum: Vec<f32> = match self.kind {
            Kind::Q4_1 => x.chunks_exact(BLOCK).map(|c| c.iter().sum()).collect(),
            Kind::Q8_0 => Vec::new(),
        };
        out.par_chunks_mut(ROWS_PER_TASK)
            .enumerate()
            .for_each(|(task, chunk)| {
                for (i, o) in chunk.iter_mut().enumerate() {
                    let r = rows.start + task * ROWS_PER_TASK + i;
                    let blocks = r * nb..(r + 1) * nb;
                    let quants = &self.quants[blocks.start * qb..blocks.end * qb];
                    let scale = &self.scale[blocks.clone()];
                    *o = match self.kind {
                        Kind::Q4_1 => {
                            let min = &self.min[blocks];
                            let m: f32 = min.iter().zip(&xsum).map(|(m, s)| m * s).sum();
                            dot_q4_1(quants, scale, x) + m
                        }
                        Kind::Q8_0 => dot_q8_0(quants, scale, x),
                    };
                }
            });
    }
}

/// `Σ_b d_b · Σ_j q_bj · x_bj` over Q4_1 blocks (the `m` term is the caller's).
fn dot_q4_1(quants: &[u8], scale: &[f32], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        // SAFETY: AVX2 and FMA were detected at run time; the slices hold `scale.len()`
        // blocks (16 bytes, 32 floats each), as `Packed::matvec` cuts them.
        return unsafe { simd::dot_q4_1(quants, scale, x) };
    }
    dot_q4_1_scalar(quants, scale, x)
}

/// [`dot_q4_1`] without SIMD (other CPUs, and the reference its AVX2 path is tested against).
fn dot_q4_1_scalar(quants: &[u8], scale: &[f32], x: &[f32]) -> f32 {
    let mut acc = 0f32;
    for ((q, &d), x) in quants
        .chunks_exact(BLOCK / 2)
        .zip(scale)
        .zip(x.chunks_exact(BLOCK))
    {
        let mut s = 0f32;
        for j in 0..BLOCK / 2 {
            s += f32::from(q[j] & 0x0F) * x[j] + f32::from(q[j] >> 4) * x[j + BLOCK / 2];
        }
        acc += d * s;
    }
    acc
}

/// `Σ_b d_b · Σ_j q_bj · x_bj` over Q8_0 blocks.
fn dot_q8_0(quants: &[u8], scale: &[f32], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        // SAFETY: AVX2 and FMA were detected at run time; the slices hold `scale.len()`
        // blocks (32 bytes, 32 floats each), as `Packed::matvec` cuts them.
        return unsafe { simd::dot_q8_0(quants, scale, x) };
    }
    dot_q8_0_scalar(quants, scale, x)
}

/// [`dot_q8_0`] without SIMD (other CPUs, and the reference its AVX2 path is tested against).
fn dot_q8_0_scalar(quants: &[u8], scale: &[f32], x: &[f32]) -> f32 {
    let mut acc = 0f32;
    for ((q, &d), x) in quants
        .chunks_exact(BLOCK)
        .zip(scale)
        .zip(x.chunks_exact(BLOCK))
    {
        let s: f32 = q.iter().zip(x).map(|(&q, x)| f32::from(q as i8) * x).sum();
        acc += d * s;
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// AVX2 and FMA on this CPU.
    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// Eight u8/i8 lanes at `p` widened to f32.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn widen(v: __m128i, signed: bool) -> __m256 {
        if signed {
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))
        } else {
            _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))
        }
    }

    /// See [`super::dot_q4_1`]. Caller: AVX2+FMA present, `quants` ≥ 16·n bytes and `x` ≥
    /// 32·n floats for n = `scale.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_q4_1(quants: &[u8], scale: &[f32], x: &[f32]) -> f32 {
        let mask = _mm_set1_epi8(0x0F);
        let mut acc = _mm256_setzero_ps();
        for (b, &d) in scale.iter().enumerate() {
            let q = _mm_loadu_si128(quants.as_ptr().add(16 * b).cast());
            let lo = _mm_and_si128(q, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
            let xp = x.as_ptr().add(32 * b);
            let mut s = _mm256_mul_ps(widen(lo, false), _mm256_loadu_ps(xp));
            s = _mm256_fmadd_ps(
                widen(_mm_srli_si128(lo, 8), false),
                _mm256_loadu_ps(xp.add(8)),
                s,
            );
            s = _mm256_fmadd_ps(widen(hi, false), _mm256_loadu_ps(xp.add(16)), s);
            s = _mm256_fmadd_ps(
                widen(_mm_srli_si128(hi, 8), false),
                _mm256_loadu_ps(xp.add(24)),
                s,
            );
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), s, acc);
        }
        hsum(acc)
    }

    /// See [`super::dot_q8_0`]. Caller: AVX2+FMA present, `quants` ≥ 32·n bytes and `x` ≥
    /// 32·n floats for n = `scale.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_q8_0(quants: &[u8], scale: &[f32], x: &[f32]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (b, &d) in scale.iter().enumerate() {
            let qp = quants.as_ptr().add(32 * b);
            let xp = x.as_ptr().add(32 * b);
            let mut s = _mm256_setzero_ps();
            for k in 0..4 {
                let q = _mm_loadl_epi64(qp.add(8 * k).cast());
                s = _mm256_fmadd_ps(widen(q, true), _mm256_loadu_ps(xp.add(8 * k)), s);
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), s, acc);
        }
        hsum(acc)
    }
}

/// A projection: `y = x · Wᵀ` through the dense (or stored) weights, or through the packed
/// blocks for products of at most [`PACKED_MAX_ROWS`] rows (decode).
pub struct Linear {
    dense: QMatMul,
    packed: Option<Packed>,
}

impl Linear {
    /// The projection of `q` (`[out, in]`): f32-dequantized (`dense_f32`) or as stored, plus
    /// its packed blocks when `packed` and the type has them.
    pub fn new(q: QTensor, dense_f32: bool, packed: bool) -> Result<Linear> {
        let packed = if packed {
            Packed::from_qtensor(&q)?
        } else {
            None
        };
        let dense = if dense_f32 {
            QMatMul::Tensor(q.dequantize(&Device::Cpu)?)
        } else {
            QMatMul::QTensor(std::sync::Arc::new(q))
        };
        Ok(Linear { dense, packed })
    }

    /// The LM head (only ever applied to one row): the packed blocks alone when the type has
    /// them (its f32 copy would be the largest matrix of a small model, never read), else
    /// f32-dequantized. (More than [`PACKED_MAX_ROWS`] rows would go through the stored
    /// blocks, candle's quantized matmul.)
    pub fn head(q: QTensor) -> Result<Linear> {
        let packed = Packed::from_qtensor(&q)?;
        let dense = if packed.is_some() {
            QMatMul::QTensor(std::sync::Arc::new(q))
        } else {
            QMatMul::Tensor(q.dequantize(&Device::Cpu)?)
        };
        Ok(Linear { dense, packed })
    }

    /// Whether products of few rows read packed blocks.
    pub fn is_packed(&self) -> bool {
        self.packed.is_some()
    }

    /// Output features (rows of the weight matrix) of the packed blocks, `None` without them.
    pub fn packed_rows(&self) -> Option<usize> {
        self.packed.as_ref().map(|p| p.rows)
    }

    /// The output features `rows` of `x · Wᵀ` for one activation row `x` (`in` values), read
    /// from the packed blocks (only those rows' bytes); `None` without packed blocks or when
    /// `x` or `rows` do not fit the matrix. Each value equals the same feature of
    /// [`forward`](Module::forward) on that row, bit for bit.
    pub fn matvec_rows(&self, x: &[f32], rows: Range<usize>) -> Option<Vec<f32>> {
        let p = self.packed.as_ref()?;
        if x.len() != p.cols || rows.start > rows.end || rows.end > p.rows {
            return None;
        }
        let mut out = vec![0f32; rows.len()];
        p.matvec_rows(x, rows, &mut out);
        Some(out)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let Some(p) = &self.packed else {
            return self.dense.forward(x);
        };
        let dims = x.dims();
        let rows = x.elem_count() / p.cols.max(1);
        if dims.last() != Some(&p.cols) || rows > PACKED_MAX_ROWS {
            return self.dense.forward(x);
        }
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; rows * p.rows];
        for (xr, or) in xs.chunks_exact(p.cols).zip(out.chunks_exact_mut(p.rows)) {
            p.matvec(xr, or);
        }
        let mut shape = dims.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = p.rows;
        }
        Tensor::from_vec(out, shape, x.device())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed product equals the dense product of the same (dequantized) weights.
    fn check(dtype: GgmlDType) {
        let (rows, cols) = (37, 96);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 113) as f32 - 56.0) / 29.0)
            .collect();
        let wt = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&wt, dtype).unwrap();
        let dense = q.dequantize(&Device::Cpu).unwrap();
        let lin = Linear::new(q, true, true).unwrap();
        assert!(lin.is_packed());
        let x: Vec<f32> = (0..2 * cols)
            .map(|i| ((i * 31 % 17) as f32 - 8.0) / 5.0)
            .collect();
        let xt = Tensor::from_vec(x, (1, 2, cols), &Device::Cpu).unwrap();
        let got = lin.forward(&xt).unwrap().flatten_all().unwrap();
        let want = xt.broadcast_matmul(&dense.t().unwrap()).unwrap();
        let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let got = got.to_vec1::<f32>().unwrap();
        assert_eq!(got.len(), 2 * rows);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }

    #[test]
    fn packed_q4_1_matches_the_dequantized_product() {
        check(GgmlDType::Q4_1);
    }

    #[test]
    fn packed_q8_0_matches_the_dequantized_product() {
        check(GgmlDType::Q8_0);
    }

    /// A row range of the packed product is those rows of the whole product, bit for bit;
    /// ranges outside the matrix, or a wrong input length, give `None`.
    #[test]
    fn row_ranges_are_the_same_rows_of_the_whole_product() {
        let (rows, cols) = (53, 64);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 4099 % 97) as f32 - 48.0) / 31.0)
            .collect();
        let wt = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
        let lin =
            Linear::new(QTensor::quantize(&wt, GgmlDType::Q4_1).unwrap(), true, true).unwrap();
        assert_eq!(lin.packed_rows(), Some(rows));
        let x: Vec<f32> = (0..cols)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let xt = Tensor::from_vec(x.clone(), (1, 1, cols), &Device::Cpu).unwrap();
        let whole: Vec<f32> = lin
            .forward(&xt)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for range in [0..rows, 0..17, 17..40, 40..rows, 5..5] {
            let got = lin.matvec_rows(&x, range.clone()).unwrap();
            assert_eq!(got, whole[range.clone()], "{range:?}");
        }
        assert!(lin.matvec_rows(&x, 50..rows + 1).is_none());
        assert!(lin.matvec_rows(&x[1..], 0..1).is_none());
        let dense = Linear::new(
            QTensor::quantize(&wt, GgmlDType::Q4_1).unwrap(),
            true,
            false,
        )
        .unwrap();
        assert!(dense.matvec_rows(&x, 0..1).is_none());
    }

    /// The dispatching dot products (AVX2 where the CPU has it) against the scalar ones, on
    /// every nibble / byte value and signs of x.
    #[test]
    fn simd_dot_products_match_the_scalar_ones() {
        let blocks = 5;
        let quants: Vec<u8> = (0..blocks * BLOCK).map(|i| (i * 37 % 256) as u8).collect();
        let scale: Vec<f32> = (0..blocks).map(|b| 0.01 * (b as f32 + 1.0)).collect();
        let x: Vec<f32> = (0..blocks * BLOCK)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0)
            .collect();
        let q4 = &quants[..blocks * BLOCK / 2];
        let (got, want) = (dot_q4_1(q4, &scale, &x), dot_q4_1_scalar(q4, &scale, &x));
        assert!(
            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
            "{got} vs {want}"
        );
        let (got, want) = (
            dot_q8_0(&quants, &scale, &x),
            dot_q8_0_scalar(&quants, &scale, &x),
        );
        assert!(
            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
            "{got} vs {want}"
        );
    }
}
