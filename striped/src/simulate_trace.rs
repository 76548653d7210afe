//! The simulator's trace: what the event engines observe, turned into a [`Simulation`].

use ringattn_ring::metrics;

use crate::simulate::{RankSim, SimConfig, Simulation, StepCosts, StepSim};

/// Collects what the engines observe.
pub(crate) struct Trace {
    ranks: Vec<RankSim>,
    finish: Vec<f64>,
    steps: Vec<StepSim>,
    keep_per_rank: bool,
}

impl Trace {
    pub(crate) fn new(p: usize, keep_per_rank: bool) -> Self {
        Trace {
            ranks: (0..p)
                .map(|rank| RankSim {
                    figures: ringattn_ring::metrics::RankFigures {
                        rank,
                        ..Default::default()
                    },
                    ..RankSim::default()
                })
                .collect(),
            finish: vec![0.0; p],
            steps: (0..p)
                .map(|step| StepSim {
                    step,
                    start_s: f64::INFINITY,
                    compute_s: keep_per_rank.then(|| vec![0.0; p]),
                    ..StepSim::default()
                })
                .collect(),
            keep_per_rank,
        }
    }

    /// Rank `r` computed `step` from `start` for `compute_s` seconds (wall).
    pub(crate) fn step(&mut self, r: usize, step: usize, start: f64, compute_s: f64, tiles: u64) {
        let rank = &mut self.ranks[r];
        rank.compute_s += compute_s;
        rank.tiles_computed += tiles;
        let s = &mut self.steps[step];
        s.start_s = s.start_s.min(start);
        s.end_s = s.end_s.max(start + compute_s);
        s.compute_max_s = s.compute_max_s.max(compute_s);
        s.compute_mean_s += compute_s;
        if self.keep_per_rank {
            if let Some(v) = s.compute_s.as_mut() {
                v[r] = compute_s;
            }
        }
    }

    /// Rank `r` waited `secs` for its next block.
    pub(crate) fn wait(&mut self, r: usize, secs: f64) {
        self.ranks[r].comm_wait_s += secs.max(0.0);
    }

    /// Rank `r` sent a block of `bytes`.
    pub(crate) fn sent(&mut self, r: usize, bytes: u64) {
        self.ranks[r].bytes_sent += bytes;
    }

    /// Rank `r` finished its last step at `t`.
    pub(crate) fn done(&mut self, r: usize, t: f64) {
        self.finish[r] = t;
    }

    pub(crate) fn finish(mut self, cfg: &SimConfig, costs: &StepCosts<'_>) -> Simulation {
        let p = cfg.world as f64;
        let wall = self.finish.iter().copied().fold(0.0, f64::max);
        for (rank, (r, f)) in self.ranks.iter_mut().zip(&self.finish).enumerate() {
            r.idle_s = wall - f;
            r.tokens = costs.rows[rank];
        }
        for s in &mut self.steps {
            s.compute_mean_s /= p;
        }
        let flops = metrics::attention_flops(
            cfg.head_dim,
            cfg.heads as f64 * cfg.mask.allowed_pairs(cfg.seq) as f64,
        );
        // Each rank's wait over its own wall (it finishes `idle_s` before the slowest one).
        let overlap = metrics::overlap(self.ranks.iter().map(|r| (r.comm_wait_s, wall - r.idle_s)));
        let block_rows = cfg.seq as f64 / p;
        let full_block_s = (block_rows / cfg.tile.q as f64)
            * (block_rows / cfg.tile.k as f64)
            * cfg.heads as f64
            * cfg.tile_s();
        let max_rows = costs.rows.iter().copied().max().unwrap_or(0);
        Simulation {
            predicted_wall_s: wall,
            predicted_imbalance: metrics::imbalance(self.ranks.iter().map(|r| r.compute_s)),
            bytes_per_rank: metrics::max_bytes(self.ranks.iter().map(|r| r.bytes_sent)),
            flops,
            predicted_gflops: metrics::gflops(flops, wall),
            predicted_overlap: overlap,
            full_block_s,
            hop_s: cfg.latency_us * 1e-6 + cfg.transfer_s(cfg.block_bytes(max_rows)),
            shared_cores: false,
            tile_count_calls: 0,
            ranks: self.ranks,
            per_step: self.steps,
        }
    }
}
