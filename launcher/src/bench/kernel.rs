//! `ringattn bench kernel`: the single-node kernel's speed on a grid of shapes, one JSON object
//! per line, beside the measured FMA peak of the same threads.
//!
//! Each shape runs one `attend` of the whole sequence (every query against every key, under the
//! mask) on a pool of `threads` threads, `--repeats` times; the median is reported. FLOPs are
//! counted as everywhere in ringattn: 4 · H · D · (pairs the mask allows). The same fields are
//! printed by `benches/compare/sdpa.py` for PyTorch, so the two can be joined.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ringattn_runtime::kernel::measure_peak_gflops;
use ringattn_runtime::{
    attend_with, AttnState, Error, Isa, KvBlock, Mask, Positions, QShard, Result, Synthetic,
    TileShape,
};
use serde::Serialize;

use crate::args::isa::IsaArg;
use crate::cli::DtypeArg;

/// Options of `ringattn bench kernel`.
#[derive(Debug, Args)]
#[command(after_help = "Example (the table of BENCHMARKS.md):\n  \
    ringattn bench kernel --seq 4096,8192,16384,32768 --head-dim 64,128 --threads 1,2 --json -\n\
    Compare with PyTorch on the same shapes: python3 benches/compare/sdpa.py")]
pub struct KernelArgs {
    /// Sequence lengths (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "4096,8192")]
    pub seq: Vec<usize>,
    /// Head dimensions (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "64,128")]
    pub head_dim: Vec<usize>,
    /// Thread counts (comma-separated) [default: 1 and the allowed cores].
    #[arg(long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Masks to run (comma-separated `false`/`true` for non-causal/causal); a bare `--causal`
    /// runs the causal mask only, as in the other commands.
    #[arg(long, value_delimiter = ',', default_value = "false,true", num_args = 0..=1, default_missing_value = "true")]
    pub causal: Vec<bool>,
    /// Query heads.
    #[arg(long, default_value_t = 8)]
    pub heads: usize,
    /// KV heads [default: --heads].
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// K/V storage types (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "f32")]
    pub dtype: Vec<DtypeArg>,
    /// Timed runs per shape (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Micro-kernels: amx, avx512, avx2, portable, or auto (RINGATTN_ISA when set, else the
    /// fastest this CPU has). One this CPU lacks is an error (exit 2).
    #[arg(long, value_enum, default_value_t = IsaArg::Auto)]
    pub isa: IsaArg,
    /// Query rows per kernel tile.
    #[arg(long, default_value_t = ringattn_runtime::TileShape::default().q)]
    pub tile_q: usize,
    /// Key rows per kernel tile.
    #[arg(long, default_value_t = ringattn_runtime::TileShape::default().k)]
    pub tile_k: usize,
    /// Write JSON lines to PATH ("-" = stdout, replacing the table).
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,
    /// Kernel thread scheduling (threads are pinned to the first allowed cores).
    #[command(flatten)]
    pub sched: crate::args::sched::SchedArgs,
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

/// Runs the grid and prints one line per shape.
pub fn run_kernel_bench(args: &KernelArgs, allowed_cores: usize) -> Result<ExitCode> {
    let isa = args.isa.activate()?;
    let kv_heads = args.kv_heads.unwrap_or(args.heads);
    let threads = if args.threads.is_empty() {
        let mut t = vec![1, allowed_cores.max(1)];
        t.dedup();
        t
    } else {
        args.threads.clone()
    };
    let sizes = args
        .seq
        .iter()
        .chain(&args.head_dim)
        .chain(&threads)
        .chain([
            &args.heads,
            &kv_heads,
            &args.repeats,
            &args.tile_q,
            &args.tile_k,
        ]);
    if sizes.copied().any(|x| x == 0) {
        return Err(Error::config(
            "every size, count and thread number must be at least 1",
        ));
    }
    if !args.heads.is_multiple_of(kv_heads) {
        return Err(Error::config(format!(
            "--heads {} is not a multiple of --kv-heads {kv_heads}",
            args.heads
        )));
    }
    let shapes: Vec<(usize, usize, usize, bool, DtypeArg)> = threads
        .iter()
        .flat_map(|&t| args.head_dim.iter().map(move |&d| (t, d)))
        .flat_map(|(t, d)| args.seq.iter().map(move |&n| (t, d, n)))
        .flat_map(|(t, d, n)| args.causal.iter().map(move |&c| (t, d, n, c)))
        .flat_map(|(t, d, n, c)| args.dtype.iter().map(move |&dt| (t, d, n, c, dt)))
        .collect();
    let bar = progress_bar(&shapes, args.repeats);
    let mut sink = Sink::open(args.json.as_deref())?;
    let mut peaks = std::collections::HashMap::new();
    for &(t, d, n, causal, dtype) in &shapes {
        bar.set_message(format!(
            "N={n} D={d} T={t}{}",
            if causal { " causal" } else { "" }
        ));
        let peak = *peaks.entry(t).or_insert_with(|| parallel_peak(isa, t));
        let result = measure(isa, args, kv_heads, (t, d, n, causal, dtype), peak)?;
        bar.inc(work(n, d, causal) * args.repeats as u64);
        sink.write(&result, || {
            format!(
                "{:>6} {:>4} {:>3} {:>6} {:>5} {:>10.4} {:>8.1} {:>8.1} {:>6.1}%",
                result.seq,
                result.head_dim,
                result.threads,
                if result.causal { "causal" } else { "full" },
                result.dtype,
                result.median_s,
                result.gflops,
                result.peak_gflops,
                100.0 * result.fraction_of_peak
            )
        })?;
    }
    bar.finish_and_clear();
    Ok(ExitCode::SUCCESS)
}

/// The FMA peak of `threads` threads measuring at the same time (GFLOP/s, summed).
fn parallel_peak(isa: Isa, threads: usize) -> f64 {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| s.spawn(move || measure_peak_gflops(isa, Duration::from_millis(300))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    })
}

fn measure(
    isa: Isa,
    args: &KernelArgs,
    kv_heads: usize,
    (threads, dim, seq, causal, dtype): (usize, usize, usize, bool, DtypeArg),
    peak: f64,
) -> Result<KernelResult> {
    let source = Synthetic { seed: 1 };
    let positions = Positions::contiguous(0, seq);
    let q = QShard::from_source(&source, args.heads, dim, positions.clone())?;
    let kv = KvBlock::from_source_as(&source, 0, kv_heads, dim, positions, dtype.dtype())?;
    let pool = args.sched.spec()?.build(threads, pinned_cores(threads))?;
    let mask = if causal { Mask::Causal } else { Mask::None };
    let tile = TileShape {
        q: args.tile_q,
        k: args.tile_k,
    };
    let mut times: Vec<f64> = (0..args.repeats)
        .map(|_| {
            let mut state = AttnState::new(args.heads, seq, dim);
            let start = Instant::now();
            attend_with(isa, &q, &kv, mask, tile, &mut state, &pool);
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median_s = times[times.len() / 2];
    let flops = 4.0 * (args.heads * dim) as f64 * mask.allowed_pairs(seq) as f64;
    let gflops = flops / median_s / 1e9;
    Ok(KernelResult {
        r#impl: "ringattn",
        seq,
        heads: args.heads,
        kv_heads,
        head_dim: dim,
        causal,
        dtype: dtype.dtype().name(),
        threads,
        median_s,
        gflops,
        peak_gflops: peak,
        fraction_of_peak: gflops / peak,
        isa: isa.name(),
        tile: [tile.q, tile.k],
        sched: pool.kind().name(),
    })
}

/// The first `threads` allowed CPUs, or none (unpinned) when there are fewer.
pub fn pinned_cores(threads: usize) -> Vec<usize> {
    let cpus = ringattn::cores::allowed_cpus();
    if threads <= cpus.len() {
        cpus[..threads].to_vec()
    } else {
        Vec::new()
    }
}

/// Relative work of a shape, for the progress bar's time estimate.
fn work(seq: usize, dim: usize, causal: bool) -> u64 {
    let pairs = if causal {
        seq as u64 * (seq as u64 + 1) / 2
    } else {
        (seq * seq) as u64
    };
    (pairs * dim as u64 / 1_000_000).max(1)
}

fn progress_bar(shapes: &[(usize, usize, usize, bool, DtypeArg)], repeats: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let total: u64 = shapes
        .iter()
        .map(|&(_, d, n, c, _)| work(n, d, c) * repeats as u64)
        .sum();
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:30} {percent:>3}% {msg} (about {eta} left)")
    {
        bar.set_style(style);
    }
    bar
}

/// Where results go: a table on stdout, JSON lines on stdout, or JSON lines in a file (written
/// as they come, so an interrupted run keeps what it measured).
enum Sink {
    Table { header_done: bool },
    Stdout,
    File(std::io::BufWriter<std::fs::File>, String),
}

impl Sink {
    fn open(json: Option<&str>) -> Result<Sink> {
        Ok(match json {
            None => Sink::Table { header_done: false },
            Some("-") => Sink::Stdout,
            Some(path) => {
                let file = std::fs::File::create(path).map_err(|e| Error::Io {
                    context: format!("creating {path}"),
                    source: e,
                })?;
                Sink::File(std::io::BufWriter::new(file), path.to_string())
            }
        })
    }

    fn write(&mut self, result: &KernelResult, row: impl FnOnce() -> String) -> Result<()> {
        use std::io::Write;
        let line = serde_json::to_string(result).expect("a result serialises");
        match self {
            Sink::Table { header_done } => {
                if !*header_done {
                    println!(
                        "{:>6} {:>4} {:>3} {:>6} {:>5} {:>10} {:>8} {:>8} {:>7}",
                        "seq",
                        "d",
                        "thr",
                        "mask",
                        "dtype",
                        "median_s",
                        "GFLOP/s",
                        "peak",
                        "of peak"
                    );
                    *header_done = true;
                }
                println!("{}", row());
            }
            Sink::Stdout => println!("{line}"),
            Sink::File(w, path) => writeln!(w, "{line}")
                .and_then(|()| w.flush())
                .map_err(|e| Error::Io {
                    context: format!("writing {path}"),
                    source: e,
                })?,
        }
        Ok(())
    }
}
