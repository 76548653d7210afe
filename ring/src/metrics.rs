//! The figures every report gives, defined once: used by the run and decode reports, the
//! scaling bench (which reads the reports) and the simulator's predictions.
//!
//! - **imbalance**: the slowest rank's compute time over the mean (1 = balanced);
//! - **overlap**: the mean over ranks of `1 − comm_wait / wall`, each rank's wait over that
//!   rank's own wall time of the ring pass (1 = communication fully hidden);
//! - **GFLOP/s**: the FLOPs the masks require over the job's wall time;
//! - **bytes**: the most KV payload bytes any rank sent.

/// The figures of one rank that measured reports and the simulator's predictions share, under
/// the same JSON names (`rank`, `tokens`, `compute_s`, `comm_wait_s`, `idle_s`, `bytes_sent`):
/// flattened into the run report's ranks and the simulator's, so the two cannot drift.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RankFigures {
    /// The rank.
    pub rank: usize,
    /// Tokens it owns.
    pub tokens: usize,
    /// Kernel seconds over all steps.
    pub compute_s: f64,
    /// Seconds blocked waiting for the next KV block.
    pub comm_wait_s: f64,
    /// Seconds between its last step and the end of the pass (waiting for the slowest rank).
    pub idle_s: f64,
    /// KV payload bytes sent.
    pub bytes_sent: u64,
}

/// Gives a per-rank figure set that starts with [`RankFigures`] (field `figures`) direct
/// access to them (`r.compute_s`), as if they were its own fields.
#[macro_export]
macro_rules! deref_rank_figures {
    ($t:ty) => {
        impl std::ops::Deref for $t {
            type Target = $crate::metrics::RankFigures;
            fn deref(&self) -> &Self::Target {
                &self.figures
            }
        }
        impl std::ops::DerefMut for $t {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.figures
            }
        }
    };
}

/// `max / mean` of the ranks' compute seconds; 1 when nothing was computed.
pub fn imbalance(compute_s: impl IntoIterator<Item = f64>) -> f64 {
    let (mut sum, mut max, mut n) = (0.0, 0.0f64, 0usize);
    for c in compute_s {
        sum += c;
        max = max.max(c);
        n += 1;
    }
    let mean = sum / n.max(1) as f64;
    if mean > 0.0 {
        max / mean
    } else {
        1.0
    }
}

/// Mean over ranks of `1 − comm_wait_s / wall_s`, from `(comm_wait_s, wall_s)` per rank (a rank
/// with no wall time counts as fully overlapped); 1 for no ranks.
pub fn overlap(ranks: impl IntoIterator<Item = (f64, f64)>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for (wait, wall) in ranks {
        sum += if wall > 0.0 { 1.0 - wait / wall } else { 1.0 };
        n += 1;
    }
    if n == 0 {
        1.0
    } else {
        sum / n as f64
    }
}

/// `flops / wall_s` in GFLOP/s; 0 for no wall time.
pub fn gflops(flops: f64, wall_s: f64) -> f64 {
    if wall_s > 0.0 {
        flops / wall_s / 1e9
    } else {
        0.0
    }
}

/// Attention FLOPs: 4 · `head_dim` · (query head, key) pairs computed (two matrix products of
/// 2 FLOPs per multiply-add).
pub fn attention_flops(head_dim: usize, pairs: f64) -> f64 {
    4.0 * head_dim as f64 * pairs
}

/// The most bytes any rank sent.
pub fn max_bytes(bytes_sent: impl IntoIterator<Item = u64>) -> u64 {
    bytes_sent.into_iter().max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions() {
        assert_eq!(imbalance([1.0, 1.0, 4.0]), 2.0);
        assert_eq!(imbalance([0.0, 0.0]), 1.0);
        // Each rank's wait over its own wall: (1 − 1/4 + 1 − 0) / 2.
        assert_eq!(overlap([(1.0, 4.0), (0.0, 2.0)]), 0.875);
        assert_eq!(overlap([(1.0, 0.0)]), 1.0);
        assert_eq!(gflops(2e9, 2.0), 1.0);
        assert_eq!(gflops(1.0, 0.0), 0.0);
        assert_eq!(attention_flops(2, 3.0), 24.0);
        assert_eq!(max_bytes([3, 9, 1]), 9);
    }
}
