//! `ringattn bench sched`: the kernel under the hybrid, static and rayon schedulers against
//! the ideal split ([`ringattn::bench::sched`] measures; this maps options and prints).

use std::process::ExitCode;

use clap::Args;
use ringattn::bench::neighbour::{spin, Neighbour};
use ringattn::bench::sched::SchedBenchSpec;
use ringattn::io::write_json;
use ringattn_runtime::{Error, Result};

use crate::args::cli_error;
use crate::args::sched::parse_bounded_slow_cores;
use crate::out::progress_bar;

/// Options of `ringattn bench sched`.
#[derive(Debug, Args)]
#[command(after_help = "Examples (BENCHMARKS.md):\n  \
    ringattn bench sched --slow-cores 1:2 --calls 50 --json -\n  \
    ringattn bench sched --busy-neighbour --calls 50   (a spinning process on the last core)\n  \
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
    /// Run a spinning process of the bench's own (its own session, so autogroup scheduling
    /// treats it as another job) on CPU [default: the last pinned core] for the whole bench.
    #[arg(long, value_name = "CPU", num_args = 0..=1, default_missing_value = "last")]
    pub busy_neighbour: Option<String>,
    /// Internal: be the busy neighbour (pin to CPU and spin until killed).
    #[arg(long, value_name = "CPU", hide = true)]
    pub spin_on: Option<usize>,
    /// Weight of the old ratio per hybrid update.
    #[arg(long, default_value_t = ringattn_runtime::sched::ratios::DEFAULT_ALPHA)]
    pub sched_alpha: f64,
    /// Write the JSON result to PATH ("-" = stdout, replacing the summary).
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,
}

/// Runs the benchmark.
pub fn run_sched_bench(args: &SchedBenchArgs, allowed_cores: usize) -> Result<ExitCode> {
    crate::args::check_outputs(None, args.json.as_deref())?;
    if let Some(cpu) = args.spin_on {
        spin(cpu);
    }
    let threads = args.threads.unwrap_or(allowed_cores.max(1));
    let slow = args.slow_cores.as_deref().map(parse_bounded_slow_cores);
    let slow = slow.transpose()?.unwrap_or_default();
    let cores = ringattn::bench::kernel::pinned_cores(threads);
    if cores.is_empty() && threads > 0 {
        return Err(Error::config(format!(
            "--threads {threads}: only {allowed_cores} cores are allowed; bench sched pins one thread per core"
        )));
    }
    let mut spec = SchedBenchSpec {
        calls: args.calls,
        seq: args.seq,
        heads: args.heads,
        head_dim: args.head_dim,
        causal: args.causal,
        cores,
        slow,
        slow_text: args.slow_cores.clone(),
        alpha: args.sched_alpha,
        busy_neighbour: None,
    };
    spec.validate().map_err(cli_error)?;
    // Started before the single-core timings, so the ideal time includes it; stopped on drop.
    let neighbour = neighbour(args.busy_neighbour.as_deref(), &spec.cores)?;
    spec.busy_neighbour = neighbour.as_ref().map(|n| n.cpu);
    let bar = progress_bar(
        spec.steps() as u64,
        "{bar:30} {pos}/{len} {msg} (about {eta} left)",
    );
    let result = spec
        .run(&mut |message| {
            bar.set_message(message.to_string());
            bar.inc(1);
        })
        .map_err(cli_error)?;
    bar.finish_and_clear();
    match args.json.as_deref() {
        Some(path) => write_json(path, &result)?,
        None => out!("{}", result.summary()),
    }
    Ok(ExitCode::SUCCESS)
}

/// The neighbour `--busy-neighbour` asks for: none without the flag, on the last of `cores`
/// for `last` (the flag without a value), else on the CPU given; it is this binary run as
/// `bench sched --spin-on CPU`.
fn neighbour(arg: Option<&str>, cores: &[usize]) -> Result<Option<Neighbour>> {
    let cpu = match arg {
        None => return Ok(None),
        Some("last") => *cores
            .last()
            .ok_or_else(|| Error::config("--busy-neighbour: no core to run it on"))?,
        Some(cpu) => cpu.parse::<usize>().map_err(|_| {
            Error::config(format!(
                "--busy-neighbour: expected a CPU number, got '{cpu}'"
            ))
        })?,
    };
    Neighbour::start_self(cpu).map(Some)
}
