//! `ringattn bench kernel`: maps the arguments to a grid of shapes
//! ([`ringattn::bench::kernel_grid`] measures) and prints a table or JSON lines.

use std::process::ExitCode;

use clap::Args;
use ringattn::bench::kernel::{KernelResult, KernelShape, KernelSink};
use ringattn::bench::kernel_grid::KernelGrid;
use ringattn_runtime::Result;

use crate::args::cli_error;
use crate::args::isa::IsaArg;
use crate::cli::Dtype;
use crate::out::progress_bar;

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
    pub dtype: Vec<Dtype>,
    /// Timed runs per shape (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Micro-kernels: amx, avx512, avx2, portable, or auto (RINGATTN_ISA when set, else the
    /// fastest this CPU has). One this CPU lacks is an error (exit 2).
    #[arg(long, value_enum, default_value_t = IsaArg::Auto)]
    pub isa: IsaArg,
    /// Precision of Q in Q·Kᵀ for the bf16 rows: f32 (Q exact) or bf16 (Q rounded too, Q·Kᵀ
    /// on vdpbf16ps; needs --dtype with bf16, the avx512 micro-kernels and AVX512-BF16, else
    /// exit 2). f32 rows run f32 either way [default: RINGATTN_QK_DTYPE when set, else f32].
    #[arg(long, value_enum)]
    pub qk_dtype: Option<Dtype>,
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

/// The grid of the arguments (threads default to 1 and the allowed cores; each within them).
fn grid(args: &KernelArgs, allowed_cores: usize) -> Result<KernelGrid> {
    crate::args::check_outputs(None, args.json.as_deref())?;
    let isa = args.isa.activate()?;
    let kv = match args.dtype.contains(&Dtype::Bf16) {
        true => Dtype::Bf16,
        false => Dtype::F32,
    };
    ringattn_runtime::activate_qk_dtype(args.qk_dtype, isa, kv)?;
    let threads = if args.threads.is_empty() {
        KernelGrid::default_threads(allowed_cores)
    } else {
        args.threads.clone()
    };
    for &t in threads.iter().filter(|&&t| t > 0) {
        crate::args::check_threads(Some(t), allowed_cores, false)?;
    }
    let grid = KernelGrid {
        isa,
        seqs: args.seq.clone(),
        dims: args.head_dim.clone(),
        threads,
        causal: args.causal.clone(),
        dtypes: args.dtype.clone(),
        heads: args.heads,
        kv_heads: args.kv_heads.unwrap_or(args.heads),
        tile: args.tile.shape(),
        repeats: args.repeats,
    };
    grid.validate().map_err(cli_error)?;
    Ok(grid)
}

/// Runs the grid and prints one line per shape.
pub fn run_kernel_bench(args: &KernelArgs, allowed_cores: usize) -> Result<ExitCode> {
    let grid = grid(args, allowed_cores)?;
    let sched = args.sched.spec()?;
    let bar = progress_bar(
        grid.total_work(),
        "{bar:30} {percent:>3}% {msg} (about {eta} left)",
    );
    let mut sink = KernelSink::open(args.json.as_deref())?;
    let starting = &mut |s: &KernelShape| bar.set_message(s.label());
    let on_result = &mut |shape: &KernelShape, r: &KernelResult| {
        bar.inc(KernelGrid::work(shape));
        if let Some(text) = sink.write(r)? {
            out!("{text}");
        }
        Ok(())
    };
    grid.run(&sched, starting, on_result).map_err(cli_error)?;
    bar.finish_and_clear();
    Ok(ExitCode::SUCCESS)
}
