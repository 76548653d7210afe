//! What a passkey grid amounts to: accuracy per (group, sparsity) and per heat-map cell, where
//! a group is `full`, `calibrated` or `random` (every `random:SEED` selection together, so the
//! chance baseline is the mean over seeds).

use serde::Serialize;

use crate::eval::passkey::TrialResult;

/// The group of a selection label (`random:7` → `random`).
pub fn group_of(selection: &str) -> &str {
    selection.split(':').next().unwrap_or(selection)
}

/// Accuracy of one group at one sparsity over the whole grid.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SparsitySummary {
    /// `full`, `calibrated` or `random`.
    pub group: String,
    /// Fraction of streaming KV heads.
    pub sparsity: f64,
    /// Correct / trials.
    pub accuracy: f64,
    /// Trials.
    pub trials: usize,
    /// Selections pooled (random seeds).
    pub selections: usize,
    /// Largest KV bytes of a rank at the longest context measured.
    pub kv_bytes_per_rank_at_max_context: u64,
    /// That context.
    pub max_context: usize,
}

/// Accuracy of a heat-map cell of a group and sparsity.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CellSummary {
    /// Group.
    pub group: String,
    /// Sparsity.
    pub sparsity: f64,
    /// Context.
    pub context: usize,
    /// Depth.
    pub depth: f64,
    /// Correct / trials.
    pub accuracy: f64,
    /// Trials.
    pub trials: usize,
}

/// The summaries as a text table, a header line and one line per summary, each ending in a
/// newline (what `eval passkey` prints).
pub fn table(sums: &[SparsitySummary]) -> String {
    let mut t = String::from(
        "group        sparsity  accuracy  trials  selections  KV bytes/rank (at context)\n",
    );
    for s in sums {
        t += &format!(
            "{:<12} {:>8.2}  {:>8.3}  {:>6}  {:>10}  {} ({})\n",
            s.group,
            s.sparsity,
            s.accuracy,
            s.trials,
            s.selections,
            s.kv_bytes_per_rank_at_max_context,
            s.max_context
        );
    }
    t
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// One summary per (group, sparsity), sorted by group then sparsity.
pub fn by_sparsity(results: &[TrialResult]) -> Vec<SparsitySummary> {
    let mut out: Vec<SparsitySummary> = Vec::new();
    let mut seen: Vec<(String, f64, Vec<String>)> = Vec::new();
    for r in results {
        let g = group_of(&r.selection).to_string();
        let kv = r.kv_bytes_per_rank.iter().copied().max().unwrap_or(0);
        let i = match out
            .iter()
            .position(|s| s.group == g && same(s.sparsity, r.sparsity))
        {
            Some(i) => i,
            None => {
                out.push(SparsitySummary {
                    group: g.clone(),
                    sparsity: r.sparsity,
                    accuracy: 0.0,
                    trials: 0,
                    selections: 0,
                    kv_bytes_per_rank_at_max_context: 0,
                    max_context: 0,
                });
                seen.push((g, r.sparsity, Vec::new()));
                out.len() - 1
            }
        };
        let s = &mut out[i];
        s.accuracy = (s.accuracy * s.trials as f64 + r.correct as f64) / (s.trials + 1) as f64;
        s.trials += 1;
        if r.context > s.max_context {
            s.max_context = r.context;
            s.kv_bytes_per_rank_at_max_context = kv;
        } else if r.context == s.max_context {
            s.kv_bytes_per_rank_at_max_context = s.kv_bytes_per_rank_at_max_context.max(kv);
        }
        if !seen[i].2.contains(&r.selection) {
            seen[i].2.push(r.selection.clone());
            s.selections += 1;
        }
    }
    out.sort_by(|a, b| {
        a.group
            .cmp(&b.group)
            .then(a.sparsity.total_cmp(&b.sparsity))
    });
    out
}

/// One summary per (group, sparsity, context, depth).
pub fn by_cell(results: &[TrialResult]) -> Vec<CellSummary> {
    let mut out: Vec<CellSummary> = Vec::new();
    for r in results {
        let g = group_of(&r.selection);
        let found = out.iter_mut().find(|c| {
            c.group == g
                && same(c.sparsity, r.sparsity)
                && c.context == r.context
                && same(c.depth, r.depth)
        });
        match found {
            Some(c) => {
                c.accuracy =
                    (c.accuracy * c.trials as f64 + r.correct as f64) / (c.trials + 1) as f64;
                c.trials += 1;
            }
            None => out.push(CellSummary {
                group: g.to_string(),
                sparsity: r.sparsity,
                context: r.context,
                depth: r.depth,
                accuracy: r.correct as f64,
                trials: 1,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(sel: &str, s: f64, c: usize, d: f64, correct: u8, kv: u64) -> TrialResult {
        TrialResult {
            selection: sel.into(),
            sparsity: s,
            context: c,
            depth: d,
            trial: 0,
            passkey: "12345".into(),
            answer: String::new(),
            correct,
            prompt_tokens: c,
            world: 1,
            kv_bytes_per_rank: vec![kv],
            prefill_tokens_per_s: 0.0,
        }
    }

    #[test]
    fn random_seeds_pool_into_one_group_and_cells_average_their_trials() {
        let r = vec![
            trial("random:1", 0.5, 1024, 0.0, 1, 10),
            trial("random:2", 0.5, 1024, 0.0, 0, 10),
            trial("random:2", 0.5, 2048, 0.0, 0, 20),
            trial("calibrated", 0.5, 1024, 0.0, 1, 10),
        ];
        let s = by_sparsity(&r);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].group, "calibrated");
        let random = &s[1];
        assert_eq!((random.trials, random.selections), (3, 2));
        assert!((random.accuracy - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            (random.max_context, random.kv_bytes_per_rank_at_max_context),
            (2048, 20)
        );
        let cells = by_cell(&r);
        let c = cells
            .iter()
            .find(|c| c.group == "random" && c.context == 1024)
            .unwrap();
        assert_eq!((c.trials, c.accuracy), (2, 0.5));
    }

    #[test]
    fn summaries_and_trials_print_as_lines() {
        let mut t = trial("calibrated", 0.25, 1024, 0.5, 1, 4096);
        t.answer = " 12345 ".into();
        assert_eq!(
            t.progress_line(3, 8),
            "passkey 3/8: calibrated sparsity 0.25 context 1024 depth 0.5 trial 0: correct (\"12345\")"
        );
        let text = table(&by_sparsity(&[t]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("group        sparsity  accuracy"));
        assert_eq!(
            lines[1],
            "calibrated       0.25     1.000       1           1  4096 (1024)"
        );
    }
}
