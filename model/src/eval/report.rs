//! The passkey grid's files (feature `plot`): summary.json, one heat map per (group,
//! sparsity) and the accuracy-vs-sparsity plot, from every result in a directory's
//! results.jsonl (earlier runs' selections included).

use std::path::Path;

use ringattn::plot_duo::{write_accuracy_svg, write_heatmap_svg, AccuracyCurve, Heatmap};

use crate::error::Result;
use crate::eval::passkey::load_results;
use crate::eval::summary::{by_cell, by_sparsity, CellSummary, SparsitySummary};

/// Writes `out`/summary.json, `out`/heatmap-GROUP-sS.svg and `out`/accuracy.svg from
/// `out`/results.jsonl and returns the per-(group, sparsity) summaries (for a table).
pub fn write_passkey_report(out: &Path) -> Result<Vec<SparsitySummary>> {
    let all = load_results(&out.join("results.jsonl"))?;
    let sums = by_sparsity(&all);
    let cells = by_cell(&all);
    let summary = serde_json::json!({"by_sparsity": sums, "cells": cells});
    ringattn::io::write_json(&out.join("summary.json").display().to_string(), &summary)?;
    for s in &sums {
        let h = heatmap(&cells, &s.group, s.sparsity);
        let file = out.join(format!("heatmap-{}-s{}.svg", s.group, s.sparsity));
        write_heatmap_svg(&file, &h)?;
    }
    write_accuracy_svg(
        &out.join("accuracy.svg"),
        "pass key accuracy",
        &curves(&sums),
    )?;
    Ok(sums)
}

/// One accuracy-vs-sparsity line per group, in the order the groups first appear.
pub fn curves(sums: &[SparsitySummary]) -> Vec<AccuracyCurve> {
    let mut curves: Vec<AccuracyCurve> = Vec::new();
    for s in sums {
        match curves.iter_mut().find(|c| c.name == s.group) {
            Some(c) => c.points.push((s.sparsity, s.accuracy)),
            None => curves.push(AccuracyCurve {
                name: s.group.clone(),
                points: vec![(s.sparsity, s.accuracy)],
            }),
        }
    }
    curves
}

/// The heat map of `group` at `sparsity` (contexts and depths sorted; unmeasured cells `None`).
pub fn heatmap(cells: &[CellSummary], group: &str, sparsity: f64) -> Heatmap {
    let mine: Vec<&CellSummary> = cells
        .iter()
        .filter(|c| c.group == group && (c.sparsity - sparsity).abs() < 1e-9)
        .collect();
    let mut contexts: Vec<usize> = mine.iter().map(|c| c.context).collect();
    contexts.sort_unstable();
    contexts.dedup();
    let mut depths: Vec<f64> = mine.iter().map(|c| c.depth).collect();
    depths.sort_by(f64::total_cmp);
    depths.dedup();
    let accuracy = contexts
        .iter()
        .flat_map(|&c| depths.iter().map(move |&d| (c, d)))
        .map(|(c, d)| {
            mine.iter()
                .find(|x| x.context == c && (x.depth - d).abs() < 1e-9)
                .map(|x| x.accuracy)
        })
        .collect();
    Heatmap {
        title: format!("pass key accuracy: {group}, sparsity {sparsity}"),
        contexts,
        depths,
        accuracy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(context: usize, depth: f64, accuracy: f64) -> CellSummary {
        CellSummary {
            group: "full".into(),
            sparsity: 0.0,
            context,
            depth,
            accuracy,
            trials: 1,
        }
    }

    #[test]
    fn heatmap_sorts_axes_and_leaves_gaps() {
        let cells = [
            cell(2048, 0.5, 1.0),
            cell(1024, 0.0, 0.5),
            cell(1024, 0.5, 0.0),
        ];
        let h = heatmap(&cells, "full", 0.0);
        assert_eq!(h.contexts, vec![1024, 2048]);
        assert_eq!(h.depths, vec![0.0, 0.5]);
        assert_eq!(h.accuracy, vec![Some(0.5), Some(0.0), None, Some(1.0)]);
        assert!(heatmap(&cells, "random", 0.0).accuracy.is_empty());
    }

    #[test]
    fn curves_group_points_by_name() {
        let s = |group: &str, sparsity: f64, accuracy: f64| SparsitySummary {
            group: group.into(),
            sparsity,
            accuracy,
            trials: 1,
            selections: 1,
            kv_bytes_per_rank_at_max_context: 0,
            max_context: 0,
        };
        let c = curves(&[
            s("full", 0.0, 1.0),
            s("random", 0.5, 0.2),
            s("full", 0.5, 0.9),
        ]);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].points, vec![(0.0, 1.0), (0.5, 0.9)]);
        assert_eq!(c[1].name, "random");
    }
}
