//! `ringattn bench sched`: the schedulers compared on one kernel call
//! ([`ringattn::bench::sched`]); this module maps the arguments and prints.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ringattn::bench::sched::{sched_bench, SchedBenchResult, SchedBenchSpec};
use ringattn_runtime::sched::parse_slow_cores;
use ringattn_runtime::{Error, Result};

use ringattn::io::write_json;

/// Options of `ringattn bench sched`.
#[derive(Debug, Args)]
#[command(after_help = "Examples (BENCHMARKS.md):\n  \
    ringattn bench sched --slow-cores 1:2 --calls 50 --json -\n  \
    taskset -c 1 sh -c 'while :; do :; done' & ringattn bench sched --calls 50; kill %1\n  \
    ringattn bench sched --calls 50            (idle machine: hybrid vs static overhead)")]
pub struct SchedBenchArgs {
    /// Kernel calls per scheduler.
    #[arg(long, default_value_t = 20)]
    pub calls: usize,
    /// Sequence length of each call (one attention of N queries against N keys).
    #[arg(long, default_value_t = 8192)]
    pub seq: usize,
    /// Query (and KV) heads.
    #[arg(long, default_value_t = 8)]
    pub heads: usize,
    /// Head dimension.
    #[arg(long, default_value_t = 128)]
    pub head_dim: usize,
    /// Causal mask.
    #[arg(long)]
    pub causal: bool,
    /// Kernel threads, pinned to the first allowed cores [default: all allowed cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// TESTING AID: the thread on CPU does FACTOR× the work per item (e.g. `1:2`).
    #[arg(long, value_name = "CPU:FACTOR,...")]
    pub slow_cores: Option<String>,
    /// Weight of the old ratio per hybrid update.
    #[arg(long, default_value_t = ringattn_runtime::sched::ratios::DEFAULT_ALPHA)]
    pub sched_alpha: f64,
    /// Write the JSON result to PATH ("-" = stdout, replacing the summary).
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,
}

/// Runs the benchmark.
pub fn run_sched_bench(args: &SchedBenchArgs, allowed_cores: usize) -> Result<ExitCode> {
    let threads = args.threads.unwrap_or(allowed_cores.max(1));
    if [args.calls, args.seq, args.heads, args.head_dim, threads].contains(&0) {
        return Err(Error::config(
            "--calls, --seq, --heads, --head-dim and --threads must be at least 1",
        ));
    }
    if let Some(s) = &args.slow_cores {
        parse_slow_cores(s)?;
    }
    let cores = ringattn::bench::kernel::pinned_cores(threads);
    if cores.is_empty() {
        return Err(Error::config(format!(
            "--threads {threads}: only {allowed_cores} cores are allowed; bench sched pins one thread per core"
        )));
    }
    let spec = SchedBenchSpec {
        calls: args.calls,
        seq: args.seq,
        heads: args.heads,
        head_dim: args.head_dim,
        causal: args.causal,
        threads,
        slow_cores: args.slow_cores.clone(),
        alpha: args.sched_alpha,
    };
    let bar = bar(spec.units());
    let result = sched_bench(&spec, cores, &mut |msg| {
        bar.set_message(msg.to_string());
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    match args.json.as_deref() {
        Some(path) => write_json(path, &result)?,
        None => print_summary(&result),
    }
    Ok(ExitCode::SUCCESS)
}

fn bar(len: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} (about {eta} left)")
    {
        bar.set_style(style);
    }
    bar
}

fn print_summary(r: &SchedBenchResult) {
    println!(
        "N={} H={} D={}{} threads={} cores={:?} calls={} slow={}",
        r.seq,
        r.heads,
        r.head_dim,
        if r.causal { " causal" } else { "" },
        r.threads,
        r.cores,
        r.calls,
        r.slow_cores.as_deref().unwrap_or("none")
    );
    println!(
        "  hybrid  {:>9.3} s  ({:.3}× ideal)",
        r.hybrid_s, r.hybrid_over_ideal
    );
    println!(
        "  static  {:>9.3} s  ({:.3}× hybrid)",
        r.static_s, r.static_over_hybrid
    );
    println!("  rayon   {:>9.3} s", r.rayon_s);
    println!(
        "  ideal   {:>9.3} s  (single-core s per call: {:?})",
        r.ideal_s, r.single_core_s
    );
    println!(
        "  hybrid ratios {:?}, last busy spread {:.3}",
        r.final_ratios, r.final_busy_spread
    );
}
