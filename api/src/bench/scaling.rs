//! The scaling sweep's driver shared by its backends: the plan ([`SweepPlan`]: every job
//! validated before any runs, the combinations already in results.jsonl skipped), the runs one
//! by one ([`SweepPlan::run_each`], local or through MPI), and each finished run report
//! recorded in results.jsonl (its `sweep` object added) with the line that tells the user.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ringattn_runtime::Result;
use serde_json::Value;

use crate::error::ApiError;
use crate::job::Job;
use crate::results::{read_results, record_key, RESULTS_FILE};
use crate::sweep::{weight, Combo, SweepSpec};

/// A sweep ready to run in its output directory.
#[derive(Debug)]
pub struct SweepPlan {
    /// The sweep.
    pub spec: SweepSpec,
    /// Every combination, in run order.
    pub combos: Vec<Combo>,
    /// The job of each combination (validated).
    pub jobs: Vec<Job>,
    /// Indices of the combinations not yet in results.jsonl.
    pub todo: Vec<usize>,
    /// `DIR/results.jsonl`.
    pub results: PathBuf,
    /// Lines of results.jsonl that did not parse (ignored: their runs are redone).
    pub unreadable: usize,
}

/// What [`SweepPlan::run_each`] tells as it goes.
#[derive(Debug)]
pub enum SweepEvent<'a> {
    /// A run starts (its label).
    Starting(&'a str),
    /// A run was recorded: the line that tells it, and its predicted work (progress units).
    Recorded {
        /// The line for the user.
        line: &'a str,
        /// Its share of [`SweepPlan::total_work`].
        work: u64,
    },
}

impl SweepPlan {
    /// Validates every job of `spec` on a machine of `cores` cores (bad sizes fail before
    /// anything runs), creates `out` and reads what its results.jsonl already holds.
    pub fn new(spec: SweepSpec, out: &Path, cores: usize) -> std::result::Result<Self, ApiError> {
        let combos = spec.combinations()?;
        let jobs = combos
            .iter()
            .map(|c| spec.job(c, cores))
            .collect::<std::result::Result<Vec<Job>, ApiError>>()?;
        std::fs::create_dir_all(out).map_err(|e| ringattn_runtime::Error::Io {
            context: format!("creating {}", out.display()),
            source: e,
        })?;
        let results = out.join(RESULTS_FILE);
        let (existing, unreadable) = read_results(&results)?;
        let done: HashSet<String> = existing.iter().filter_map(record_key).collect();
        let todo = (0..combos.len())
            .filter(|&i| !done.contains(&spec.job_key(&combos[i], &jobs[i])))
            .collect();
        Ok(SweepPlan {
            spec,
            combos,
            jobs,
            todo,
            results,
            unreadable,
        })
    }

    /// The combinations still to run, with their jobs.
    pub fn pending(&self) -> Vec<(&Combo, &Job)> {
        self.todo
            .iter()
            .map(|&i| (&self.combos[i], &self.jobs[i]))
            .collect()
    }

    /// Predicted work of the pending runs (progress units: the time left is meaningful).
    pub fn total_work(&self, cores: usize) -> u64 {
        self.pending().iter().map(|(_, j)| weight(j, cores)).sum()
    }

    /// Runs the pending combinations one by one with `run_one` (which returns the run report),
    /// recording each in results.jsonl as it finishes; `tell` hears each start and record.
    pub fn run_each(
        &self,
        cores: usize,
        run_one: &mut dyn FnMut(&Combo, &Job) -> Result<Value>,
        tell: &mut dyn FnMut(SweepEvent),
    ) -> Result<()> {
        let pending = self.pending();
        for (n, (combo, job)) in pending.iter().enumerate() {
            let label = combo.label(n, pending.len());
            tell(SweepEvent::Starting(&label));
            let value = run_one(combo, job)?;
            let line = record(&self.spec, &self.results, combo, value, cores, &label)?;
            tell(SweepEvent::Recorded {
                line: &line,
                work: weight(job, cores),
            });
        }
        Ok(())
    }
}

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
    fn a_plan_skips_what_results_hold_and_runs_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let spec = SweepSpec {
            workers: vec![1, 2],
            seqs: vec![32],
            layouts: vec![crate::LayoutChoice::Contiguous],
            weak: false,
            run: crate::RunSpec {
                heads: Some(1),
                head_dim: Some(8),
                threads: Some(1),
                ..crate::RunSpec::default()
            },
        };
        let plan = SweepPlan::new(spec.clone(), dir.path(), 2).unwrap();
        assert_eq!(
            (plan.combos.len(), plan.todo.len(), plan.unreadable),
            (2, 2, 0)
        );
        let mut lines = Vec::new();
        plan.run_each(
            2,
            &mut |_, job| crate::sweep::run_local_value(job),
            &mut |e| {
                if let SweepEvent::Recorded { line, .. } = e {
                    lines.push(line.to_string())
                }
            },
        )
        .unwrap();
        assert_eq!(lines.len(), 2);
        let again = SweepPlan::new(spec, dir.path(), 2).unwrap();
        assert!(again.todo.is_empty(), "{:?}", again.todo);
    }

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
