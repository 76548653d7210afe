//! The single-node kernel's speed on one shape (`ringattn bench kernel`), beside the measured
//! FMA peak of the same threads.
//!
//! A shape runs one `attend` of the whole sequence (every query against every key, under the
//! mask) on a pool of `threads` threads, `repeats` times; the median is reported. FLOPs are
//! counted as everywhere in ringattn: 4 · H · D · (pairs the mask allows). The same fields are
//! printed by `benches/compare/sdpa.py` for PyTorch, so the two can be joined.

use std::time::{Duration, Instant};

use ringattn_runtime::kernel::measure_peak_gflops;
use ringattn_runtime::{
    attend_with, AttnState, Dtype, Isa, KvBlock, Mask, Positions, QShard, Result, Synthetic,
    TileShape,
};
use serde::Serialize;

use crate::sched_spec::SchedSpec;

/// One shape to measure: what a line of `bench kernel` varies.
#[derive(Clone, Debug)]
pub struct KernelShape {
    /// Micro-kernels.
    pub isa: Isa,
    /// Query heads.
    pub heads: usize,
    /// KV heads (divides `heads`).
    pub kv_heads: usize,
    /// Kernel threads.
    pub threads: usize,
    /// Head dimension.
    pub dim: usize,
    /// Sequence length.
    pub seq: usize,
    /// Causal mask.
    pub causal: bool,
    /// K/V storage type.
    pub dtype: Dtype,
    /// Kernel tile shape.
    pub tile: TileShape,
    /// Timed runs (the median is reported); at least 1.
    pub repeats: usize,
}

/// One measured shape: the line format shared with `benches/compare/sdpa.py`.
#[derive(Debug, Serialize)]
pub struct KernelResult {
    /// Implementation (`ringattn`).
    pub r#impl: &'static str,
    /// Sequence length.
    pub seq: usize,
    /// Query heads.
    pub heads: usize,
    /// KV heads.
    pub kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Causal mask.
    pub causal: bool,
    /// K/V storage type.
    pub dtype: &'static str,
    /// Kernel threads.
    pub threads: usize,
    /// Median seconds of one attention.
    pub median_s: f64,
    /// FLOPs / median / 1e9.
    pub gflops: f64,
    /// Measured FMA peak of the same number of threads running together, GFLOP/s.
    pub peak_gflops: f64,
    /// gflops / peak_gflops.
    pub fraction_of_peak: f64,
    /// Micro-kernels used.
    pub isa: &'static str,
    /// Tile shape.
    pub tile: [usize; 2],
    /// Kernel thread scheduler.
    pub sched: &'static str,
}

impl KernelResult {
    /// The header of [`KernelResult::table_row`]'s table.
    pub fn table_header() -> String {
        format!(
            "{:>6} {:>4} {:>3} {:>6} {:>5} {:>10} {:>8} {:>8} {:>7}",
            "seq", "d", "thr", "mask", "dtype", "median_s", "GFLOP/s", "peak", "of peak"
        )
    }

    /// One line of the human table: shape, median seconds, GFLOP/s, peak and its fraction.
    pub fn table_row(&self) -> String {
        format!(
            "{:>6} {:>4} {:>3} {:>6} {:>5} {:>10.4} {:>8.1} {:>8.1} {:>6.1}%",
            self.seq,
            self.head_dim,
            self.threads,
            if self.causal { "causal" } else { "full" },
            self.dtype,
            self.median_s,
            self.gflops,
            self.peak_gflops,
            100.0 * self.fraction_of_peak
        )
    }
}

/// The FMA peak of `threads` threads measuring at the same time (GFLOP/s, summed), so a
/// shape's rate can be read as a fraction of what the same threads can do.
pub fn parallel_peak(isa: Isa, threads: usize) -> f64 {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| s.spawn(move || measure_peak_gflops(isa, Duration::from_millis(300))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    })
}

/// Measures one shape on synthetic inputs with the scheduler `sched` (threads pinned to the
/// first allowed cores), `peak` being [`parallel_peak`] of the same threads.
pub fn measure_kernel(s: &KernelShape, sched: &SchedSpec, peak: f64) -> Result<KernelResult> {
    let source = Synthetic { seed: 1 };
    let positions = Positions::contiguous(0, s.seq);
    let q = QShard::from_source(&source, s.heads, s.dim, positions.clone())?;
    let kv = KvBlock::from_source_as(&source, 0, s.kv_heads, s.dim, positions, s.dtype)?;
    let pool = sched.build(s.threads, pinned_cores(s.threads))?;
    let mask = if s.causal { Mask::Causal } else { Mask::None };
    let mut times: Vec<f64> = (0..s.repeats.max(1))
        .map(|_| {
            let mut state = AttnState::new(s.heads, s.seq, s.dim);
            let start = Instant::now();
            attend_with(s.isa, &q, &kv, mask.clone(), s.tile, &mut state, &pool);
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median_s = times[times.len() / 2];
    let flops = 4.0 * (s.heads * s.dim) as f64 * mask.allowed_pairs(s.seq) as f64;
    let gflops = flops / median_s / 1e9;
    Ok(KernelResult {
        r#impl: "ringattn",
        seq: s.seq,
        heads: s.heads,
        kv_heads: s.kv_heads,
        head_dim: s.dim,
        causal: s.causal,
        dtype: s.dtype.name(),
        threads: s.threads,
        median_s,
        gflops,
        peak_gflops: peak,
        fraction_of_peak: gflops / peak,
        isa: s.isa.name(),
        tile: [s.tile.q, s.tile.k],
        sched: pool.kind().name(),
    })
}

/// The first `threads` allowed CPUs, or none (unpinned) when there are fewer.
pub fn pinned_cores(threads: usize) -> Vec<usize> {
    let cpus = crate::cores::allowed_cpus();
    if threads <= cpus.len() {
        cpus[..threads].to_vec()
    } else {
        Vec::new()
    }
}

/// Relative work of a shape (pairs × head dim / 10⁶, at least 1), for progress estimates.
pub fn work(seq: usize, dim: usize, causal: bool) -> u64 {
    let pairs = if causal {
        seq as u64 * (seq as u64 + 1) / 2
    } else {
        (seq * seq) as u64
    };
    (pairs * dim as u64 / 1_000_000).max(1)
}
