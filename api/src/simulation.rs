//! The simulator over every layout (`ringattn simulate`): one [`SimConfig`] simulated for
//! each layout, the earliest within the partitioner's 1% tie rule chosen, and the result as
//! the JSON prediction contract or a text summary.

use std::fmt::Write as _;

use ringattn_ring::DuoPlan;
use ringattn_runtime::{Mask, Result};

use crate::error::ApiError;
use crate::report::mask_line;
use crate::spec::{check_mask, DocsSpec};
use ringattn_striped::calibrate::{calibrate_rank_rate, RankRate, RateProbe};
use ringattn_striped::PARTIAL_TILE_COST;
use ringattn_striped::{
    earliest_within_tie, simulate, simulate_duo, LayoutKind, SimConfig, Simulation,
};
use serde_json::json;

/// The mask `simulate` costs: causal or not, with packed documents (`docs`, their lengths
/// adding up to `seq`) and a sliding `window`, checked like a run's (no window of 0, no
/// documents with DuoAttention, the documents layout only with documents).
pub fn sim_mask(
    causal: bool,
    window: Option<usize>,
    docs: Option<&DocsSpec>,
    seq: usize,
    (layout, duo): (crate::LayoutChoice, bool),
) -> std::result::Result<Mask, ApiError> {
    check_mask(window, docs.is_some(), duo)?;
    let docs = docs.map(DocsSpec::documents).transpose()?;
    layout.check_docs(docs.is_some())?;
    if let Some(d) = &docs {
        d.check_total(seq)?;
    }
    Ok(Mask::span(causal, window, docs))
}

/// Whether `mask` hides keys after the query (plain causal, or a causal span).
fn is_causal(mask: &Mask) -> bool {
    match mask {
        Mask::Causal => true,
        Mask::Span(s) => s.causal,
        _ => false,
    }
}

/// Rank rate assumed when none is given or calibrated, GFLOP/s.
pub const DEFAULT_GFLOPS: f64 = 100.0;

/// A rank's rate for the simulator and the constants that go with it: `given` (GFLOP/s),
/// else measured on this machine for `calibrate` (about a second), else [`DEFAULT_GFLOPS`];
/// `source` says which.
pub fn rank_rate(given: Option<f64>, calibrate: Option<&RateProbe>) -> Result<RankRate> {
    let constant = |gflops, source: &str| RankRate {
        gflops,
        partial_cost: PARTIAL_TILE_COST,
        all_busy_speed: 1.0,
        source: source.to_string(),
    };
    Ok(match (given, calibrate) {
        (Some(f), _) => constant(f, "given"),
        (None, Some(probe)) => calibrate_rank_rate(probe)?,
        (None, None) => constant(DEFAULT_GFLOPS, "assumed default"),
    })
}

/// Up to this ring size the JSON lists every rank and step in full.
pub const FULL_DETAIL_MAX: usize = 64;

/// The rule [`simulate_layouts`] chooses by, as printed when several layouts were simulated.
pub const TIE_RULE: &str = "auto: smallest predicted wall time (ties within 1% go to the \
    earliest of contiguous, striped, zigzag, docs)";

/// Simulates `base` with each of `kinds` (plain, or under the DuoAttention `duo` plan) and
/// returns the results with the index of the chosen one (the partitioner's tie rule).
pub fn simulate_layouts(
    base: &SimConfig,
    kinds: &[LayoutKind],
    duo: Option<&DuoPlan>,
) -> Result<(Vec<(SimConfig, Simulation)>, usize)> {
    let mut results = Vec::new();
    for &kind in kinds {
        let cfg = SimConfig {
            layout: kind,
            ..base.clone()
        };
        let sim = match duo {
            Some(plan) => simulate_duo(&cfg, plan)?,
            None => simulate(&cfg)?,
        };
        results.push((cfg, sim));
    }
    let walls: Vec<f64> = results.iter().map(|(_, s)| s.predicted_wall_s).collect();
    let chosen = earliest_within_tie(&walls).unwrap_or(0);
    Ok((results, chosen))
}

/// A prediction: every simulated layout, the chosen one and why, and how long it took.
#[derive(Debug)]
pub struct Prediction {
    /// Every simulated layout, in the order of [`LayoutKind::ALL`].
    pub results: Vec<(SimConfig, Simulation)>,
    /// Index of the chosen layout in `results`.
    pub chosen: usize,
    /// Why that layout: [`TIE_RULE`], or that it was the one asked for.
    pub reason: &'static str,
    /// Seconds the simulation took.
    pub elapsed_s: f64,
}

/// Simulates `base` with the layout `choice` (for `auto` every layout, the documents layout
/// too when the mask has documents, the fastest chosen by [`TIE_RULE`]), plain or under the
/// DuoAttention `duo` plan.
pub fn predict(
    base: &SimConfig,
    choice: crate::LayoutChoice,
    duo: Option<&DuoPlan>,
) -> Result<Prediction> {
    let kinds = choice
        .fixed()
        .map_or(LayoutKind::candidates(&base.mask), |kind| vec![kind]);
    let start = std::time::Instant::now();
    let (results, chosen) = simulate_layouts(base, &kinds, duo)?;
    let reason = if results.len() > 1 {
        TIE_RULE
    } else {
        "requested with --layout"
    };
    let elapsed_s = start.elapsed().as_secs_f64();
    Ok(Prediction {
        results,
        chosen,
        reason,
        elapsed_s,
    })
}

impl Prediction {
    /// The prediction as JSON or text, its rate from `rate_source`, under the `duo` plan.
    pub fn output<'a>(&'a self, rate_source: &'a str, duo: Option<&'a DuoPlan>) -> SimOutput<'a> {
        SimOutput {
            results: &self.results,
            chosen: self.chosen,
            reason: self.reason,
            rate_source,
            elapsed_s: self.elapsed_s,
            duo,
        }
    }
}

/// One `simulate` call's result: the simulated layouts and the chosen one, as the JSON
/// prediction contract ([`SimOutput::json`]) or a text summary ([`SimOutput::summary`]).
pub struct SimOutput<'a> {
    /// Every simulated layout, in the order of [`LayoutKind::ALL`].
    pub results: &'a [(SimConfig, Simulation)],
    /// Index of the chosen layout in `results`.
    pub chosen: usize,
    /// Why that layout (printed and written as `layout_reason`).
    pub reason: &'a str,
    /// Where the rank rate came from (given, calibrated, default).
    pub rate_source: &'a str,
    /// Seconds the simulation took.
    pub elapsed_s: f64,
    /// The DuoAttention plan simulated, if any.
    pub duo: Option<&'a DuoPlan>,
}

impl SimOutput<'_> {
    /// The JSON prediction contract (DESIGN.md), full per-rank detail up to
    /// [`FULL_DETAIL_MAX`] ranks.
    pub fn json(&self) -> serde_json::Value {
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
        let mut v = json!({
            "version": 1,
            "kind": "simulation",
            "world": p,
            "layout": cfg.layout.name(),
            "layout_reason": self.reason,
            "seq": cfg.seq,
            "heads": cfg.heads,
            "kv_heads": cfg.kv_heads,
            "head_dim": cfg.head_dim,
            "causal": is_causal(&cfg.mask),
            "duo": self.duo.map(crate::report::DuoReport::of),
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
        });
        // The mask beyond causality (too many keys for one `json!`).
        v["docs"] = json!(cfg.mask.docs().map(|d| d.summary()));
        v["window"] = json!(cfg.mask.window());
        v
    }

    /// The human summary `simulate` prints.
    pub fn summary(&self) -> String {
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
            if is_causal(&cfg.mask) { "causal" } else { "non-causal" },
            cfg.dtype.name(),
            cfg.gflops_per_rank,
            self.rate_source,
            cfg.partial_cost,
            cfg.link_gbps,
            cfg.latency_us,
            cfg.cores.map(|c| format!(" · {c} shared cores")).unwrap_or_default()
        );
        if cfg.mask.docs().is_some() || cfg.mask.window().is_some() {
            let docs = cfg.mask.docs().map(|d| d.summary());
            let _ = writeln!(s, "  {}", mask_line(docs.as_ref(), cfg.mask.window()));
        }
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
        self.layout_and_step_lines(&mut s, cfg.world, sim);
        let _ = writeln!(s, "  (simulated in {:.3} s)", self.elapsed_s);
        s
    }

    /// The summary's table of every simulated layout (when several were) and, up to 16 ranks,
    /// the chosen layout's steps.
    fn layout_and_step_lines(&self, s: &mut String, world: usize, sim: &Simulation) {
        if self.results.len() > 1 {
            let base = self.results[0].1.predicted_wall_s;
            for (c, r) in self.results {
                let _ = writeln!(
                s,
                "  {:<10} wall {:>10.4} s · imbalance {:.3} · bytes/rank {} · speedup over contiguous {:.2}×",
                c.layout.name(),
                r.predicted_wall_s,
                r.predicted_imbalance,
                r.bytes_per_rank,
                base / r.predicted_wall_s
            );
            }
        }
        if world <= 16 {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LayoutChoice;

    fn base() -> SimConfig {
        SimConfig {
            world: 4,
            seq: 4096,
            heads: 2,
            kv_heads: 2,
            head_dim: 64,
            dtype: ringattn_runtime::Dtype::F32,
            mask: Mask::Causal,
            layout: LayoutKind::Contiguous,
            tile: ringattn_runtime::TileShape::default(),
            gflops_per_rank: DEFAULT_GFLOPS,
            partial_cost: PARTIAL_TILE_COST,
            threads_per_rank: 1,
            cores: None,
            all_busy_speed: 1.0,
            link_gbps: 100.0,
            latency_us: 2.0,
        }
    }

    #[test]
    fn auto_simulates_every_layout_and_a_fixed_one_only_itself() {
        let all = predict(&base(), LayoutChoice::Auto, None).unwrap();
        assert_eq!(all.results.len(), LayoutKind::ALL.len());
        assert_eq!(all.reason, TIE_RULE);
        let walls: Vec<f64> = all.results.iter().map(|r| r.1.predicted_wall_s).collect();
        assert_eq!(Some(all.chosen), earliest_within_tie(&walls));
        let one = predict(&base(), LayoutChoice::Zigzag, None).unwrap();
        assert_eq!((one.results.len(), one.chosen), (1, 0));
        assert_eq!(one.results[0].0.layout, LayoutKind::Zigzag);
        assert_eq!(one.reason, "requested with --layout");
        let out = one.output("given", None);
        assert_eq!(out.json()["gflops_source"], "given");
        assert_eq!(out.json()["layout_reason"], one.reason);
    }

    /// 32 documents of 128 tokens and a window: fewer tiles and bytes than the plain causal
    /// mask on every layout, `auto` also simulates the documents layout, and the output
    /// states the documents and the window.
    #[test]
    fn documents_and_windows_are_simulated_with_their_pruning() {
        let docs = DocsSpec::Lengths(vec![128; 32]);
        let auto = (LayoutChoice::Auto, false);
        let plain = predict(&base(), LayoutChoice::Auto, None).unwrap();
        let mask = sim_mask(true, Some(64), Some(&docs), 4096, auto).unwrap();
        let packed = SimConfig { mask, ..base() };
        let pred = predict(&packed, LayoutChoice::Auto, None).unwrap();
        let kinds: Vec<LayoutKind> = pred.results.iter().map(|r| r.0.layout).collect();
        assert_eq!(kinds, LayoutKind::candidates(&packed.mask));
        assert!(kinds.contains(&LayoutKind::Documents));
        let tiles = |s: &Simulation| s.ranks.iter().map(|r| r.tiles_computed).sum::<u64>();
        for ((c, with), (_, without)) in pred.results.iter().zip(&plain.results) {
            let (a, b) = (tiles(with), tiles(without));
            let (x, y) = (with.bytes_per_rank, without.bytes_per_rank);
            // Striped spreads every document over all ranks: each block stays needed.
            let fewer = x < y || (c.layout == LayoutKind::Striped && x == y);
            assert!(
                a < b && fewer,
                "{}: tiles {a} vs {b}, bytes {x} vs {y}",
                c.layout.name()
            );
        }
        let out = pred.output("given", None);
        assert_eq!(out.json()["docs"]["count"], 32);
        assert_eq!(out.json()["window"], 64);
        assert_eq!(out.json()["causal"], true);
        assert!(out.summary().contains("window 64"), "{}", out.summary());
        // The documents layout needs documents; lengths must add up to the sequence.
        let docs_layout = (LayoutChoice::Docs, false);
        assert!(sim_mask(true, None, None, 4096, docs_layout).is_err());
        assert!(sim_mask(true, None, Some(&docs), 4000, auto).is_err());
        assert!(sim_mask(true, Some(0), None, 4096, auto).is_err());
        assert!(sim_mask(true, None, Some(&docs), 4096, (LayoutChoice::Auto, true)).is_err());
    }
}
