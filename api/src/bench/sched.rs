//! The same attention kernel under the hybrid, static and rayon schedulers (`ringattn bench
//! sched`), calls interleaved (hybrid, static, rayon, hybrid, ...) so that machine noise falls
//! on all three alike, against the ideal time of a perfect split.
//!
//! `ideal_s` = calls × 1 / Σ_i (1 / T_i), with T_i one call's time on core i alone (slow factor
//! and any neighbour included): total work over the sum of the cores' speeds.

use std::time::Instant;

use ringattn_runtime::sched::parse_slow_cores;
use ringattn_runtime::{
    attend, AttnState, Error, Executor, KvBlock, Mask, Positions, QShard, Result, SchedConfig,
    SchedKind, Scheduler, Synthetic, TileShape,
};
use serde::Serialize;

/// What to measure.
#[derive(Clone, Debug)]
pub struct SchedBenchSpec {
    /// Kernel calls per scheduler.
    pub calls: usize,
    /// Sequence length of each call (one attention of N queries against N keys).
    pub seq: usize,
    /// Query (and KV) heads.
    pub heads: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Causal mask.
    pub causal: bool,
    /// Kernel threads, one per core (the first allowed ones).
    pub threads: usize,
    /// TESTING AID: `CPU:FACTOR,...`, the thread on CPU does FACTOR× the work per item.
    pub slow_cores: Option<String>,
    /// Weight of the old ratio per hybrid update.
    pub alpha: f64,
}

impl SchedBenchSpec {
    /// Units of progress [`sched_bench`] reports: one per single-core timing and per call.
    pub fn units(&self) -> usize {
        self.threads + 3 * self.calls
    }

    /// Every count at least 1, one core per thread.
    fn check(&self, cores: usize) -> Result<()> {
        if [
            self.calls,
            self.seq,
            self.heads,
            self.head_dim,
            self.threads,
        ]
        .contains(&0)
            || cores != self.threads
        {
            return Err(Error::config(
            "calls, seq, heads, head_dim and threads must be at least 1, with one core per thread",
        ));
        }
        Ok(())
    }
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

/// Runs the benchmark on `cores` (one thread each, `cores.len() == spec.threads`); `progress`
/// is called after every timed call with what is being measured.
pub fn sched_bench(
    args: &SchedBenchSpec,
    cores: Vec<usize>,
    progress: &mut dyn FnMut(&str),
) -> Result<SchedBenchResult> {
    args.check(cores.len())?;
    let slow = match &args.slow_cores {
        Some(s) => parse_slow_cores(s)?,
        None => Vec::new(),
    };
    let make = |kind, cores: Vec<usize>| {
        Scheduler::new(SchedConfig {
            kind,
            threads: cores.len(),
            cores,
            slow: slow.clone(),
            alpha: args.alpha,
            cache: None,
        })
    };
    let inputs = Inputs::new(args)?;
    let mut single_core_s = Vec::new();
    for &cpu in &cores {
        let one = make(SchedKind::Static, vec![cpu])?;
        single_core_s.push(inputs.call(&one));
        progress("single-core timings");
    }
    let ideal_call = 1.0 / single_core_s.iter().map(|t| 1.0 / t).sum::<f64>();
    let scheds = [
        make(SchedKind::Hybrid, cores.clone())?,
        make(SchedKind::Static, cores.clone())?,
        make(SchedKind::Rayon, cores.clone())?,
    ];
    let mut totals = [0.0f64; 3];
    let mut hybrid_call_s = Vec::with_capacity(args.calls);
    for call in 0..args.calls {
        let msg = format!("call {}/{}", call + 1, args.calls);
        for (i, s) in scheds.iter().enumerate() {
            let t = inputs.call(s);
            totals[i] += t;
            if i == 0 {
                hybrid_call_s.push(t);
            }
            progress(&msg);
        }
    }
    let last = scheds[0].last_call();
    let busy = &last.busy_s;
    let spread = busy.iter().cloned().fold(0.0, f64::max)
        / busy.iter().cloned().fold(f64::INFINITY, f64::min);
    let ideal_s = ideal_call * args.calls as f64;
    Ok(SchedBenchResult {
        seq: args.seq,
        heads: args.heads,
        head_dim: args.head_dim,
        causal: args.causal,
        threads: args.threads,
        cores,
        calls: args.calls,
        slow_cores: args.slow_cores.clone(),
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
    })
}

/// The tensors of one call, made once.
struct Inputs {
    q: QShard,
    kv: KvBlock,
    mask: Mask,
}

impl Inputs {
    fn new(args: &SchedBenchSpec) -> Result<Inputs> {
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
            self.mask,
            TileShape::default(),
            &mut state,
            sched,
        );
        debug_assert_eq!(sched.threads(), sched.last_call().busy_s.len());
        start.elapsed().as_secs_f64()
    }
}
