//! results.jsonl of `bench scaling`: one finished run report recorded (its `sweep` object added,
//! appended and flushed by the library's [`ringattn::results::append_line`]).

use std::path::Path;

use ringattn::sweep::{Combo, SweepSpec};
use ringattn_runtime::Result;
use serde_json::Value;

/// Adds the `sweep` object to one run report, appends it to `results` and returns the line
/// that tells the user.
pub fn record(
    spec: &SweepSpec,
    results: &Path,
    combo: &Combo,
    mut value: Value,
    cores: usize,
    label: &str,
) -> Result<String> {
    value["sweep"] = spec.sweep_fields(combo, cores);
    ringattn::results::append_line(results, &value)?;
    Ok(format!(
        "{label}: wall {:.3} s · {:.2} GFLOP/s · imbalance {:.3}",
        value["wall_s"].as_f64().unwrap_or(f64::NAN),
        value["gflops"].as_f64().unwrap_or(f64::NAN),
        value["imbalance"].as_f64().unwrap_or(f64::NAN)
    ))
}
