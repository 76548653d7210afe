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
    attend_with, AttnState, Dtype, Error, Isa, KvBlock, Mask, Positions, QShard, Result, Synthetic,
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
    /// Precision of Q in Q·Kᵀ (`bf16` only for bf16 K/V under `--qk-dtype bf16`).
    pub qk_dtype: &'static str,
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
            "{:>6} {:>4} {:>3} {:>6} {:>5} {:>4} {:>10} {:>8} {:>8} {:>7}",
            "seq", "d", "thr", "mask", "dtype", "qk", "median_s", "GFLOP/s", "peak", "of peak"
        )
    }

    /// One line of the human table: shape, Q·Kᵀ precision, median seconds, GFLOP/s, peak and
    /// its fraction.
    pub fn table_row(&self) -> String {
        format!(
            "{:>6} {:>4} {:>3} {:>6} {:>5} {:>4} {:>10.4} {:>8.1} {:>8.1} {:>6.1}%",
            self.seq,
            self.head_dim,
            self.threads,
            if self.causal { "causal" } else { "full" },
            self.dtype,
            self.qk_dtype,
            self.median_s,
            self.gflops,
            self.peak_gflops,
            100.0 * self.fraction_of_peak
        )
    }
}

impl KernelShape {
    /// `N=.. D=.. T=..[ causal]`: what a progress line says of the shape.
    pub fn label(&self) -> String {
        let mask = if self.causal { " causal" } else { "" };
        format!("N={} D={} T={}{mask}", self.seq, self.dim, self.threads)
    }
}

/// Where `bench kernel`'s results go, one per shape: the table or JSON lines for stdout, or
/// JSON lines in a file, written and flushed as they come (so an interrupted grid keeps what
/// it measured).
#[derive(Debug)]
pub enum KernelSink {
    /// The human table on stdout (header before the first row).
    Table {
        /// Whether the header was given out.
        header_done: bool,
    },
    /// JSON lines on stdout.
    Stdout,
    /// JSON lines in the file of this path.
    File(std::io::BufWriter<std::fs::File>, String),
}

impl KernelSink {
    /// The sink of a `json` option: none for the table, `-` for stdout, else a file (created).
    pub fn open(json: Option<&str>) -> Result<KernelSink> {
        Ok(match json {
            None => KernelSink::Table { header_done: false },
            Some("-") => KernelSink::Stdout,
            Some(path) => {
                let file = std::fs::File::create(path).map_err(|e| Error::Io {
                    context: format!("creating {path}"),
                    source: e,
                })?;
                KernelSink::File(std::io::BufWriter::new(file), path.to_string())
            }
        })
    }

    /// Takes one result: writes it to the file, or returns the text for stdout (lines ending
    /// in a newline: the table's header and row, or the JSON line).
    pub fn write(&mut self, result: &KernelResult) -> Result<Option<String>> {
        use std::io::Write as _;
        let line = serde_json::to_string(result).expect("a result serialises");
        Ok(match self {
            KernelSink::Table { header_done } => {
                let header = if *header_done {
                    String::new()
                } else {
                    KernelResult::table_header() + "\n"
                };
                *header_done = true;
                Some(format!("{header}{}\n", result.table_row()))
            }
            KernelSink::Stdout => Some(line + "\n"),
            KernelSink::File(w, path) => {
                writeln!(w, "{line}")
                    .and_then(|()| w.flush())
                    .map_err(|e| Error::Io {
                        context: format!("writing {path}"),
                        source: e,
                    })?;
                None
            }
        })
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
        qk_dtype: ringattn_runtime::qk_dtype_for(s.isa, s.dtype, s.tile).name(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> KernelResult {
        KernelResult {
            r#impl: "ringattn",
            seq: 64,
            heads: 2,
            kv_heads: 2,
            head_dim: 16,
            causal: true,
            dtype: "f32",
            qk_dtype: "f32",
            threads: 1,
            median_s: 0.5,
            gflops: 2.0,
            peak_gflops: 4.0,
            fraction_of_peak: 0.5,
            isa: "portable",
            tile: [16, 16],
            sched: "static",
        }
    }

    #[test]
    fn the_table_has_its_header_once_and_json_lines_are_whole_results() {
        let mut table = KernelSink::open(None).unwrap();
        let first = table.write(&result()).unwrap().unwrap();
        assert_eq!(first.lines().count(), 2, "{first}");
        assert!(first.starts_with(&KernelResult::table_header()));
        assert!(first.ends_with("50.0%\n"), "{first}");
        assert_eq!(table.write(&result()).unwrap().unwrap().lines().count(), 1);
        let json = KernelSink::open(Some("-")).unwrap().write(&result());
        let v: serde_json::Value = serde_json::from_str(&json.unwrap().unwrap()).unwrap();
        assert_eq!(
            (v["seq"].as_u64(), v["impl"].as_str()),
            (Some(64), Some("ringattn"))
        );
    }

    #[test]
    fn a_file_sink_writes_each_line_as_it_comes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.jsonl");
        let mut sink = KernelSink::open(Some(path.to_str().unwrap())).unwrap();
        assert!(sink.write(&result()).unwrap().is_none());
        assert!(sink.write(&result()).unwrap().is_none());
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        assert!(KernelSink::open(Some("/nonexistent/dir/k.jsonl")).is_err());
    }

    #[test]
    fn a_label_names_the_shape() {
        let shape = KernelShape {
            isa: Isa::Portable,
            heads: 1,
            kv_heads: 1,
            threads: 2,
            dim: 64,
            seq: 128,
            causal: true,
            dtype: Dtype::F32,
            tile: TileShape::default(),
            repeats: 1,
        };
        assert_eq!(shape.label(), "N=128 D=64 T=2 causal");
    }
}
