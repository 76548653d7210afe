//! Per-core performance ratios, how work is split by them, how busy times update them, and
//! their cache file.
//!
//! The update is Intel's (arXiv 2411.19542): with `t_i` thread i's busy time,
//! `pr_i' = pr_i / Σ_j (t_i·pr_j / t_j)`, smoothed as `pr ← α·pr + (1 − α)·pr'`. That formula
//! assumes thread i received work ∝ pr_i; items are indivisible here, so the work thread i
//! really got (`w_i`) stands in for `pr_i`: `pr_i' = (w_i / t_i) / Σ_j (w_j / t_j)`, which is
//! the same when the split is exact. Ratios are kept normalised to mean 1.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Shortest busy time (seconds) a thread must have for a kernel call to update the ratios:
/// below it, timer resolution and wake-up jitter dominate.
pub const MIN_BUSY_S: f64 = 1e-3;

/// Weight kept from the old ratio in each update (the shipped BesTLA code keeps 0.3).
pub const DEFAULT_ALPHA: f64 = 0.3;

/// Why [`RatioTable::set`] refused a class's ratios (a cache written by another machine, an
/// older version, or by hand): the table keeps what it had.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RatioError {
    /// Not one ratio per scheduler thread.
    #[error("{got} ratios for {threads} threads")]
    Length {
        /// Ratios given.
        got: usize,
        /// Threads of the table.
        threads: usize,
    },
    /// A ratio that is not a positive finite number.
    #[error("ratio {index} is {value}, not a positive finite number")]
    NotPositive {
        /// Its thread.
        index: usize,
        /// Its value.
        value: f64,
    },
    /// Ratios whose normalisation to mean 1 leaves f64's normal range (their sum overflows,
    /// or they span so many orders of magnitude that one becomes infinite or subnormal).
    #[error("ratios spanning {min:e} to {max:e} cannot be normalised")]
    Unnormalisable {
        /// The smallest ratio given.
        min: f64,
        /// The largest ratio given.
        max: f64,
    },
}

/// Ratios per kernel class, one per scheduler thread.
#[derive(Clone, Debug, PartialEq)]
pub struct RatioTable {
    initial: Vec<f64>,
    alpha: f64,
    classes: BTreeMap<String, Vec<f64>>,
}

impl RatioTable {
    /// A table whose classes start from `initial` (one ratio per thread), smoothing with `alpha`.
    pub fn new(initial: Vec<f64>, alpha: f64) -> Self {
        RatioTable {
            initial: normalised(&initial),
            alpha: alpha.clamp(0.0, 1.0),
            classes: BTreeMap::new(),
        }
    }

    /// The ratios of `class` (the initial ones until it has been measured).
    pub fn get(&self, class: &str) -> Vec<f64> {
        self.classes
            .get(class)
            .cloned()
            .unwrap_or_else(|| self.initial.clone())
    }

    /// Every measured class and its ratios.
    pub fn classes(&self) -> &BTreeMap<String, Vec<f64>> {
        &self.classes
    }

    /// Sets the ratios of `class` (from a cache), normalised to mean 1. Refuses (and keeps
    /// what the class had) ratios of another length, not positive and finite, or whose
    /// normalised values would not all be normal positive numbers.
    pub fn set(&mut self, class: &str, ratios: &[f64]) -> Result<(), RatioError> {
        let threads = self.initial.len();
        if ratios.len() != threads {
            return Err(RatioError::Length {
                got: ratios.len(),
                threads,
            });
        }
        if let Some((index, &value)) = ratios
            .iter()
            .enumerate()
            .find(|(_, r)| !(r.is_finite() && **r > 0.0))
        {
            return Err(RatioError::NotPositive { index, value });
        }
        let scaled = normalised(ratios);
        let sum: f64 = ratios.iter().sum();
        if !sum.is_finite() || !scaled.iter().all(|r| r.is_normal() && *r > 0.0) {
            return Err(RatioError::Unnormalisable {
                min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
                max: ratios.iter().copied().fold(0.0, f64::max),
            });
        }
        self.classes.insert(class.to_string(), scaled);
        Ok(())
    }

    /// Updates `class` from one kernel call where thread i did `work[i]` (in any unit) in
    /// `busy[i]` seconds. Returns false (and changes nothing) when some thread had no work or
    /// was busy less than [`MIN_BUSY_S`]: too short to time reliably.
    pub fn update(&mut self, class: &str, work: &[f64], busy: &[f64]) -> bool {
        let n = self.initial.len();
        if work.len() != n || busy.len() != n || n == 0 {
            return false;
        }
        if work
            .iter()
            .zip(busy)
            .any(|(&w, &t)| w <= 0.0 || t < MIN_BUSY_S)
        {
            return false;
        }
        let speed: Vec<f64> = work.iter().zip(busy).map(|(w, t)| w / t).collect();
        let measured = normalised(&speed);
        let old = self.get(class);
        let smoothed: Vec<f64> = old
            .iter()
            .zip(&measured)
            .map(|(o, m)| self.alpha * o + (1.0 - self.alpha) * m)
            .collect();
        self.classes
            .insert(class.to_string(), normalised(&smoothed));
        true
    }
}

/// `v` scaled to mean 1 (unchanged when its sum is not positive).
fn normalised(v: &[f64]) -> Vec<f64> {
    let sum: f64 = v.iter().sum();
    if sum > 0.0 && sum.is_finite() {
        v.iter().map(|x| x * v.len() as f64 / sum).collect()
    } else {
        vec![1.0; v.len()]
    }
}

/// Splits items with costs `costs` into `ratios.len()` contiguous ranges whose costs are as
/// close as the item boundaries allow to `ratios[i] / Σ ratios` of the total.
pub fn split_by_cost(costs: &[f64], ratios: &[f64]) -> Vec<Range<usize>> {
    let n = ratios.len();
    let total: f64 = costs.iter().sum();
    let rsum: f64 = ratios.iter().sum();
    let mut bounds = Vec::with_capacity(n + 1);
    bounds.push(0);
    let (mut idx, mut prefix, mut target) = (0usize, 0.0f64, 0.0f64);
    for r in &ratios[..n.saturating_sub(1)] {
        target += total * r / rsum;
        // Advance while taking the next item brings the prefix closer to the target.
        while idx < costs.len() && (prefix + costs[idx] - target).abs() <= (prefix - target).abs() {
            prefix += costs[idx];
            idx += 1;
        }
        bounds.push(idx);
    }
    bounds.push(costs.len());
    bounds.windows(2).map(|w| w[0]..w[1]).collect()
}

/// Where ratios persist between runs: `$XDG_CACHE_HOME/ringattn/sched.json`, else
/// `$HOME/.cache/ringattn/sched.json`; `None` when neither variable is set.
pub fn default_cache_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("ringattn").join("sched.json"))
}

/// The cache file: per core set (a CPU list such as `0-3`, or `unpinned-4`), per kernel class,
/// the ratios in thread order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheFile {
    /// Format version (1).
    pub version: u32,
    /// Core set → class → ratios.
    pub entries: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
}

impl CacheFile {
    /// Reads `path`; a missing or unreadable file is an empty cache (it is only a warm start).
    pub fn load(path: &Path) -> CacheFile {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(CacheFile {
                version: 1,
                entries: BTreeMap::new(),
            })
    }

    /// Replaces the entry of `key` with `table`'s measured classes and writes the file
    /// atomically (temporary file + rename), re-reading it first so that other core sets'
    /// entries written meanwhile survive.
    pub fn store(path: &Path, key: &str, table: &RatioTable) -> std::io::Result<()> {
        let mut file = CacheFile::load(path);
        file.version = 1;
        file.entries
            .insert(key.to_string(), table.classes().clone());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
        let text = serde_json::to_string_pretty(&file).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text + "\n")?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intel_update_reaches_the_speed_ratio() {
        // Thread 1 is half as fast: with an even split it takes twice as long.
        let mut t = RatioTable::new(vec![1.0, 1.0], DEFAULT_ALPHA);
        assert!(t.update("a", &[1.0, 1.0], &[0.1, 0.2]));
        let r = t.get("a");
        // pr' = (2/3, 1/3)·2 = (4/3, 2/3); smoothed 0.3·1 + 0.7·pr'.
        assert!((r[0] - (0.3 + 0.7 * 4.0 / 3.0)).abs() < 1e-12, "{r:?}");
        for _ in 0..10 {
            let work = t.get("a");
            let busy: Vec<f64> = vec![work[0] * 0.1, work[1] * 0.2];
            t.update("a", &work, &busy);
        }
        let r = t.get("a");
        assert!((r[0] / r[1] - 2.0).abs() < 1e-3, "{r:?}");
        assert_eq!(t.get("other"), vec![1.0, 1.0], "classes are separate");
    }

    #[test]
    fn short_or_empty_calls_do_not_update() {
        let mut t = RatioTable::new(vec![1.0, 1.0], DEFAULT_ALPHA);
        assert!(!t.update("a", &[1.0, 1.0], &[1e-4, 0.2]));
        assert!(!t.update("a", &[0.0, 1.0], &[0.1, 0.2]));
        assert!(t.classes().is_empty());
    }

    #[test]
    fn splits_follow_ratios_and_costs() {
        let even = vec![1.0; 90];
        let r = split_by_cost(&even, &[2.0, 1.0]);
        assert_eq!(r, vec![0..60, 60..90]);
        let r = split_by_cost(&even, &[1.0, 1.0, 1.0]);
        assert_eq!(r, vec![0..30, 30..60, 60..90]);
        // A causal-like ramp: equal cost halves are not equal counts.
        let ramp: Vec<f64> = (1..=100).map(f64::from).collect();
        let r = split_by_cost(&ramp, &[1.0, 1.0]);
        let first: f64 = ramp[r[0].clone()].iter().sum();
        assert!(
            (first / ramp.iter().sum::<f64>() - 0.5).abs() < 0.01,
            "{r:?}"
        );
        assert_eq!(split_by_cost(&[], &[1.0, 1.0]), vec![0..0, 0..0]);
        assert_eq!(split_by_cost(&even, &[1.0]), vec![0..90]);
    }

    #[test]
    fn cache_round_trips_and_keeps_other_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("sched.json");
        let mut t = RatioTable::new(vec![1.0, 1.0], DEFAULT_ALPHA);
        t.update("attention", &[1.0, 1.0], &[0.1, 0.3]);
        CacheFile::store(&path, "0-1", &t).unwrap();
        CacheFile::store(&path, "2-3", &RatioTable::new(vec![1.0; 2], 0.3)).unwrap();
        let file = CacheFile::load(&path);
        assert_eq!(file.entries["0-1"]["attention"], t.get("attention"));
        assert!(file.entries.contains_key("2-3"));
        assert_eq!(
            CacheFile::load(&dir.path().join("missing")).entries.len(),
            0
        );
    }
}
