//! The scaling sweep's bookkeeping shared by its backends: a finished run report recorded in
//! results.jsonl (its `sweep` object added) and the line that tells the user.

use std::path::Path;

use ringattn_runtime::Result;
use serde_json::Value;

use crate::sweep::{Combo, SweepSpec};

impl Combo {
    /// `run N/TOTAL: P=.. layout N=..` for the `index`-th of `total` runs (0-based).
    pub fn label(&self, index: usize, total: usize) -> String {
        format!(
            "run {}/{total}: P={} {} N={}",
            index + 1,
            self.world,
            self.layout,
            self.seq
        )
    }
}

/// Adds the `sweep` object to one run report, appends it to `results` (flushed, see
/// [`crate::results::append_line`]) and returns the line that tells the user.
pub fn record(
    spec: &SweepSpec,
    results: &Path,
    combo: &Combo,
    mut value: Value,
    cores: usize,
    label: &str,
) -> Result<String> {
    value["sweep"] = spec.sweep_fields(combo, cores);
    crate::results::append_line(results, &value)?;
    Ok(format!(
        "{label}: wall {:.3} s · {:.2} GFLOP/s · imbalance {:.3}",
        value["wall_s"].as_f64().unwrap_or(f64::NAN),
        value["gflops"].as_f64().unwrap_or(f64::NAN),
        value["imbalance"].as_f64().unwrap_or(f64::NAN)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_line_has_its_sweep_object_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("results.jsonl");
        let spec = SweepSpec {
            workers: vec![2],
            seqs: vec![64],
            layouts: vec![crate::LayoutChoice::Striped],
            weak: false,
            run: crate::RunSpec::default(),
        };
        let combo = spec.combinations().unwrap().remove(0);
        let label = combo.label(0, 1);
        assert_eq!(label, "run 1/1: P=2 striped N=64");
        let value = serde_json::json!({"wall_s": 0.5, "gflops": 2.0, "imbalance": 1.0});
        let line = record(&spec, &results, &combo, value, 4, &label).unwrap();
        assert!(
            line.starts_with("run 1/1: P=2 striped N=64: wall 0.500 s"),
            "{line}"
        );
        let (lines, bad) = crate::results::read_results(&results).unwrap();
        assert_eq!((lines.len(), bad), (1, 0));
        assert_eq!(lines[0]["sweep"]["cores"], 4);
    }
}
