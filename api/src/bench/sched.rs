//! The scheduler benchmark: the same attention kernel under the hybrid, static and rayon
//! schedulers, calls interleaved (hybrid, static, rayon, hybrid, ...) so that machine noise
//! falls on all three alike, against the ideal time of a perfect split.
//!
//! `ideal_s` = calls × 1 / Σ_i (1 / T_i), with T_i one call's time on core i alone (slow factor
//! and any neighbour included): total work over the sum of the cores' speeds.

use std::fmt::Write as _;
use std::time::Instant;

use ringattn_runtime::sched::SlowCore;
use ringattn_runtime::{
    attend, AttnState, Executor, KvBlock, Mask, Positions, QShard, Result, SchedConfig, SchedKind,
    Scheduler, Synthetic, TileShape,
};
use serde::Serialize;

use crate::error::{nonzero, ApiError};

/// What one scheduler benchmark measures.
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
    /// The CPUs of the kernel threads, one thread pinned to each.
    pub cores: Vec<usize>,
    /// Cores slowed down on purpose (a testing aid), and how they were written.
    pub slow: Vec<SlowCore>,
    /// `slow` as the user wrote it, for the result.
    pub slow_text: Option<String>,
    /// Weight of the old ratio per hybrid update, in [0, 1).
    pub alpha: f64,
    /// CPU of a busy neighbour running meanwhile (recorded in the result), if any.
    pub busy_neighbour: Option<usize>,
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
    /// The slowed cores as given (`CPU:FACTOR,...`).
    pub slow_cores: Option<String>,
    /// CPU of the busy neighbour, if one ran.
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

impl SchedBenchSpec {
    /// Checks the sizes (fields `calls`, `seq`, `heads`, `head_dim`, `threads`) and `alpha`
    /// (field `sched_alpha`).
    pub fn validate(&self) -> std::result::Result<(), ApiError> {
        if !(0.0..1.0).contains(&self.alpha) {
            return Err(ApiError::invalid(
                "sched_alpha",
                self.alpha.to_string(),
                "must be in [0, 1)",
            ));
        }
        nonzero(&[
            ("calls", self.calls),
            ("seq", self.seq),
            ("heads", self.heads),
            ("head_dim", self.head_dim),
            ("threads", self.cores.len()),
        ])?;
        super::check_one_rank_memory(
            self.seq,
            self.heads,
            self.heads,
            self.head_dim,
            (
                self.cores.len(),
                TileShape::default().q,
                TileShape::default().k,
            ),
        )
    }

    /// Units of progress [`SchedBenchSpec::run`] reports: one per single-core timing and one
    /// per call.
    pub fn steps(&self) -> usize {
        self.cores.len() + 3 * self.calls
    }

    fn scheduler(&self, kind: SchedKind, cores: Vec<usize>) -> Result<Scheduler> {
        Scheduler::new(SchedConfig {
            kind,
            threads: cores.len(),
            cores,
            slow: self.slow.clone(),
            alpha: self.alpha,
            cache: None,
        })
    }

    /// Runs the benchmark (validated first); `tick` hears each unit of progress done, with
    /// what is being timed.
    pub fn run(
        &self,
        tick: &mut dyn FnMut(&str),
    ) -> std::result::Result<SchedBenchResult, ApiError> {
        self.validate()?;
        let inputs = Inputs::new(self)?;
        let mut single_core_s = Vec::new();
        for &cpu in &self.cores {
            let one = self.scheduler(SchedKind::Static, vec![cpu])?;
            single_core_s.push(inputs.call(&one));
            tick("single-core timings");
        }
        let ideal_call = 1.0 / single_core_s.iter().map(|t| 1.0 / t).sum::<f64>();
        let scheds = [
            self.scheduler(SchedKind::Hybrid, self.cores.clone())?,
            self.scheduler(SchedKind::Static, self.cores.clone())?,
            self.scheduler(SchedKind::Rayon, self.cores.clone())?,
        ];
        let (totals, hybrid_call_s) = interleaved(&scheds, self.calls, &inputs, tick);
        let last = scheds[0].last_call();
        let busy = &last.busy_s;
        let spread = busy.iter().cloned().fold(0.0, f64::max)
            / busy.iter().cloned().fold(f64::INFINITY, f64::min);
        let ideal_s = ideal_call * self.calls as f64;
        Ok(SchedBenchResult {
            seq: self.seq,
            heads: self.heads,
            head_dim: self.head_dim,
            causal: self.causal,
            threads: self.cores.len(),
            cores: self.cores.clone(),
            calls: self.calls,
            slow_cores: self.slow_text.clone(),
            busy_neighbour: self.busy_neighbour,
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
        })
    }
}

/// `calls` rounds of one call per scheduler (hybrid, static, rayon, hybrid, ...): the total
/// seconds per scheduler and each hybrid call's seconds.
fn interleaved(
    scheds: &[Scheduler; 3],
    calls: usize,
    inputs: &Inputs,
    tick: &mut dyn FnMut(&str),
) -> ([f64; 3], Vec<f64>) {
    let mut totals = [0.0f64; 3];
    let mut hybrid_call_s = Vec::with_capacity(calls);
    for call in 0..calls {
        let message = format!("call {}/{calls}", call + 1);
        for (i, s) in scheds.iter().enumerate() {
            let t = inputs.call(s);
            totals[i] += t;
            if i == 0 {
                hybrid_call_s.push(t);
            }
            tick(&message);
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
    fn new(spec: &SchedBenchSpec) -> Result<Inputs> {
        let source = Synthetic { seed: 1 };
        let positions = Positions::contiguous(0, spec.seq);
        Ok(Inputs {
            q: QShard::from_source(&source, spec.heads, spec.head_dim, positions.clone())?,
            kv: KvBlock::from_source(&source, 0, spec.heads, spec.head_dim, positions)?,
            mask: if spec.causal {
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

impl SchedBenchResult {
    /// The human summary: the shape, then each scheduler's total against the ideal.
    pub fn summary(&self) -> String {
        let r = self;
        let mut out = String::new();
        let _ = writeln!(
            out,
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
        for (name, secs, ratio, of) in [
            ("hybrid", r.hybrid_s, r.hybrid_over_ideal, "ideal"),
            ("static", r.static_s, r.static_over_hybrid, "hybrid"),
            ("rayon", r.rayon_s, r.rayon_over_hybrid, "hybrid"),
        ] {
            let _ = writeln!(out, "  {name:<7} {secs:>9.3} s  ({ratio:.3}× {of})");
        }
        let _ = writeln!(
            out,
            "  ideal   {:>9.3} s  (single-core s per call: {:?})",
            r.ideal_s, r.single_core_s
        );
        let _ = writeln!(
            out,
            "  hybrid ratios {:?}, last busy spread {:.3}",
            r.final_ratios, r.final_busy_spread
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SchedBenchSpec {
        SchedBenchSpec {
            calls: 2,
            seq: 64,
            heads: 1,
            head_dim: 16,
            causal: true,
            cores: crate::bench::kernel::pinned_cores(1),
            slow: Vec::new(),
            slow_text: None,
            alpha: 0.5,
            busy_neighbour: None,
        }
    }

    #[test]
    fn bad_sizes_and_alpha_name_their_field() {
        let e = SchedBenchSpec { calls: 0, ..spec() }
            .validate()
            .unwrap_err();
        assert_eq!(e.field(), Some("calls"));
        let e = SchedBenchSpec {
            alpha: -0.1,
            ..spec()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field(), Some("sched_alpha"));
        assert!(e.to_string().contains("-0.1"), "{e}");
    }

    #[test]
    fn a_small_run_times_every_scheduler_and_reports_progress() {
        let s = spec();
        let mut ticks = 0;
        let r = s.run(&mut |_| ticks += 1).unwrap();
        assert_eq!(ticks, s.steps());
        assert_eq!(r.hybrid_call_s.len(), 2);
        assert!(r.hybrid_s > 0.0 && r.static_s > 0.0 && r.rayon_s > 0.0 && r.ideal_s > 0.0);
        assert_eq!(r.final_ratios.len(), 1);
        let text = r.summary();
        assert!(text.starts_with("N=64 H=1 D=16 causal threads=1"), "{text}");
        assert_eq!(text.lines().count(), 6, "{text}");
    }
}
