//! The scaling sweep on SLURM: the combinations still to run become one SLURM
//! job array (one array task per combination, `srun --ntasks=P ringattn run --backend mpi`),
//! submitted with `sbatch --wait`; each task writes its run report to
//! `DIR/slurm/point-JOB_TASK.json`, and the sweep appends them to results.jsonl in sweep order
//! (as the local sweep does), so an interrupted or partly failed sweep resubmits only what is
//! missing. Logs: `DIR/slurm/sweep-JOB_TASK.out`.

use std::path::{Path, PathBuf};

use ringattn_runtime::{Error, Result};
use serde_json::Value;

use super::{submit, Pmi};
use crate::bench::scaling::record;
use crate::launch::shell_quote;
use crate::sweep::{Combo, SweepSpec};

/// The reports of the points of an array that finished (with their index among the points
/// submitted), and the error naming those that did not.
pub type Finished = (Vec<(usize, Value)>, Option<Error>);

/// What the array of one sweep shares: the ringattn binary the tasks run, the run directory,
/// srun's options.
#[derive(Debug)]
pub struct SlurmSweep {
    /// The ringattn binary (an MPI build) every task runs.
    pub exe: String,
    /// Where the points' reports and logs go (`OUT/slurm`).
    pub dir: PathBuf,
    /// `srun --mpi=` plugin.
    pub pmi: Pmi,
    /// `srun --cpu-bind=cores`.
    pub bind: bool,
    /// Kernel threads per rank (`--cpus-per-task`).
    pub threads: usize,
    /// Extra `sbatch` options.
    pub extra: Vec<String>,
}

impl SlurmSweep {
    /// The array of a sweep writing into `out` (its files in `OUT/slurm`): every task runs
    /// `exe` with `threads` kernel threads per rank; `extra` are more `sbatch` options. srun
    /// binds cores when the cluster's TaskPlugin allows ([`super::cpu_binding`]); the note,
    /// if any, says why it does not.
    pub fn new(
        exe: String,
        out: &Path,
        pmi: Pmi,
        threads: usize,
        extra: Vec<String>,
    ) -> (SlurmSweep, Option<String>) {
        let (bind, note) = super::cpu_binding(false, false);
        let dir = out.join("slurm");
        let sweep = SlurmSweep {
            exe,
            dir,
            pmi,
            bind,
            threads,
            extra,
        };
        (sweep, note)
    }

    /// The array script: task `i` runs `points[i]` (its workers and `run` words).
    pub fn script(&self, points: &[(usize, Vec<String>)], job_dir: &Path) -> String {
        let max_p = points.iter().map(|(p, _)| *p).max().unwrap_or(1);
        let mut lines = vec![
            "#!/bin/bash".to_string(),
            "#SBATCH --job-name=ringattn-sweep".into(),
            format!("#SBATCH --array=0-{}", points.len().saturating_sub(1)),
            format!("#SBATCH --ntasks={max_p}"),
            format!("#SBATCH --cpus-per-task={}", self.threads),
            "# Written by `ringattn bench scaling --backend slurm`: one array task per sweep point."
                .into(),
            "set -euo pipefail".into(),
            format!("RINGATTN={}", shell_quote(&self.exe)),
            format!("DIR={}", shell_quote(&job_dir.display().to_string())),
            "case \"${SLURM_ARRAY_TASK_ID:-}\" in".into(),
        ];
        for (i, (p, words)) in points.iter().enumerate() {
            let words: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
            lines.push(format!("{i}) P={p}; ARGS=({}) ;;", words.join(" ")));
        }
        lines.extend([
            "*) echo \"no sweep point ${SLURM_ARRAY_TASK_ID:-}\" >&2; exit 2 ;;".to_string(),
            "esac".into(),
            format!(
                "srun --mpi={}{} --ntasks=\"$P\" --cpus-per-task=\"${{SLURM_CPUS_PER_TASK:-1}}\" \
                 \"$RINGATTN\" \"${{ARGS[@]}}\" --backend mpi \
                 --json \"$DIR/point-${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}.json\"",
                self.pmi.name(),
                if self.bind { " --cpu-bind=cores" } else { "" }
            ),
        ]);
        lines.join("\n") + "\n"
    }

    /// Runs `todo` (combination, `run` words) as one job array and waits for it; returns the
    /// reports of the points that finished (with their index in `todo`), in order, and the
    /// error about the others.
    /// `tell` hears when the array is submitted (the wait can be long).
    pub fn run_all(
        &self,
        todo: &[(&Combo, Vec<String>)],
        tell: &mut dyn FnMut(String),
    ) -> Result<Finished> {
        if todo.is_empty() {
            return Ok((Vec::new(), None));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::Io {
            context: format!("creating {}", self.dir.display()),
            source: e,
        })?;
        let dir = self.dir.canonicalize().map_err(|e| Error::Io {
            context: format!("finding {}", self.dir.display()),
            source: e,
        })?;
        let points: Vec<(usize, Vec<String>)> =
            todo.iter().map(|(c, w)| (c.world, w.clone())).collect();
        let mut extra = vec![format!("--output={}/sweep-%A_%a.out", dir.display())];
        extra.extend(self.extra.iter().cloned());
        let job = submit::submit(&self.script(&points, &dir), true, &extra, |id| {
            tell(format!(
                "ringattn bench scaling: SLURM job array {id} ({} tasks), waiting",
                points.len()
            ))
        })?;
        let mut values = Vec::new();
        let mut missing = Vec::new();
        for (i, (combo, _)) in todo.iter().enumerate() {
            let path = dir.join(format!("point-{}_{i}.json", job.job_id));
            let parsed = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .filter(|v| v["world"].as_u64() == Some(combo.world as u64));
            match parsed {
                Some(v) => values.push((i, v)),
                None => {
                    let log = dir.join(format!("sweep-{}_{i}.out", job.job_id));
                    let why = submit::failure_line(&log).unwrap_or_else(|| "no log".into());
                    missing.push(format!(
                        "P={} {} N={} ({why}; log {})",
                        combo.world,
                        combo.layout,
                        combo.seq,
                        log.display()
                    ));
                }
            }
        }
        let error = (!missing.is_empty()).then(|| Error::Io {
            context: format!(
                "scaling sweep on SLURM: {} of {} points of job {} failed",
                missing.len(),
                todo.len(),
                job.job_id
            ),
            source: std::io::Error::other(missing.join("; ")),
        });
        Ok((values, error))
    }
}

impl SlurmSweep {
    /// [`SlurmSweep::run_all`], then appends the finished points to `results` (as the local
    /// sweep does, one line each, told to `tell`) before reporting the failed ones.
    pub fn run_and_record(
        &self,
        spec: &SweepSpec,
        todo: &[(&Combo, Vec<String>)],
        results: &Path,
        cores: usize,
        tell: &mut dyn FnMut(String),
    ) -> Result<()> {
        let (values, error) = self.run_all(todo, tell)?;
        for (i, value) in values {
            let c = todo[i].0;
            let label = c.label(i, todo.len());
            tell(record(spec, results, c, value, cores, &label)?);
        }
        error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_sweep_keeps_its_files_in_out_slurm() {
        let (sweep, _) = SlurmSweep::new("r".into(), Path::new("o"), Pmi::Pmi2, 3, vec![]);
        assert_eq!((sweep.dir, sweep.threads), (PathBuf::from("o/slurm"), 3));
    }

    #[test]
    fn the_array_script_has_one_case_per_point_and_one_srun_line() {
        let sweep = SlurmSweep {
            exe: "/opt/ringattn".into(),
            dir: "x".into(),
            pmi: Pmi::Pmix,
            bind: false,
            threads: 2,
            extra: Vec::new(),
        };
        let points = vec![
            (1, vec!["run".to_string(), "--workers".into(), "1".into()]),
            (4, vec!["run".to_string(), "--layout".into(), "a b".into()]),
        ];
        let s = sweep.script(&points, Path::new("/tmp/o"));
        for line in [
            "#SBATCH --array=0-1",
            "#SBATCH --ntasks=4",
            "#SBATCH --cpus-per-task=2",
            "0) P=1; ARGS=(run --workers 1) ;;",
            "1) P=4; ARGS=(run --layout 'a b') ;;",
        ] {
            assert!(s.lines().any(|l| l == line), "no `{line}` in\n{s}");
        }
        assert!(s.contains("\nsrun --mpi=pmix --ntasks=\"$P\" "), "{s}");
    }
}
