//! The report of `ringattn decode`: the run report of DESIGN.md (same names, built by
//! [`Report::new`]) over the whole job, plus a `decode` object.
//!
//! Top-level fields cover prefill + decode: `wall_s` from the common start to the end, `flops`
//! the prefill's causal work plus 4·D per (query head, key) pair decoded, per-rank `compute_s`,
//! `comm_wait_s` and `bytes_sent` summed over both phases, and per-rank `kv_bytes_peak` the most
//! bytes the rank's KV cache allocated (capacities × element size; the prefill's ring buffers are
//! released before the cache is filled, their peak is `decode.ranks[].prefill_kv_bytes_peak`).

use std::fmt::Write as _;
use std::path::Path;

use ringattn_ring::duo::DecodeRoles;
use ringattn_ring::{metrics, RankStats};
use ringattn_runtime::{Error, Result};
use serde::Serialize;

use crate::check::CheckResult;
use crate::decode_rank::{spec_of, DecodeGathered, DecodeJob};
use crate::job::Job;
use crate::rank::{Gathered, RankResult};
use crate::report::{CheckReport, DuoReport, Report};

/// Per-rank decode figures.
#[derive(Debug, Serialize)]
pub struct DecodeRankReport {
    /// The rank.
    pub rank: usize,
    /// Tokens it decoded (owned).
    pub decoded_tokens: usize,
    /// Rows in its KV cache at the end, all KV heads.
    pub cache_rows: usize,
    /// Most KV cache bytes allocated (same as the top-level `kv_bytes_peak`).
    pub kv_bytes_peak: u64,
    /// Most KV bytes the prefill's ring pass held at once.
    pub prefill_kv_bytes_peak: u64,
    /// Decode kernel seconds.
    pub compute_s: f64,
    /// Seconds in decode broadcasts and reductions.
    pub comm_wait_s: f64,
    /// Bytes sent while decoding (streaming rows, queries, partial states).
    pub bytes_sent: u64,
}

/// The `decode` object of the report.
#[derive(Debug, Serialize)]
pub struct DecodeSection {
    /// Tokens decoded.
    pub steps: usize,
    /// steps / decode_s.
    pub tokens_per_s: f64,
    /// Median over steps of the slowest rank's step seconds.
    pub step_s_median: f64,
    /// Prefill seconds (slowest rank, from the common start).
    pub prefill_s: f64,
    /// Seconds of the decode steps (slowest rank).
    pub decode_s: f64,
    /// Seconds filling the caches and gathering the streaming heads' rows (slowest rank).
    pub cache_setup_s: f64,
    /// FLOPs of the decode steps (4 · D · query-key pairs).
    pub flops: f64,
    /// Slowest rank's seconds of each step.
    pub step_s: Vec<f64>,
    /// Owner of each step's token.
    pub owners: Vec<usize>,
    /// The rank holding the streaming heads' caches (null without streaming heads).
    pub stream_rank: Option<usize>,
    /// Per-rank figures.
    pub ranks: Vec<DecodeRankReport>,
}

/// The decode report: the run report's fields plus `decode`.
#[derive(Debug, Serialize)]
pub struct DecodeReport {
    /// The run report (DESIGN.md contract).
    #[serde(flatten)]
    pub base: Report,
    /// Decode figures.
    pub decode: DecodeSection,
}

impl DecodeReport {
    /// Builds the report from the gathered rank results.
    pub fn new(job: &Job, dj: &DecodeJob, backend: &str, g: &DecodeGathered) -> DecodeReport {
        let combined = Gathered {
            ranks: g.ranks.iter().map(combine).collect(),
            wall_s: g.wall_s,
        };
        let mut base = Report::new(job, backend, &combined);
        let pairs: u64 = g.ranks.iter().map(|r| r.decode.pairs).sum();
        let decode_flops = metrics::attention_flops(job.dim, pairs as f64);
        base.flops += decode_flops;
        base.gflops = metrics::gflops(base.flops, g.wall_s);
        if let Some(plan) = &dj.duo {
            base.duo = Some(DuoReport::of(plan));
        }
        if dj.check.is_some() {
            let c = g
                .ranks
                .iter()
                .filter_map(|r| r.check)
                .fold(CheckResult::default(), CheckResult::combine);
            base.check = Some(CheckReport {
                rows_checked: c.rows_checked,
                max_abs_err: c.max_abs_err,
                max_lse_err: c.max_lse_err,
                passed: c.passed(),
            });
        }
        let slowest = |f: &dyn Fn(&crate::decode_rank::DecodeRankResult) -> f64| {
            g.ranks.iter().map(f).fold(0.0, f64::max)
        };
        let step_s: Vec<f64> = (0..dj.steps)
            .map(|i| slowest(&|r| r.decode.steps.get(i).map_or(0.0, |s| s.step_s)))
            .collect();
        let decode_s = slowest(&|r| r.decode.wall_s);
        let roles = DecodeRoles::new(
            &*job.plan.kind.build(&job.ring.mask),
            job.world,
            &spec_of(job, dj.steps),
        );
        let streaming = dj.duo.as_ref().is_some_and(|p| p.streaming_count() > 0);
        let decode = DecodeSection {
            steps: dj.steps,
            tokens_per_s: if decode_s > 0.0 {
                dj.steps as f64 / decode_s
            } else {
                0.0
            },
            step_s_median: median(&step_s),
            prefill_s: slowest(&|r| r.prefill_s),
            decode_s,
            cache_setup_s: slowest(&|r| r.decode.setup_s),
            flops: decode_flops,
            step_s,
            stream_rank: streaming.then_some(roles.stream_rank),
            ranks: g
                .ranks
                .iter()
                .map(|r| DecodeRankReport {
                    rank: r.rank,
                    decoded_tokens: roles.owners.iter().filter(|&&o| o == r.rank).count(),
                    cache_rows: r.decode.cache_rows,
                    kv_bytes_peak: r.decode.kv_bytes_peak,
                    prefill_kv_bytes_peak: r.prefill.kv_bytes_peak,
                    compute_s: r.decode.compute_s,
                    comm_wait_s: r.decode.comm_wait_s,
                    bytes_sent: r.decode.bytes_sent,
                })
                .collect(),
            owners: roles.owners,
        };
        DecodeReport { base, decode }
    }

    /// Writes the JSON to `path` atomically (pretty-printed), or to stdout for `-` (one line).
    pub fn write_json(&self, path: &str) -> Result<()> {
        if path == "-" {
            println!(
                "{}",
                serde_json::to_string(self).expect("a report always serialises")
            );
            return Ok(());
        }
        let target = Path::new(path);
        let tmp = ringattn_runtime::io::temp_path(target);
        let text = serde_json::to_string_pretty(self).expect("a report always serialises") + "\n";
        let io = |context: String| move |e| Error::Io { context, source: e };
        let result = std::fs::write(&tmp, text)
            .map_err(io(format!("writing {path}")))
            .and_then(|()| {
                std::fs::rename(&tmp, target).map_err(io(format!("renaming to {path}")))
            });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// The short human summary (same numbers as the JSON).
    pub fn summary(&self) -> String {
        let (b, d) = (&self.base, &self.decode);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "ringattn decode: backend {}, {} workers, layout {} ({})",
            b.backend, b.world, b.layout, b.layout_reason
        );
        let duo = match &b.duo {
            Some(v) => format!(
                "duo {} retrieval / {} streaming KV heads (sink {}, recent {})",
                v.retrieval_kv_heads, v.streaming_kv_heads, v.sink, v.recent
            ),
            None => "all heads retrieval".into(),
        };
        let _ = writeln!(
            s,
            "  prefill {} · steps {} · heads {}/{} · head_dim {} · {} · {duo}",
            b.seq, d.steps, b.heads, b.kv_heads, b.head_dim, b.dtype
        );
        let _ = writeln!(
            s,
            "  prefill {:.3} s · decode {:.3} s · {:.2} tokens/s · step median {:.2} ms",
            d.prefill_s,
            d.decode_s,
            d.tokens_per_s,
            d.step_s_median * 1e3
        );
        let _ = writeln!(
            s,
            "  {:>4} {:>8} {:>7} {:>10} {:>10} {:>10} {:>12} {:>12}",
            "rank",
            "tokens",
            "decoded",
            "cache_rows",
            "compute_s",
            "wait_s",
            "bytes_sent",
            "kv_peak"
        );
        for (r, dr) in b.ranks.iter().zip(&d.ranks) {
            let _ = writeln!(
                s,
                "  {:>4} {:>8} {:>7} {:>10} {:>10.4} {:>10.4} {:>12} {:>12}",
                r.rank,
                r.tokens,
                dr.decoded_tokens,
                dr.cache_rows,
                dr.compute_s,
                dr.comm_wait_s,
                dr.bytes_sent,
                r.kv_bytes_peak
            );
        }
        if let Some(c) = &b.check {
            let _ = writeln!(s, "{}", c.summary_line());
        }
        s
    }
}

/// A rank's prefill and decode figures as one run-report rank.
fn combine(r: &crate::decode_rank::DecodeRankResult) -> RankResult {
    let (p, d) = (&r.prefill, &r.decode);
    RankResult {
        rank: r.rank,
        positions: r.positions.clone(),
        threads: r.threads,
        cores: r.cores.clone(),
        setup_s: r.setup_s,
        idle_s: r.idle_s,
        stats: RankStats {
            compute_s: p.compute_s + d.compute_s,
            comm_wait_s: p.comm_wait_s + d.comm_wait_s,
            wall_s: p.wall_s + d.setup_s + d.wall_s,
            bytes_sent: p.bytes_sent + d.bytes_sent,
            kv_bytes_peak: d.kv_bytes_peak,
            tiles: p.tiles,
            steps: p.steps.clone(),
        },
        bytes_sent_retrieval: p.bytes_sent + d.bytes_sent - r.prefill_bytes_streaming,
        bytes_sent_streaming: r.prefill_bytes_streaming,
        sched_ratios: r.sched_ratios.clone(),
        check: None,
        out: None,
        lse: None,
    }
}

/// Median of `xs` (0 when empty).
fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
