//! `--sched`, `--slow-cores`, `--sched-cache`: how each rank's kernel threads share the work
//! (the hybrid-core scheduler of `ringattn_runtime::sched`).

use std::path::PathBuf;

use clap::Args;
use ringattn::sched_spec::SchedSpec;
use ringattn_runtime::sched::ratios::default_cache_path;
use ringattn_runtime::{Error, Result, SchedKind};

/// `--slow-cores` with bounded factors (the runtime's).
pub use ringattn_runtime::sched::parse_bounded_slow_cores;

/// Scheduler options shared by `run`, `bench kernel` and `bench sched`.
#[derive(Clone, Debug, Args)]
pub struct SchedArgs {
    /// How kernel threads share work: `hybrid` learns each core's speed and splits by it (P/E
    /// cores, noisy neighbours), `static` splits evenly, `rayon` steals work.
    #[arg(long, value_enum, default_value_t = SchedKind::Hybrid, help_heading = "Kernel threads")]
    pub sched: SchedKind,
    /// TESTING AID: make the kernel thread on CPU do FACTOR× the work per item (it spins after
    /// each item), e.g. `--slow-cores 1:2`; turns a homogeneous machine into a hybrid one.
    /// Unpinned threads are addressed by thread index.
    #[arg(long, value_name = "CPU:FACTOR,...", help_heading = "Kernel threads")]
    pub slow_cores: Option<String>,
    /// File of measured ratios, read at start and updated at the end, so a batch job starts
    /// balanced [default: $XDG_CACHE_HOME/ringattn/sched.json, else ~/.cache/ringattn/sched.json].
    #[arg(long, value_name = "PATH", help_heading = "Kernel threads")]
    pub sched_cache: Option<PathBuf>,
    /// Neither read nor write the ratio cache (every run starts from the topology's guess).
    #[arg(long, conflicts_with = "sched_cache", help_heading = "Kernel threads")]
    pub no_sched_cache: bool,
    /// Weight of the old ratio in each update, in [0, 1) (Intel's shipped code keeps 0.3).
    #[arg(long, default_value_t = ringattn_runtime::sched::ratios::DEFAULT_ALPHA, help_heading = "Kernel threads")]
    pub sched_alpha: f64,
}

impl SchedArgs {
    /// Validates the options.
    pub fn spec(&self) -> Result<SchedSpec> {
        if !(0.0..1.0).contains(&self.sched_alpha) {
            return Err(Error::config(format!(
                "--sched-alpha must be in [0, 1), got {}",
                self.sched_alpha
            )));
        }
        let slow = match &self.slow_cores {
            Some(text) => parse_bounded_slow_cores(text)?,
            None => Vec::new(),
        };
        let cache = match (&self.sched_cache, self.no_sched_cache) {
            (_, true) => None,
            (Some(p), false) => Some(p.clone()),
            (None, false) => default_cache_path(),
        };
        Ok(SchedSpec {
            kind: self.sched,
            slow,
            alpha: self.sched_alpha,
            cache,
            cache_explicit: self.sched_cache.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(sched: SchedKind) -> SchedArgs {
        SchedArgs {
            sched,
            slow_cores: Some("1:2, 0:1.5".into()),
            sched_cache: None,
            no_sched_cache: true,
            sched_alpha: 0.3,
        }
    }

    #[test]
    fn spec_validates() {
        let spec = args(SchedKind::Static).spec().unwrap();
        assert_eq!(spec.kind, SchedKind::Static);
        assert_eq!(spec.slow.len(), 2);
        assert_eq!(spec.cache, None);
        let mut bad = args(SchedKind::Hybrid);
        bad.slow_cores = Some("1:0.5".into());
        assert!(bad.spec().unwrap_err().to_string().contains("CPU:FACTOR"));
        let mut bad = args(SchedKind::Hybrid);
        bad.sched_alpha = 1.0;
        assert!(bad.spec().is_err());
    }
}
