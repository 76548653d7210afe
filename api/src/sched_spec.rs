//! How each rank's kernel threads share the work: the validated scheduler options of a run
//! (the hybrid-core scheduler of `ringattn_runtime::sched`).

use std::path::PathBuf;

use ringattn_runtime::sched::SlowCore;
use ringattn_runtime::{Result, SchedConfig, SchedKind, Scheduler};
use serde::{Deserialize, Serialize};

/// The validated scheduler options, identical on every rank.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchedSpec {
    /// Hybrid, static or rayon.
    pub kind: SchedKind,
    /// Slowed cores (testing aid).
    pub slow: Vec<SlowCore>,
    /// Smoothing weight of the old ratio.
    pub alpha: f64,
    /// Ratio cache file, if any.
    pub cache: Option<PathBuf>,
    /// Whether the cache path was given explicitly (then failing to write it is reported).
    pub cache_explicit: bool,
}

impl Default for SchedSpec {
    fn default() -> Self {
        SchedSpec {
            kind: SchedKind::Hybrid,
            slow: Vec::new(),
            alpha: ringattn_runtime::sched::ratios::DEFAULT_ALPHA,
            cache: None,
            cache_explicit: false,
        }
    }
}

impl SchedSpec {
    /// Starts a scheduler of `threads` threads pinned to `cores` (empty: unpinned).
    pub fn build(&self, threads: usize, cores: Vec<usize>) -> Result<Scheduler> {
        Scheduler::new(SchedConfig {
            kind: self.kind,
            threads,
            cores,
            slow: self.slow.clone(),
            alpha: self.alpha,
            cache: self.cache.clone(),
        })
    }

    /// Saves `sched`'s ratios to the cache; a failure is reported (one line on stderr) only when
    /// the path was given explicitly — the default cache is a convenience.
    pub fn save(&self, sched: &Scheduler) {
        if let Err(e) = sched.save() {
            if self.cache_explicit {
                if let Some(path) = &self.cache {
                    eprintln!(
                        "warning: cannot write the scheduler cache {}: {e}",
                        path.display()
                    );
                }
            }
        }
    }
}
