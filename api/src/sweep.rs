//! The scaling sweep (`ringattn bench scaling`): every combination of workers, lengths and
//! layouts of one run shape, its job, its identity in `results.jsonl` (so a resumed sweep
//! skips what is done) and its predicted cost (for progress). Results file: [`crate::results`].

use ringattn_runtime::Result;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::job::Job;
use crate::local::run_local;
use crate::report::Report;
use crate::results::duo_key;
use crate::{LayoutChoice, RunSpec};

/// A sweep: the run shape shared by every run, and what varies.
#[derive(Clone, Debug)]
pub struct SweepSpec {
    /// Worker counts.
    pub workers: Vec<usize>,
    /// Sequence lengths (strong) or tokens per worker (weak).
    pub seqs: Vec<usize>,
    /// Layouts (fixed ones: contiguous, striped, zigzag, docs).
    pub layouts: Vec<LayoutChoice>,
    /// Weak scaling (N = seq × workers) instead of strong (N = seq).
    pub weak: bool,
    /// Everything else of each run (`world`, `seq` and `layout` are set per combination).
    pub run: RunSpec,
}

/// One combination of the sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Combo {
    /// Workers.
    pub world: usize,
    /// Base length (the swept `seqs` value).
    pub base_seq: usize,
    /// Sequence length actually run.
    pub seq: usize,
    /// Layout name.
    pub layout: &'static str,
}

impl SweepSpec {
    /// The mode's name as written in results (`strong` or `weak`).
    pub fn mode(&self) -> &'static str {
        if self.weak {
            "weak"
        } else {
            "strong"
        }
    }

    /// Every combination, in run order: lengths, then workers, then layouts. With one worker
    /// all layouts are the same run, so only the first layout is run (plots reuse it).
    pub fn combinations(&self) -> std::result::Result<Vec<Combo>, ApiError> {
        let mut out = Vec::new();
        for &base in &self.seqs {
            for &p in &self.workers {
                for (i, l) in self.layouts.iter().enumerate() {
                    if p == 1 && i > 0 {
                        continue;
                    }
                    out.push(Combo {
                        world: p,
                        base_seq: base,
                        seq: if self.weak {
                            base.checked_mul(p).ok_or_else(|| {
                                ApiError::Runtime(ringattn_runtime::Error::config(format!(
                                    "--mode weak: --seq {base} × {p} workers overflows the sequence length"
                                )))
                            })?
                        } else {
                            base
                        },
                        layout: l.name(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The job of one combination, built from its spec as `run` builds it.
    pub fn job(&self, c: &Combo, cores: usize) -> std::result::Result<Job, ApiError> {
        let spec = RunSpec {
            world: Some(c.world),
            seq: Some(c.seq),
            layout: c.layout.parse()?,
            ..self.run.clone()
        };
        Job::from_spec_checked(&spec, cores, crate::memory::MemoryCheck::LOCAL)
    }

    /// Identity of a combination's run, as [`crate::results::record_key`] reads it back.
    pub fn job_key(&self, c: &Combo, j: &Job) -> String {
        let duo = match &j.duo {
            Some(p) => duo_key(
                p.retrieval_count() as u64,
                p.streaming_count() as u64,
                p.sink as u64,
                p.recent as u64,
            ),
            None => String::new(),
        };
        format!(
            "{}/P{}/N{}/{}/causal={}/H{}/Hkv{}/D{}/T{}/{}{duo}",
            self.mode(),
            c.world,
            c.seq,
            c.layout,
            j.causal,
            j.heads,
            j.kv_heads,
            j.dim,
            j.threads,
            j.dtype.name()
        )
    }

    /// The `ringattn run` words of one combination: its workers, length and layout, the run
    /// shape's fields that are set, then `extra` (e.g. DuoAttention options); no backend or
    /// report options.
    pub fn run_words(&self, c: &Combo, extra: &[String]) -> Vec<String> {
        let r = &self.run;
        let mut words = vec!["run".to_string()];
        let mut push = |flag: &str, value: Option<String>| {
            if let Some(v) = value {
                words.extend([flag.to_string(), v]);
            }
        };
        push("--workers", Some(c.world.to_string()));
        push("--seq", Some(c.seq.to_string()));
        push("--heads", r.heads.map(|v| v.to_string()));
        push("--kv-heads", r.kv_heads.map(|v| v.to_string()));
        push("--head-dim", r.head_dim.map(|v| v.to_string()));
        push("--threads", r.threads.map(|v| v.to_string()));
        push("--layout", Some(c.layout.to_string()));
        push("--dtype", Some(r.dtype.name().to_string()));
        if r.causal {
            words.push("--causal".into());
        }
        words.extend(extra.iter().cloned());
        words
    }

    /// The `sweep` object added to each report (mode, base length, cores of the machine).
    pub fn sweep_fields(&self, c: &Combo, cores: usize) -> Value {
        json!({ "mode": self.mode(), "base_seq": c.base_seq, "cores": cores })
    }
}

/// Runs one job on threads of this process and returns its report as JSON.
pub fn run_local_value(job: &Job) -> Result<Value> {
    let gathered = run_local(job)?;
    let report = Report::new(job, "local", &gathered);
    Ok(serde_json::to_value(&report).expect("a report serialises"))
}

/// Predicted relative cost of a job (partitioner makespan × heads × D, slowed down when the
/// workers' threads exceed the cores), for a progress estimate.
pub fn weight(job: &Job, cores: usize) -> u64 {
    let makespan = job
        .plan
        .estimates
        .iter()
        .find(|e| e.kind == job.plan.kind)
        .map_or(1.0, |e| e.makespan);
    let over = (job.world * job.threads) as f64 / cores.max(1) as f64;
    (makespan * job.heads as f64 * job.dim as f64 * over.max(1.0)).max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_words_name_the_combination_and_the_set_fields() {
        let spec = SweepSpec {
            workers: vec![2],
            seqs: vec![64],
            layouts: vec![LayoutChoice::Zigzag],
            weak: true,
            run: RunSpec {
                heads: Some(4),
                kv_heads: Some(2),
                head_dim: Some(16),
                threads: Some(1),
                causal: true,
                ..RunSpec::default()
            },
        };
        let combo = spec.combinations().unwrap().remove(0);
        assert_eq!(combo.seq, 128);
        let words = spec.run_words(&combo, &["--sink".to_string(), "4".into()]);
        assert_eq!(
            words.join(" "),
            "run --workers 2 --seq 128 --heads 4 --kv-heads 2 --head-dim 16 --threads 1 \
             --layout zigzag --dtype f32 --causal --sink 4"
        );
        let bare = SweepSpec {
            run: RunSpec::default(),
            ..spec
        };
        assert_eq!(
            bare.run_words(&combo, &[]).join(" "),
            "run --workers 2 --seq 128 --layout zigzag --dtype f32"
        );
    }
}
