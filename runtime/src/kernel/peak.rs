//! A measured FMA peak: what one core of this machine can do at best with the instruction set
//! the kernel uses, so benchmarks can state their fraction of the hardware limit.

use std::time::{Duration, Instant};

use super::Isa;

/// Measures the f32 FMA throughput of one core with `isa`, in GFLOP/s (an FMA = 2 FLOPs), by
/// running independent FMA chains for about `budget`. Runs on the calling thread. For
/// [`Isa::Amx`] this is the AVX-512 f32 FMA peak: the tile path is measured against the f32
/// vector limit of the core, so its fraction can exceed 1 (see [`measure_tile_peak_gflops`]).
pub fn measure_peak_gflops(isa: Isa, budget: Duration) -> f64 {
    let mut best = 0.0f64;
    let start = Instant::now();
    // Several short rounds, best kept: robust to a neighbour stealing the core for a moment.
    while start.elapsed() < budget || best == 0.0 {
        let iters = 200_000u64;
        let t0 = Instant::now();
        let (flops_per_iter, sink) = fma_loop(isa, iters);
        let secs = t0.elapsed().as_secs_f64();
        std::hint::black_box(sink);
        best = best.max(flops_per_iter * iters as f64 / secs / 1e9);
    }
    best
}

/// Runs `iters` iterations of 12 independent FMA chains; returns (FLOPs per iteration, a value
/// that depends on the result so the loop is not optimised away).
fn fma_loop(isa: Isa, iters: u64) -> (f64, f32) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Amx if is_x86_feature_detected!("avx512f") => {
            // SAFETY: AVX-512F was just detected.
            (12.0 * 16.0 * 2.0, unsafe { x86::fma_avx512(iters) })
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") => {
            // SAFETY: AVX2 and FMA were just detected.
            (12.0 * 8.0 * 2.0, unsafe { x86::fma_avx2(iters) })
        }
        _ => (12.0 * 2.0, scalar_fma(iters)),
    }
}

/// Measures the bf16 throughput of one core's AMX tile unit (GFLOP/s, a multiply-add = 2
/// FLOPs) for about `budget`: `None` without AMX. The f32 tile path does six bf16 products
/// per f32 product, so its ceiling is a sixth of this.
pub fn measure_tile_peak_gflops(budget: Duration) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        super::amx::measure_tile_peak_gflops(budget)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = budget;
        None
    }
}

fn scalar_fma(iters: u64) -> f32 {
    let mut acc = [0.0f32; 12];
    let (a, b) = (
        std::hint::black_box(0.999_999f32),
        std::hint::black_box(1e-7f32),
    );
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = *x * a + b;
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fma_avx512(iters: u64) -> f32 {
        let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm512_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm512_setzero_ps(); 12];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fma_avx2(iters: u64) -> f32 {
        let a = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm256_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm256_setzero_ps(); 12];
        let mut out = [0.0f32; 8];
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let sum = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x));
        _mm256_storeu_ps(out.as_mut_ptr(), sum);
        out.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_is_positive_for_every_available_isa() {
        for isa in Isa::available() {
            let g = measure_peak_gflops(isa, Duration::from_millis(5));
            assert!(g.is_finite() && g > 0.1, "{isa:?}: {g}");
        }
    }
}
