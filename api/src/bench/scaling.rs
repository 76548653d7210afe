//! The scaling sweep's driver shared by its backends: the plan ([`SweepPlan`]: every job
//! validated before any runs, the combinations already in results.jsonl skipped), the runs one
//! by one ([`SweepPlan::run_each`], local or through MPI), and each finished run report
//! recorded in results.jsonl (its `sweep` object added) with the line that tells the user.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ringattn_runtime::Result;
use serde_json::Value;

use super::mpi_sweep::MpiSweep;
use crate::error::ApiError;
use crate::job::Job;
use crate::results::{read_results, record_key, RESULTS_FILE};
use crate::slurm::array::SlurmSweep;
use crate::sweep::{run_local_value, weight, Combo, SweepSpec};

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

/// What [`SweepPlan::run_each`] and [`SweepPlan::run_on`] tell as they go.
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
    /// Anything else worth a line (a SLURM job array submitted and waited for).
    Note(&'a str),
}

/// Where a sweep's runs go.
#[derive(Debug)]
pub enum SweepBackend {
    /// Threads of this process, one run after another.
    Local,
    /// Each run its own MPI launch (`mpirun -n P ringattn run --backend mpi --json -`).
    Mpi(MpiSweep),
    /// The pending runs as one SLURM job array.
    Slurm(SlurmSweep),
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

    /// What to tell before running: a note about the unreadable lines of results.jsonl (if
    /// any), then how many runs the sweep has and how many are left to do.
    pub fn intro(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let results = self.results.display();
        if self.unreadable > 0 {
            lines.push(format!(
                "ringattn: note: ignoring {} unreadable line(s) of {results} (an interrupted run \
                 is redone)",
                self.unreadable
            ));
        }
        let (all, todo) = (self.combos.len(), self.todo.len());
        lines.push(format!(
            "ringattn bench scaling: {all} runs, {} already in {results} ({todo} to do)",
            all - todo
        ));
        lines
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

impl SweepPlan {
    /// Runs the pending combinations on `backend` and records each in results.jsonl; `extra`
    /// are the `run` words after the shape's (see [`SweepSpec::run_words`]) for the MPI and
    /// SLURM backends; `tell` hears each start, record and note.
    pub fn run_on(
        &self,
        backend: &SweepBackend,
        cores: usize,
        extra: &[String],
        tell: &mut dyn FnMut(SweepEvent),
    ) -> Result<()> {
        let words = |c: &Combo| self.spec.run_words(c, extra);
        match backend {
            SweepBackend::Local => self.run_each(cores, &mut |_, job| run_local_value(job), tell),
            SweepBackend::Mpi(mpi) => {
                let mut run_one = |combo: &Combo, _: &Job| {
                    let mut w = words(combo);
                    w.splice(1..1, ["--backend", "mpi", "--json", "-"].map(String::from));
                    mpi.run(&w, combo)
                };
                self.run_each(cores, &mut run_one, tell)
            }
            SweepBackend::Slurm(slurm) => {
                let todo: Vec<(&Combo, Vec<String>)> = self
                    .pending()
                    .into_iter()
                    .map(|(c, _)| (c, words(c)))
                    .collect();
                let note = &mut |line: String| tell(SweepEvent::Note(&line));
                slurm.run_and_record(&self.spec, &todo, &self.results, cores, note)
            }
        }
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

    /// A two-run sweep (1 and 2 workers) of one tiny shape.
    fn tiny_sweep(seq: usize, layout: crate::LayoutChoice) -> SweepSpec {
        SweepSpec {
            workers: vec![1, 2],
            seqs: vec![seq],
            layouts: vec![layout],
            weak: false,
            run: crate::RunSpec {
                heads: Some(1),
                head_dim: Some(8),
                threads: Some(1),
                ..crate::RunSpec::default()
            },
        }
    }

    #[test]
    fn a_plan_skips_what_results_hold_and_runs_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let spec = tiny_sweep(32, crate::LayoutChoice::Contiguous);
        let plan = SweepPlan::new(spec.clone(), dir.path(), 2).unwrap();
        assert_eq!(
            (plan.combos.len(), plan.todo.len(), plan.unreadable),
            (2, 2, 0)
        );
        let mut lines = Vec::new();
        plan.run_each(2, &mut |_, job| run_local_value(job), &mut |e| {
            if let SweepEvent::Recorded { line, .. } = e {
                lines.push(line.to_string())
            }
        })
        .unwrap();
        assert_eq!(lines.len(), 2);
        std::fs::write(&plan.results, {
            let mut text = std::fs::read_to_string(&plan.results).unwrap();
            text.push_str("{\"cut short\n");
            text
        })
        .unwrap();
        let again = SweepPlan::new(spec, dir.path(), 2).unwrap();
        assert!(again.todo.is_empty(), "{:?}", again.todo);
        let intro = again.intro();
        assert_eq!(intro.len(), 2, "{intro:?}");
        assert!(
            intro[0].contains("ignoring 1 unreadable line(s)"),
            "{intro:?}"
        );
        let told = format!("2 runs, 2 already in {} (0 to do)", again.results.display());
        assert!(intro[1].ends_with(&told), "{intro:?}");
        assert_eq!(plan.intro().len(), 1);
    }

    #[test]
    fn the_local_backend_records_every_pending_run_once() {
        let dir = tempfile::tempdir().unwrap();
        let spec = tiny_sweep(16, crate::LayoutChoice::Striped);
        let plan = SweepPlan::new(spec.clone(), dir.path(), 2).unwrap();
        let (mut started, mut recorded) = (0, 0);
        plan.run_on(&SweepBackend::Local, 2, &[], &mut |e| match e {
            SweepEvent::Starting(_) => started += 1,
            SweepEvent::Recorded { .. } => recorded += 1,
            SweepEvent::Note(n) => panic!("unexpected note {n}"),
        })
        .unwrap();
        assert_eq!((started, recorded), (2, 2));
        let (lines, bad) = crate::results::read_results(&plan.results).unwrap();
        assert_eq!((lines.len(), bad), (2, 0));
        assert_eq!(lines[1]["world"], 2);
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
