//! `ringattn simulate`: the ring cost model ([`ringattn_striped::simulate`](mod@ringattn_striped::simulate)) on the command
//! line, with an optional calibration of this machine's kernel speed.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use ringattn_runtime::{Error, Mask, Result, TileShape};
use ringattn_striped::{
    earliest_within_tie, simulate, simulate_duo, LayoutKind, SimConfig, Simulation,
    PARTIAL_TILE_COST,
};
use serde_json::json;

use crate::cli::{DtypeArg, LayoutArg};
use ringattn::io::write_atomic;
use ringattn_striped::calibrate;

/// Rank rate assumed when neither `--gflops-per-rank` nor `--calibrate` is given.
pub const DEFAULT_GFLOPS: f64 = 100.0;
/// Up to this ring size the JSON lists every rank and step in full.
pub const FULL_DETAIL_MAX: usize = 64;

/// Options of `ringattn simulate`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    ringattn simulate --workers 8 --seq 262144 --heads 32 --head-dim 128 --causal --layout striped --gflops-per-rank 180000 --link-gbps 2400\n  \
    ringattn simulate --workers 4 --seq 16384 --causal --calibrate --cores 2 --link-gbps inf --latency-us 0\n  \
    ringattn simulate --workers 4096 --seq 16777216 --heads 32 --kv-heads 8 --causal --json -")]
pub struct SimulateArgs {
    /// Ranks in the ring P.
    #[arg(short = 'p', long)]
    pub workers: usize,
    /// Sequence length N (tokens).
    #[arg(short = 'n', long)]
    pub seq: usize,
    /// Query heads H.
    #[arg(long, default_value_t = 8)]
    pub heads: usize,
    /// Key/value heads (GQA when fewer than --heads) [default: --heads].
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// Head dimension D.
    #[arg(short = 'd', long, default_value_t = 128)]
    pub head_dim: usize,
    /// Causal mask.
    #[arg(long)]
    pub causal: bool,
    /// How K and V travel (bytes per hop: f32 4, bf16 2 per element).
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
    /// Token layout; `auto` simulates all three and keeps the fastest.
    #[arg(long, value_enum, default_value_t = LayoutArg::Auto)]
    pub layout: LayoutArg,
    /// One rank's kernel rate on unmasked tiles, GFLOP/s [default: 100, or --calibrate].
    #[arg(long, value_name = "F", conflicts_with = "calibrate")]
    pub gflops_per_rank: Option<f64>,
    /// Measure this machine's single-thread kernel rate first (about a second) and use
    /// rate × --threads per rank.
    #[arg(long)]
    pub calibrate: bool,
    /// Cost of a masked (Partial) tile relative to an unmasked one [default: 1.15, or
    /// measured by --calibrate].
    #[arg(long, value_name = "C")]
    pub partial_cost: Option<f64>,
    /// Kernel threads per rank (scales a calibrated rate; shares --cores).
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,
    /// Cores all ranks share (one node); with more rank threads than cores, the busy ranks
    /// share them fairly [default: a core per thread].
    #[arg(long)]
    pub cores: Option<usize>,
    /// With --cores: per-thread speed when every core is busy, relative to one busy thread
    /// (shared caches, memory bandwidth, turbo) [default: 1, or measured by --calibrate].
    #[arg(long, value_name = "S")]
    pub all_busy_speed: Option<f64>,
    /// Link bandwidth per rank in Gbit/s (`inf` = free transfers, like the local backend).
    #[arg(long, default_value_t = 100.0)]
    pub link_gbps: f64,
    /// Latency per hop in microseconds.
    #[arg(long, default_value_t = 2.0)]
    pub latency_us: f64,
    /// Query rows per kernel tile.
    #[arg(long, default_value_t = ringattn_runtime::TileShape::default().q)]
    pub tile_q: usize,
    /// Key rows per kernel tile.
    #[arg(long, default_value_t = ringattn_runtime::TileShape::default().k)]
    pub tile_k: usize,
    /// Write the prediction as JSON to PATH ("-" = stdout instead of the summary).
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,
    /// DuoAttention (needs --causal): the retrieval heads' pass, then the streaming heads' pass
    /// over their windows only (streaming transfers counted as whole blocks, an upper bound).
    #[command(flatten)]
    pub duo: crate::args::duo::DuoArgs,
}

/// Runs `ringattn simulate`.
pub fn run_simulate(args: &SimulateArgs) -> Result<ExitCode> {
    let tile = TileShape {
        q: args.tile_q,
        k: args.tile_k,
    };
    if args.threads == 0 {
        return Err(Error::config("--threads must be at least 1"));
    }
    if args.duo.enabled() && !args.causal {
        return Err(Error::config(
            "--duo/--retrieval-ratio need --causal (DuoAttention's streaming heads are causal)",
        ));
    }
    let duo = args.duo.plan(args.kv_heads.unwrap_or(args.heads))?;
    let (gflops, partial, busy_speed, rate_source) = match (args.gflops_per_rank, args.calibrate) {
        (Some(f), _) => (f, PARTIAL_TILE_COST, 1.0, "given".to_string()),
        (None, true) => {
            if args.head_dim == 0 || tile.q == 0 || tile.k == 0 || args.workers == 0 {
                return Err(Error::config(
                    "--workers, --head-dim, --tile-q and --tile-k must be at least 1",
                ));
            }
            let rows = (args.seq / args.workers).clamp(512, 16384);
            // Threads the ranks keep busy at once, at most the cores.
            let cores = args.cores.unwrap_or(ringattn::allowed_cores()).max(1);
            let busy = args.workers.saturating_mul(args.threads).min(cores).max(1);
            let (c, speed, note) = match args.cores {
                // One node: the rate of one busy thread, and the slowdown with `busy` threads,
                // extrapolated to all cores busy.
                Some(cores) if busy > 1 => {
                    let one = calibrate(args.head_dim, rows, tile, 0.3, 1)?;
                    let many = calibrate(args.head_dim, rows, tile, 0.3, busy)?;
                    let s = many.gflops / one.gflops;
                    let all = 1.0 + (s - 1.0) * (cores - 1) as f64 / (busy - 1) as f64;
                    let all = all.clamp(0.2, 1.0);
                    (
                        one,
                        all,
                        format!(
                            "1 busy thread; ×{s:.2} with {busy} busy; first call +{:.1} ms",
                            many.warmup_s * 1e3
                        ),
                    )
                }
                _ => {
                    let c = calibrate(args.head_dim, rows, tile, 0.4, busy)?;
                    (c, 1.0, format!("{busy} busy thread(s)"))
                }
            };
            (
                c.gflops * args.threads as f64,
                c.partial_cost,
                speed,
                format!(
                    "calibrated: {:.2} GFLOP/s per thread × {} ({note}), {rows}-row KV blocks",
                    c.gflops, args.threads
                ),
            )
        }
        (None, false) => (
            DEFAULT_GFLOPS,
            PARTIAL_TILE_COST,
            1.0,
            "assumed default".to_string(),
        ),
    };
    let partial = args.partial_cost.unwrap_or(partial);
    let base = SimConfig {
        world: args.workers,
        seq: args.seq,
        heads: args.heads,
        kv_heads: args.kv_heads.unwrap_or(args.heads),
        head_dim: args.head_dim,
        dtype: args.dtype.dtype(),
        mask: if args.causal {
            Mask::Causal
        } else {
            Mask::None
        },
        layout: LayoutKind::Contiguous,
        tile,
        gflops_per_rank: gflops,
        partial_cost: partial,
        threads_per_rank: args.threads,
        cores: args.cores,
        all_busy_speed: args.all_busy_speed.unwrap_or(busy_speed),
        link_gbps: args.link_gbps,
        latency_us: args.latency_us,
    };
    let kinds: Vec<LayoutKind> = match ringattn::LayoutChoice::from(args.layout).fixed() {
        Some(kind) => vec![kind],
        None => LayoutKind::ALL.to_vec(),
    };
    let start = Instant::now();
    let mut results = Vec::new();
    for kind in kinds {
        let cfg = SimConfig {
            layout: kind,
            ..base.clone()
        };
        let sim = match &duo {
            Some(plan) => simulate_duo(&cfg, plan)?,
            None => simulate(&cfg)?,
        };
        results.push((cfg, sim));
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Fastest, by the partitioner's tie rule.
    let walls: Vec<f64> = results.iter().map(|(_, s)| s.predicted_wall_s).collect();
    let chosen = earliest_within_tie(&walls).expect("at least one layout");
    let reason = if results.len() > 1 {
        "auto: smallest predicted wall time (ties within 1% go to the earliest of contiguous, \
         striped, zigzag)"
            .to_string()
    } else {
        "requested with --layout".to_string()
    };
    let out = Output {
        results: &results,
        chosen,
        reason: &reason,
        rate_source: &rate_source,
        elapsed_s: elapsed,
        duo: duo.as_ref(),
    };
    match args.json.as_deref() {
        Some("-") => println!("{}", out.json()),
        Some(path) => {
            write_atomic(
                Path::new(path),
                &(serde_json::to_string_pretty(&out.json()).expect("json") + "\n"),
            )?;
            print!("{}", out.summary());
        }
        None => print!("{}", out.summary()),
    }
    Ok(ExitCode::SUCCESS)
}

/// Everything printed by one `simulate` call.
struct Output<'a> {
    results: &'a [(SimConfig, Simulation)],
    chosen: usize,
    reason: &'a str,
    rate_source: &'a str,
    elapsed_s: f64,
    duo: Option<&'a ringattn_ring::DuoPlan>,
}

impl Output<'_> {
    fn json(&self) -> serde_json::Value {
        let (cfg, sim) = &self.results[self.chosen];
        let p = cfg.world;
        let full = p <= FULL_DETAIL_MAX;
        let steps = &sim.per_step;
        let step_max: Vec<f64> = steps.iter().map(|s| s.compute_max_s).collect();
        let busiest = step_max
            .iter()
            .copied()
            .enumerate()
            .fold((0, 0.0), |a, (i, v)| if v > a.1 { (i, v) } else { a });
        json!({
            "version": 1,
            "kind": "simulation",
            "world": p,
            "layout": cfg.layout.name(),
            "layout_reason": self.reason,
            "seq": cfg.seq,
            "heads": cfg.heads,
            "kv_heads": cfg.kv_heads,
            "head_dim": cfg.head_dim,
            "causal": cfg.mask == Mask::Causal,
            "duo": self.duo.map(ringattn::report::DuoReport::of),
            "dtype": cfg.dtype.name(),
            "tile_q": cfg.tile.q,
            "tile_k": cfg.tile.k,
            "gflops_per_rank": cfg.gflops_per_rank,
            "gflops_source": self.rate_source,
            "threads_per_rank": cfg.threads_per_rank,
            "cores": cfg.cores,
            "all_busy_speed": cfg.all_busy_speed,
            "link_gbps": if cfg.link_gbps.is_finite() { json!(cfg.link_gbps) } else { json!("inf") },
            "latency_us": cfg.latency_us,
            "partial_tile_cost": cfg.partial_cost,
            "predicted_wall_s": sim.predicted_wall_s,
            "predicted_imbalance": sim.predicted_imbalance,
            "predicted_gflops": sim.predicted_gflops,
            "predicted_overlap": sim.predicted_overlap,
            "flops": sim.flops,
            "bytes_per_rank": sim.bytes_per_rank,
            "hop_s": sim.hop_s,
            "full_block_s": sim.full_block_s,
            "wall_in_blocks": sim.predicted_wall_s / sim.full_block_s,
            "shared_cores": sim.shared_cores,
            "per_step": if full { json!(steps) } else { serde_json::Value::Null },
            "per_step_summary": {
                "steps": steps.len(),
                "mean_step_s": sim.predicted_wall_s / steps.len().max(1) as f64,
                "max_step_compute_s": busiest.1,
                "busiest_step": busiest.0,
                "min_step_compute_s": step_max.iter().copied().fold(f64::INFINITY, f64::min),
            },
            "ranks": if full { json!(sim.ranks) } else { serde_json::Value::Null },
            "alternatives": self.results.iter().map(|(c, s)| json!({
                "layout": c.layout.name(),
                "predicted_wall_s": s.predicted_wall_s,
                "predicted_imbalance": s.predicted_imbalance,
            })).collect::<Vec<_>>(),
            "simulate_s": self.elapsed_s,
        })
    }

    fn summary(&self) -> String {
        let (cfg, sim) = &self.results[self.chosen];
        let mut s = String::new();
        let _ = writeln!(
            s,
            "ringattn simulate: {} ranks, layout {} ({})",
            cfg.world,
            cfg.layout.name(),
            self.reason
        );
        let _ = writeln!(
            s,
            "  seq {} · heads {}/{} · head_dim {} · {} · {} · rank rate {:.2} GFLOP/s ({}), partial tile ×{:.2} · link {} Gbit/s · latency {} µs{}",
            cfg.seq,
            cfg.heads,
            cfg.kv_heads,
            cfg.head_dim,
            if cfg.mask == Mask::Causal { "causal" } else { "non-causal" },
            cfg.dtype.name(),
            cfg.gflops_per_rank,
            self.rate_source,
            cfg.partial_cost,
            cfg.link_gbps,
            cfg.latency_us,
            cfg.cores.map(|c| format!(" · {c} shared cores")).unwrap_or_default()
        );
        let _ = writeln!(
            s,
            "  predicted wall {:.4} s ({:.2} blocks of {:.4} s) · {:.2} GFLOP/s · imbalance {:.3} · overlap {:.3}",
            sim.predicted_wall_s,
            sim.predicted_wall_s / sim.full_block_s,
            sim.full_block_s,
            sim.predicted_gflops,
            sim.predicted_imbalance,
            sim.predicted_overlap
        );
        let _ = writeln!(
            s,
            "  bytes sent per rank {} · hop {:.6} s{}",
            sim.bytes_per_rank,
            sim.hop_s,
            if sim.shared_cores {
                " · ranks share cores"
            } else {
                ""
            }
        );
        if self.results.len() > 1 {
            let base = self.results[0].1.predicted_wall_s;
            for (c, r) in self.results {
                let _ = writeln!(
                    s,
                    "  {:<10} wall {:>10.4} s · imbalance {:.3} · speedup over contiguous {:.2}×",
                    c.layout.name(),
                    r.predicted_wall_s,
                    r.predicted_imbalance,
                    base / r.predicted_wall_s
                );
            }
        }
        if cfg.world <= 16 {
            let _ = writeln!(
                s,
                "  {:>4} {:>12} {:>12} {:>12}",
                "step", "start_s", "end_s", "max_comp_s"
            );
            for st in &sim.per_step {
                let _ = writeln!(
                    s,
                    "  {:>4} {:>12.5} {:>12.5} {:>12.5}",
                    st.step, st.start_s, st.end_s, st.compute_max_s
                );
            }
        }
        let _ = writeln!(s, "  (simulated in {:.3} s)", self.elapsed_s);
        s
    }
}
