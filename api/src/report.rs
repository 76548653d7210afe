//! The run report: the JSON contract of DESIGN.md, and the human summary of the same numbers.

use std::fmt::Write as _;

use ringattn_ring::metrics;
use ringattn_runtime::{DocsSummary, Result};
use serde::Serialize;

use crate::check::CheckResult;
use crate::job::Job;
use crate::rank::{Gathered, RankResult};

/// Version of the report format.
pub const REPORT_VERSION: u32 = 1;

/// One ring step of one rank (extra field, for balance plots).
#[derive(Debug, Serialize)]
pub struct StepReport {
    /// Rank whose block was computed.
    pub source: usize,
    /// Kernel seconds.
    pub compute_s: f64,
    /// Seconds waiting for the next block.
    pub comm_wait_s: f64,
    /// Tiles computed (Full + Partial, all heads).
    pub tiles_computed: u64,
}

/// Per-rank figures.
#[derive(Debug, Serialize)]
pub struct RankReport {
    /// Rank, tokens, compute, wait and idle seconds, KV payload bytes sent.
    #[serde(flatten)]
    pub figures: ringattn_ring::metrics::RankFigures,
    /// KV payload bytes sent for retrieval heads (all of `bytes_sent` without DuoAttention).
    pub bytes_sent_retrieval: u64,
    /// KV payload bytes sent for DuoAttention streaming heads.
    pub bytes_sent_streaming: u64,
    /// Most KV bytes allocated at once.
    pub kv_bytes_peak: u64,
    /// Kernel threads.
    pub threads: usize,
    /// CPU ids its kernel threads were pinned to (empty: unpinned).
    pub cores: Vec<usize>,
    /// The scheduler's per-thread ratios per kernel class at the end (hybrid: learned).
    pub sched_ratios: std::collections::BTreeMap<String, Vec<f64>>,
    /// Tiles computed (Full + Partial, all heads, all steps).
    pub tiles_computed: u64,
    /// Full tiles.
    pub tiles_full: u64,
    /// Partial (masked) tiles.
    pub tiles_partial: u64,
    /// Empty tiles skipped.
    pub tiles_empty: u64,
    /// Seconds spent making the shard (not in `wall_s`).
    pub setup_s: f64,
    /// Ring wall seconds on this rank.
    pub wall_s: f64,
    /// Per-step figures.
    pub steps: Vec<StepReport>,
}

ringattn_ring::deref_rank_figures!(RankReport);

/// `check` of the report.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// (head, token) rows compared with the reference.
    pub rows_checked: u64,
    /// Largest absolute error of `out`.
    pub max_abs_err: f64,
    /// Largest absolute error of `lse`.
    pub max_lse_err: f64,
    /// Within the tolerance of the dtype (f32: out 2e-5 / lse 1e-5; bf16: 2e-2).
    pub passed: bool,
}

/// `duo` of the report: the DuoAttention plan that ran.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct DuoReport {
    /// KV heads that keep and attend the full KV.
    pub retrieval_kv_heads: usize,
    /// KV heads that attend only the sink and the recent window.
    pub streaming_kv_heads: usize,
    /// Sink tokens of streaming heads.
    pub sink: usize,
    /// Recent window of streaming heads.
    pub recent: usize,
}

impl RankReport {
    /// The report of one rank's gathered result.
    pub fn of(r: &RankResult) -> RankReport {
        RankReport {
            figures: ringattn_ring::metrics::RankFigures {
                rank: r.rank,
                tokens: r.positions.len(),
                compute_s: r.stats.compute_s,
                comm_wait_s: r.stats.comm_wait_s,
                idle_s: r.idle_s,
                bytes_sent: r.stats.bytes_sent,
            },
            bytes_sent_retrieval: r.bytes_sent_retrieval,
            bytes_sent_streaming: r.bytes_sent_streaming,
            kv_bytes_peak: r.stats.kv_bytes_peak,
            threads: r.threads,
            cores: r.cores.clone(),
            sched_ratios: r.sched_ratios.clone(),
            tiles_computed: r.stats.tiles.computed(),
            tiles_full: r.stats.tiles.full,
            tiles_partial: r.stats.tiles.partial,
            tiles_empty: r.stats.tiles.empty,
            setup_s: r.setup_s,
            wall_s: r.stats.wall_s,
            steps: r
                .stats
                .steps
                .iter()
                .map(|s| StepReport {
                    source: s.source,
                    compute_s: s.compute_s,
                    comm_wait_s: s.comm_wait_s,
                    tiles_computed: s.tiles.computed(),
                })
                .collect(),
        }
    }
}

impl DuoReport {
    /// The report of `plan`.
    pub fn of(plan: &ringattn_ring::DuoPlan) -> DuoReport {
        DuoReport {
            retrieval_kv_heads: plan.retrieval_count(),
            streaming_kv_heads: plan.streaming_count(),
            sink: plan.sink,
            recent: plan.recent,
        }
    }
}

impl CheckReport {
    /// The check of every rank's compared rows together.
    pub fn of(ranks: &[RankResult]) -> CheckReport {
        let c = ranks
            .iter()
            .filter_map(|r| r.check)
            .fold(CheckResult::default(), CheckResult::combine);
        CheckReport {
            rows_checked: c.rows_checked,
            max_abs_err: c.max_abs_err,
            max_lse_err: c.max_lse_err,
            passed: c.passed(),
        }
    }

    /// The summary's check line (`  check: N rows · max |out err| … · passed`).
    pub fn summary_line(&self) -> String {
        format!(
            "  check: {} rows · max |out err| {:.2e} · max |lse err| {:.2e} · {}",
            self.rows_checked,
            self.max_abs_err,
            self.max_lse_err,
            if self.passed { "passed" } else { "FAILED" }
        )
    }

    /// The line a failed check ends with (`{what} failed: ...`): the largest errors and the
    /// tolerances of `dtype` they were held to.
    pub fn failed_line(&self, what: &str, dtype: ringattn_runtime::Dtype) -> String {
        let t = crate::check::Tolerance::for_dtype(dtype);
        format!(
            "{what} failed: max |out err| {:.3e}, max |lse err| {:.3e} (allowed: out {:.0e} + \
             {:.0e}·|ref|, lse {:.0e} + {:.0e}·|lse|; a non-finite value never passes)",
            self.max_abs_err, self.max_lse_err, t.out_atol, t.out_rtol, t.lse_atol, t.lse_rtol
        )
    }
}

/// The run report (DESIGN.md contract; extra fields are additions, never renames).
#[derive(Debug, Serialize)]
pub struct Report {
    /// Format version.
    pub version: u32,
    /// `local` or `mpi`.
    pub backend: String,
    /// Ranks.
    pub world: usize,
    /// Layout that ran.
    pub layout: String,
    /// Why it was chosen.
    pub layout_reason: String,
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
    /// Storage type of K/V.
    pub dtype: String,
    /// Precision of Q in Q·Kᵀ (`bf16` only for bf16 K/V under `--qk-dtype bf16` on the avx512
    /// micro-kernels with AVX512-BF16; else `f32`).
    pub qk_dtype: String,
    /// Kernel thread scheduler (`hybrid`, `static`, `rayon`).
    pub sched: String,
    /// DuoAttention plan, or null when off.
    pub duo: Option<DuoReport>,
    /// Packed documents (count, min / median / max length), or null for one sequence.
    pub docs: Option<DocsSummary>,
    /// Sliding window W, or null for none.
    pub window: Option<usize>,
    /// Ring pass wall seconds (slowest rank, shard setup excluded).
    pub wall_s: f64,
    /// FLOPs the mask requires (4 · D · H · allowed pairs).
    pub flops: f64,
    /// flops / wall_s / 1e9.
    pub gflops: f64,
    /// max over ranks of compute_s / mean compute_s.
    pub imbalance: f64,
    /// Mean over ranks of 1 − comm_wait_s / wall_s.
    pub overlap: f64,
    /// Per-rank figures.
    pub ranks: Vec<RankReport>,
    /// Accuracy check, when asked.
    pub check: Option<CheckReport>,
}

impl Report {
    /// Builds the report from the gathered rank results.
    pub fn new(job: &Job, backend: &str, g: &Gathered) -> Report {
        let ranks: Vec<RankReport> = g.ranks.iter().map(RankReport::of).collect();
        let imbalance = metrics::imbalance(ranks.iter().map(|r| r.compute_s));
        let overlap = metrics::overlap(ranks.iter().map(|r| (r.comm_wait_s, r.wall_s)));
        let check = job.check_rows.map(|_| CheckReport::of(&g.ranks));
        let flops = job.flops();
        Report {
            version: REPORT_VERSION,
            backend: backend.to_string(),
            world: job.world,
            layout: job.plan.kind.name().to_string(),
            layout_reason: job.plan.reason.clone(),
            seq: job.seq,
            heads: job.heads,
            kv_heads: job.kv_heads,
            head_dim: job.dim,
            causal: job.causal,
            dtype: job.dtype.name().into(),
            qk_dtype: ringattn_runtime::qk_dtype_for(
                ringattn_runtime::Isa::active(),
                job.dtype,
                job.ring.tile,
            )
            .name()
            .into(),
            sched: job.sched.kind.name().into(),
            duo: job.duo.as_ref().map(DuoReport::of),
            docs: job.ring.mask.docs().map(|d| d.summary()),
            window: job.ring.mask.window(),
            wall_s: g.wall_s,
            flops,
            gflops: metrics::gflops(flops, g.wall_s),
            imbalance,
            overlap,
            ranks,
            check,
        }
    }

    /// Writes the JSON to `path` atomically (pretty-printed), or to stdout for `-` (one line,
    /// so repeated runs append cleanly to a JSON-lines file).
    pub fn write_json(&self, path: &str) -> Result<()> {
        crate::io::write_json(path, self)
    }

    /// The short human summary (same numbers as the JSON).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "ringattn run: backend {}, {} workers, layout {} ({})",
            self.backend, self.world, self.layout, self.layout_reason
        );
        let _ = writeln!(
            s,
            "  seq {} · heads {}/{} · head_dim {} · {} · {}",
            self.seq,
            self.heads,
            self.kv_heads,
            self.head_dim,
            if self.causal { "causal" } else { "non-causal" },
            self.dtype
        );
        if self.docs.is_some() || self.window.is_some() {
            let _ = writeln!(s, "  {}", mask_line(self.docs.as_ref(), self.window));
        }
        if let Some(d) = &self.duo {
            let sent = |f: fn(&RankReport) -> u64| self.ranks.iter().map(f).sum::<u64>();
            let _ = writeln!(
                s,
                "  duo: {} retrieval + {} streaming kv heads (sink {}, recent {}) · bytes sent {} retrieval, {} streaming",
                d.retrieval_kv_heads,
                d.streaming_kv_heads,
                d.sink,
                d.recent,
                sent(|r| r.bytes_sent_retrieval),
                sent(|r| r.bytes_sent_streaming)
            );
        }
        let _ = writeln!(
            s,
            "  wall {:.3} s · {:.2} GFLOP/s · imbalance {:.3} · overlap {:.3}",
            self.wall_s, self.gflops, self.imbalance, self.overlap
        );
        let _ = writeln!(
            s,
            "  {:>4} {:>8} {:>3} {:>10} {:>10} {:>9} {:>9} {:>12} {:>12}",
            "rank",
            "tokens",
            "thr",
            "compute_s",
            "wait_s",
            "idle_s",
            "tiles",
            "bytes_sent",
            "kv_peak"
        );
        for r in &self.ranks {
            let _ = writeln!(
                s,
                "  {:>4} {:>8} {:>3} {:>10.4} {:>10.4} {:>9.4} {:>9} {:>12} {:>12}",
                r.rank,
                r.tokens,
                r.threads,
                r.compute_s,
                r.comm_wait_s,
                r.idle_s,
                r.tiles_computed,
                r.bytes_sent,
                r.kv_bytes_peak
            );
        }
        if let Some(c) = &self.check {
            let _ = writeln!(s, "{}", c.summary_line());
        }
        s
    }
}

/// The summary line of packed documents and a sliding window.
pub fn mask_line(docs: Option<&DocsSummary>, window: Option<usize>) -> String {
    let mut parts = Vec::new();
    if let Some(d) = docs {
        parts.push(format!(
            "docs: {} (length min {} · median {} · max {})",
            d.count, d.min, d.median, d.max
        ));
    }
    if let Some(w) = window {
        parts.push(format!("window {w}"));
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_line_names_the_errors_and_the_dtypes_tolerances() {
        let c = CheckReport {
            rows_checked: 4,
            max_abs_err: 0.5,
            max_lse_err: 0.25,
            passed: false,
        };
        let f32_line = c.failed_line("check", ringattn_runtime::Dtype::F32);
        assert!(
            f32_line.starts_with("check failed: max |out err| 5.000e-1, max |lse err| 2.500e-1"),
            "{f32_line}"
        );
        assert!(f32_line.contains("out 2e-5 + 2e-5·|ref|, lse 1e-5 + 2e-6·|lse|"));
        let bf16_line = c.failed_line("decode check", ringattn_runtime::Dtype::Bf16);
        assert!(bf16_line.contains("out 2e-2 + 2e-2·|ref|"), "{bf16_line}");
    }
}
