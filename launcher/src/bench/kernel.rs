//! `ringattn bench kernel`: the single-node kernel's speed on a grid of shapes, one JSON object
//! per line, beside the measured FMA peak of the same threads.
//!
//! The measurement is [`ringattn::bench::kernel`]; this module maps the arguments to shapes
//! and prints.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ringattn::bench::kernel::{measure_kernel, parallel_peak, work, KernelResult, KernelShape};
use ringattn_runtime::{Error, Isa, Result};

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
    /// Kernel tile shape (`--tile-q`, `--tile-k`).
    #[command(flatten)]
    pub tile: crate::args::tile::TileArgs,
    /// Write JSON lines to PATH ("-" = stdout, replacing the table).
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,
    /// Kernel thread scheduling (threads are pinned to the first allowed cores).
    #[command(flatten)]
    pub sched: crate::args::sched::SchedArgs,
}

/// The micro-kernels, KV heads and thread counts of the grid, checked (exit 2 when wrong).
fn checked(args: &KernelArgs, allowed_cores: usize) -> Result<(Isa, usize, Vec<usize>)> {
    crate::args::check_outputs(None, args.json.as_deref())?;
    let isa = args.isa.activate()?;
    let kv_heads = args.kv_heads.unwrap_or(args.heads);
    let threads = if args.threads.is_empty() {
        let mut t = vec![1, allowed_cores.max(1)];
        t.dedup();
        t
    } else {
        args.threads.clone()
    };
    let named: [(&str, &[usize]); 8] = [
        ("--seq", &args.seq),
        ("--head-dim", &args.head_dim),
        ("--threads", &threads),
        ("--heads", std::slice::from_ref(&args.heads)),
        ("--kv-heads", std::slice::from_ref(&kv_heads)),
        ("--repeats", std::slice::from_ref(&args.repeats)),
        ("--tile-q", std::slice::from_ref(&args.tile.tile_q)),
        ("--tile-k", std::slice::from_ref(&args.tile.tile_k)),
    ];
    if let Some((flag, _)) = named.iter().find(|(_, v)| v.contains(&0)) {
        return Err(Error::config(format!("{flag} must be at least 1")));
    }
    for &t in &threads {
        crate::args::check_threads(Some(t), allowed_cores, false)?;
    }
    let most_threads = threads.iter().copied().max().unwrap_or(1);
    for &seq in &args.seq {
        for &dim in &args.head_dim {
            let kernel = (most_threads, args.tile.tile_q, args.tile.tile_k);
            ringattn::bench::check_one_rank_memory(seq, args.heads, kv_heads, dim, kernel)
                .map_err(Error::from)?;
        }
    }
    if !args.heads.is_multiple_of(kv_heads) {
        return Err(Error::config(format!(
            "--heads {} is not a multiple of --kv-heads {kv_heads}",
            args.heads
        )));
    }
    Ok((isa, kv_heads, threads))
}

/// Runs the grid and prints one line per shape.
pub fn run_kernel_bench(args: &KernelArgs, allowed_cores: usize) -> Result<ExitCode> {
    let (isa, kv_heads, threads) = checked(args, allowed_cores)?;
    let shapes: Vec<(usize, usize, usize, bool, DtypeArg)> = threads
        .iter()
        .flat_map(|&t| args.head_dim.iter().map(move |&d| (t, d)))
        .flat_map(|(t, d)| args.seq.iter().map(move |&n| (t, d, n)))
        .flat_map(|(t, d, n)| args.causal.iter().map(move |&c| (t, d, n, c)))
        .flat_map(|(t, d, n, c)| args.dtype.iter().map(move |&dt| (t, d, n, c, dt)))
        .collect();
    let tile = args.tile.shape();
    let sched = args.sched.spec()?;
    let bar = progress_bar(&shapes, args.repeats);
    let mut sink = Sink::open(args.json.as_deref())?;
    let mut peaks = std::collections::HashMap::new();
    for &(t, d, n, causal, dtype) in &shapes {
        bar.set_message(format!(
            "N={n} D={d} T={t}{}",
            if causal { " causal" } else { "" }
        ));
        let peak = *peaks.entry(t).or_insert_with(|| parallel_peak(isa, t));
        let shape = KernelShape {
            isa,
            heads: args.heads,
            kv_heads,
            threads: t,
            dim: d,
            seq: n,
            causal,
            dtype: dtype.dtype(),
            tile,
            repeats: args.repeats,
        };
        let result = measure_kernel(&shape, &sched, peak)?;
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
                    outln!(
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
                outln!("{}", row());
            }
            Sink::Stdout => outln!("{line}"),
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
