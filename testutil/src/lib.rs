//! Helpers shared by the tests (and examples) of the ringattn crates, instead of copies in
//! each: deterministic data, whole tensors from a row source, the exact f64 attention, error
//! measures, rank threads, a one-thread executor and the MPI launcher ([`mpi`]). Dev-only (`publish = false`); depends on
//! `ringattn-runtime` alone, so every crate above it can use it.

#![warn(missing_docs)]

pub mod fuzz;
pub mod mpi;

use ringattn_runtime::local::local_world;
use ringattn_runtime::reference::reference_row;
use ringattn_runtime::{Comm, Mask, RowSource, SchedConfig, SchedKind, Scheduler, TensorKind};

/// `len` deterministic values in [−1, 1) from `seed` (a 64-bit LCG; the same on every machine).
pub fn random_values(len: usize, seed: u64) -> Vec<f32> {
    const A: u64 = 6364136223846793005;
    const C: u64 = 1442695040888963407;
    let mut s = seed.wrapping_mul(A).wrapping_add(C);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(A).wrapping_add(C);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Tensor `t` of `source` for positions `0..n`, `[heads, n, dim]`.
pub fn whole(
    source: &dyn RowSource,
    t: TensorKind,
    heads: usize,
    n: usize,
    dim: usize,
) -> Vec<f32> {
    let mut out = vec![0.0f32; heads * n * dim];
    for (i, row) in out.chunks_exact_mut(dim).enumerate() {
        source
            .fill_row(t, i / n, i % n, row)
            .expect("a test source fills every row");
    }
    out
}

/// Exact attention in f64 of `q` (`[heads, n, dim]`) over `k`, `v` (`[kv_heads, n, dim]`,
/// query head `h` reads KV head `h / (heads / kv_heads)`) under `mask_of(kv_head)`. Returns
/// `(out [heads, n, dim], lse [heads, n])`. O(n² · dim): for small inputs.
pub fn reference_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (heads, kv_heads, n, dim): (usize, usize, usize, usize),
    mask_of: impl Fn(usize) -> Mask,
) -> (Vec<f64>, Vec<f64>) {
    let group = (heads / kv_heads.max(1)).max(1);
    let (mut out, mut lse) = (
        Vec::with_capacity(heads * n * dim),
        Vec::with_capacity(heads * n),
    );
    let head = |t: &'_ [f32], g: usize| -> Vec<f32> { t[g * n * dim..(g + 1) * n * dim].to_vec() };
    for h in 0..heads {
        let g = h / group;
        let (keys, values) = (head(k, g), head(v, g));
        for p in 0..n {
            let row = &q[(h * n + p) * dim..(h * n + p + 1) * dim];
            let (o, l) = reference_row(row, p, &keys, &values, dim, mask_of(g));
            out.extend(o);
            lse.push(l);
        }
    }
    (out, lse)
}

/// Largest `|a − b|` (equal values, infinities included, count as no error; NaN as infinite).
pub fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let e = if x as f64 == y {
                0.0
            } else {
                (x as f64 - y).abs()
            };
            if e.is_nan() {
                f64::INFINITY
            } else {
                e
            }
        })
        .fold(0.0, f64::max)
}

/// Runs `f` on `world` rank threads joined by the local backend; results in rank order.
/// Panics when a rank panics (a test failure).
pub fn on_ranks<T: Send>(world: usize, f: impl Fn(&mut dyn Comm) -> T + Sync) -> Vec<T> {
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = local_world(world)
            .into_iter()
            .map(|mut comm| s.spawn(move || f(&mut comm)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("rank thread"))
            .collect()
    })
}

/// A kernel executor of one unpinned thread (results do not depend on the thread count).
pub fn one_thread() -> Scheduler {
    Scheduler::new(SchedConfig::new(SchedKind::Static, 1, Vec::new())).expect("one thread")
}
