//! Portable micro-kernels: plain Rust the compiler vectorises. The reference path for the SIMD
//! tests, and the fallback on CPUs without AVX2.

use super::driver::{finish_row, overflowed, row_step, Micro, RowStep};
use super::pack::pack_v_f32;
use crate::tensor::KvData;

/// Micro-kernels in safe, portable Rust.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Portable;

impl Micro for Portable {
    const LANES: usize = 8;
    const ISA: super::Isa = super::Isa::Portable;
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
        pack_v_f32(v, head, rows, start, (nk, d), usize::MAX, dst);
    }

    fn qk(self, q: &[f32], nq: usize, d: usize, kt: &[f32], ld: usize, s: &mut [f32]) {
        for (q_row, s_row) in q.chunks_exact(d).zip(s.chunks_exact_mut(ld)).take(nq) {
            s_row.fill(0.0);
            for (&a, kt_row) in q_row.iter().zip(kt.chunks_exact(ld)) {
                for (x, &k) in s_row.iter_mut().zip(kt_row) {
                    *x += a * k;
                }
            }
        }
    }

    fn softmax_row(self, row: &mut [f32], scale: f32, m: &mut f32, l: &mut f32) -> f32 {
        let row_max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
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
        let mut sum = 0.0f32;
        for x in row.iter_mut() {
            *x = (*x * scale - m_new).exp();
            sum += *x;
        }
        finish_row(row, sum, (m_new, alpha), m, l)
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
        for i in 0..nq {
            let acc_row = &mut acc[i * d..(i + 1) * d];
            if alpha[i] != 1.0 {
                acc_row.iter_mut().for_each(|a| *a *= alpha[i]);
            }
            for (&pij, v_row) in p[i * ld..i * ld + nk].iter().zip(v.chunks_exact(d)) {
                if pij != 0.0 {
                    for (a, &x) in acc_row.iter_mut().zip(v_row) {
                        *a += pij * x;
                    }
                }
            }
        }
    }
}
