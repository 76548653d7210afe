//! `ringattn bench sched`: the same attention kernel under the hybrid, static and rayon
//! schedulers, calls interleaved (hybrid, static, rayon, hybrid, ...) so that machine noise
//! falls on all three alike, against the ideal time of a perfect split.
//!
//! `ideal_s` = calls × 1 / Σ_i (1 / T_i), with T_i one call's time on core i alone (slow factor
//! and any neighbour included): total work over the sum of the cores' speeds.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ringattn_runtime::{
    attend, AttnState, Error, Executor, KvBlock, Mask, Positions, QShard, Result, SchedConfig,
    SchedKind, Scheduler, Synthetic, TileShape,
};
use serde::Serialize;

use ringattn::io::write_json;

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

/// The result: one JSON object.
#[derive(Debug, Serialize)]
pub struct SchedBenchResult {
    /// Sequence length.
    pub seq: usize,
    /// Heads.
    pub heads: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Causal mask.
    pub causal: bool,
    /// Kernel threads.
    pub threads: usize,
    /// CPUs the threads were pinned to.
    pub cores: Vec<usize>,
    /// Calls per scheduler.
    pub calls: usize,
    /// `--slow-cores` as given.
    pub slow_cores: Option<String>,
    /// CPU of the busy neighbour (`--busy-neighbour`), if one ran.
    pub busy_neighbour: Option<usize>,
    /// rayon_s / hybrid_s (≥ 1: hybrid at least as fast as work stealing).
    pub rayon_over_hybrid: f64,
    /// Total seconds of the hybrid scheduler's calls.
    pub hybrid_s: f64,
    /// Total seconds under the static split.
    pub static_s: f64,
    /// Total seconds under rayon work stealing.
    pub rayon_s: f64,
    /// Total work over the sum of the cores' speeds (from single-core timings).
    pub ideal_s: f64,
    /// Single-core seconds of one call, per core.
    pub single_core_s: Vec<f64>,
    /// hybrid_s / ideal_s.
    pub hybrid_over_ideal: f64,
    /// static_s / hybrid_s.
    pub static_over_hybrid: f64,
    /// The hybrid ratios of the attention class at the end, per thread (mean 1).
    pub final_ratios: Vec<f64>,
    /// Busy-time spread (max / min over threads) of the hybrid's last call.
    pub final_busy_spread: f64,
    /// Seconds of each hybrid call, in order (shows the learning).
    pub hybrid_call_s: Vec<f64>,
}

/// Runs the benchmark.
pub fn run_sched_bench(args: &SchedBenchArgs, allowed_cores: usize) -> Result<ExitCode> {
    crate::args::check_outputs(None, args.json.as_deref())?;
    if !(0.0..1.0).contains(&args.sched_alpha) {
        return Err(Error::config(format!(
            "--sched-alpha must be in [0, 1), got {}",
            args.sched_alpha
        )));
    }
    if let Some(cpu) = args.spin_on {
        super::neighbour::spin(cpu);
    }
    let threads = args.threads.unwrap_or(allowed_cores.max(1));
    if [args.calls, args.seq, args.heads, args.head_dim, threads].contains(&0) {
        return Err(Error::config(
            "--calls, --seq, --heads, --head-dim and --threads must be at least 1",
        ));
    }
    let slow = match &args.slow_cores {
        Some(s) => crate::args::sched::parse_bounded_slow_cores(s)?,
        None => Vec::new(),
    };
    let cores = ringattn::bench::kernel::pinned_cores(threads);
    if cores.is_empty() {
        return Err(Error::config(format!(
            "--threads {threads}: only {allowed_cores} cores are allowed; bench sched pins one thread per core"
        )));
    }
    // Started before the single-core timings, so the ideal time includes it; stopped on drop.
    let neighbour = super::neighbour::Neighbour::from_arg(args.busy_neighbour.as_deref(), &cores)?;
    let make = |kind, cores: Vec<usize>| {
        Scheduler::new(SchedConfig {
            kind,
            threads: cores.len(),
            cores,
            slow: slow.clone(),
            alpha: args.sched_alpha,
            cache: None,
        })
    };
    super::check_one_rank_memory(
        args.seq,
        args.heads,
        args.heads,
        args.head_dim,
        (threads, TileShape::default().q, TileShape::default().k),
    )?;
    let inputs = Inputs::new(args)?;
    let bar = bar(threads + 3 * args.calls);
    bar.set_message("single-core timings");
    let mut single_core_s = Vec::new();
    for &cpu in &cores {
        let one = make(SchedKind::Static, vec![cpu])?;
        single_core_s.push(inputs.call(&one));
        bar.inc(1);
    }
    let ideal_call = 1.0 / single_core_s.iter().map(|t| 1.0 / t).sum::<f64>();
    let scheds = [
        make(SchedKind::Hybrid, cores.clone())?,
        make(SchedKind::Static, cores.clone())?,
        make(SchedKind::Rayon, cores.clone())?,
    ];
    let (totals, hybrid_call_s) = interleaved(&scheds, args.calls, &inputs, &bar);
    bar.finish_and_clear();
    let last = scheds[0].last_call();
    let busy = &last.busy_s;
    let spread = busy.iter().cloned().fold(0.0, f64::max)
        / busy.iter().cloned().fold(f64::INFINITY, f64::min);
    let ideal_s = ideal_call * args.calls as f64;
    let result = SchedBenchResult {
        seq: args.seq,
        heads: args.heads,
        head_dim: args.head_dim,
        causal: args.causal,
        threads,
        cores,
        calls: args.calls,
        slow_cores: args.slow_cores.clone(),
        busy_neighbour: neighbour.as_ref().map(|n| n.cpu),
        rayon_over_hybrid: totals[2] / totals[0],
        hybrid_s: totals[0],
        static_s: totals[1],
        rayon_s: totals[2],
        ideal_s,
        single_core_s,
        hybrid_over_ideal: totals[0] / ideal_s,
        static_over_hybrid: totals[1] / totals[0],
        final_ratios: scheds[0].ratios(&last.class),
        final_busy_spread: spread,
        hybrid_call_s,
    };
    match args.json.as_deref() {
        Some(path) => write_json(path, &result)?,
        None => print_summary(&result),
    }
    Ok(ExitCode::SUCCESS)
}

/// `calls` rounds of one call per scheduler (hybrid, static, rayon, hybrid, ...): the total
/// seconds per scheduler and each hybrid call's seconds.
fn interleaved(
    scheds: &[Scheduler; 3],
    calls: usize,
    inputs: &Inputs,
    bar: &ProgressBar,
) -> ([f64; 3], Vec<f64>) {
    let mut totals = [0.0f64; 3];
    let mut hybrid_call_s = Vec::with_capacity(calls);
    for call in 0..calls {
        bar.set_message(format!("call {}/{calls}", call + 1));
        for (i, s) in scheds.iter().enumerate() {
            let t = inputs.call(s);
            totals[i] += t;
            if i == 0 {
                hybrid_call_s.push(t);
            }
            bar.inc(1);
        }
    }
    (totals, hybrid_call_s)
}

/// The tensors of one call, made once.
struct Inputs {
    q: QShard,
    kv: KvBlock,
    mask: Mask,
}

impl Inputs {
    fn new(args: &SchedBenchArgs) -> Result<Inputs> {
        let source = Synthetic { seed: 1 };
        let positions = Positions::contiguous(0, args.seq);
        Ok(Inputs {
            q: QShard::from_source(&source, args.heads, args.head_dim, positions.clone())?,
            kv: KvBlock::from_source(&source, 0, args.heads, args.head_dim, positions)?,
            mask: if args.causal {
                Mask::Causal
            } else {
                Mask::None
            },
        })
    }

    /// Seconds of one attention of the whole sequence under `sched`.
    fn call(&self, sched: &Scheduler) -> f64 {
        let mut state = AttnState::new(self.q.heads, self.q.rows(), self.q.dim);
        let start = Instant::now();
        attend(
            &self.q,
            &self.kv,
            self.mask.clone(),
            TileShape::default(),
            &mut state,
            sched,
        );
        debug_assert_eq!(sched.threads(), sched.last_call().busy_s.len());
        start.elapsed().as_secs_f64()
    }
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
    outln!(
        "N={} H={} D={}{} threads={} cores={:?} calls={} slow={} busy neighbour={}",
        r.seq,
        r.heads,
        r.head_dim,
        if r.causal { " causal" } else { "" },
        r.threads,
        r.cores,
        r.calls,
        r.slow_cores.as_deref().unwrap_or("none"),
        r.busy_neighbour
            .map_or("none".to_string(), |c| format!("cpu {c}"))
    );
    outln!(
        "  hybrid  {:>9.3} s  ({:.3}× ideal)",
        r.hybrid_s,
        r.hybrid_over_ideal
    );
    outln!(
        "  static  {:>9.3} s  ({:.3}× hybrid)",
        r.static_s,
        r.static_over_hybrid
    );
    outln!(
        "  rayon   {:>9.3} s  ({:.3}× hybrid)",
        r.rayon_s,
        r.rayon_over_hybrid
    );
    outln!(
        "  ideal   {:>9.3} s  (single-core s per call: {:?})",
        r.ideal_s,
        r.single_core_s
    );
    outln!(
        "  hybrid ratios {:?}, last busy spread {:.3}",
        r.final_ratios,
        r.final_busy_spread
    );
}
