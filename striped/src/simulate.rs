//! A cost-model simulator of the ring pass: carries one measured (or assumed) kernel speed to
//! rings of thousands of ranks.
//!
//! - Compute per rank per step comes from the kernel's own tile classification
//!   ([`TileWork`], i.e. `count_tiles`), weighted like the partitioner (a Partial tile costs
//!   [`SimConfig::partial_cost`], by default [`PARTIAL_TILE_COST`]) and converted to seconds with the rank's rate on Full tiles.
//! - A hop sends the K and V of the block a rank holds: `2 · rows · Hkv · D · b` bytes
//!   (b = 4 for f32, 2 for bf16),
//!   taking `latency + bytes / bandwidth`; a rank's sends leave one after another.
//! - Double buffering as a discrete-event recurrence: rank r starts step t when it finished
//!   step t − 1 and the block from rank r − 1 has arrived; that block left when rank r − 1
//!   started step t − 1 (the pass posts the send before computing).
//! - With `cores` set, the ranks share one node: the active ranks progress at
//!   `min(1, cores / (threads · active))` of their speed (processor sharing), times the
//!   per-thread slowdown of busy neighbours (`all_busy_speed`: shared caches, memory bandwidth,
//!   turbo limits), see `simulate_shared`; otherwise every rank runs at full speed.
//!
//! The result predicts per-step times, the wall time (slowest rank), imbalance (max / mean
//! compute seconds per rank), overlap (mean over ranks of 1 − comm wait / the rank's own wall)
//! and bytes sent per rank, all by the definitions of `ringattn_ring::metrics`, which the run
//! report uses too.

use ringattn_runtime::{Dtype, Error, Mask, Result, TileShape};
use serde::Serialize;

use crate::partitioner::LayoutKind;
#[cfg(doc)]
use crate::partitioner::PARTIAL_TILE_COST;
pub use crate::simulate_limits::{MAX_SIM_TILE_WORK, MAX_SIM_WORLD};
pub(crate) use crate::simulate_trace::Trace;
use crate::tilework::TileWork;

/// What to simulate and on what machine.
#[derive(Clone, Debug, Serialize)]
pub struct SimConfig {
    /// Ring size P.
    pub world: usize,
    /// Sequence length N.
    pub seq: usize,
    /// Query heads H.
    pub heads: usize,
    /// KV heads (what travels).
    pub kv_heads: usize,
    /// Head dimension D.
    pub head_dim: usize,
    /// How K and V travel (f32: 4 bytes per element, bf16: 2).
    #[serde(serialize_with = "dtype_name")]
    pub dtype: Dtype,
    /// The mask.
    pub mask: Mask,
    /// The layout.
    #[serde(serialize_with = "layout_name")]
    pub layout: LayoutKind,
    /// Kernel tile sizes.
    pub tile: TileShape,
    /// One rank's kernel rate on Full tiles, GFLOP/s (4 · D · tile_q · tile_k FLOPs per tile
    /// and head), all its threads together.
    pub gflops_per_rank: f64,
    /// Cost of a Partial (masked) tile relative to a Full one ([`PARTIAL_TILE_COST`] unless
    /// calibrated).
    pub partial_cost: f64,
    /// Kernel threads per rank (only used to share `cores`).
    pub threads_per_rank: usize,
    /// Cores shared by all ranks (one node), or `None` for a core per thread.
    pub cores: Option<usize>,
    /// With `cores`: per-thread speed when every core is busy, relative to one busy thread
    /// (1.0 = no slowdown; counts in between are interpolated linearly).
    pub all_busy_speed: f64,
    /// Link bandwidth per rank in Gbit/s (`f64::INFINITY` = free transfers).
    pub link_gbps: f64,
    /// Per-hop latency in microseconds.
    pub latency_us: f64,
}

fn dtype_name<S: serde::Serializer>(d: &Dtype, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(d.name())
}

fn layout_name<S: serde::Serializer>(k: &LayoutKind, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(k.name())
}

impl SimConfig {
    /// Checks sizes: every value at least 1, `heads % kv_heads == 0`, at least one token per
    /// rank, positive finite rate, non-negative bandwidth and latency.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("--workers", self.world),
            ("--seq", self.seq),
            ("--heads", self.heads),
            ("--kv-heads", self.kv_heads),
            ("--head-dim", self.head_dim),
            ("--tile-q", self.tile.q),
            ("--tile-k", self.tile.k),
            ("--threads", self.threads_per_rank),
        ] {
            if v == 0 {
                return Err(Error::config(format!("{name} must be at least 1")));
            }
        }
        if self.cores == Some(0) {
            return Err(Error::config("--cores must be at least 1"));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(Error::config(format!(
                "--heads {} is not a multiple of --kv-heads {}",
                self.heads, self.kv_heads
            )));
        }
        if self.world > self.seq {
            return Err(Error::config(format!(
                "more workers ({}) than tokens ({}): every worker needs at least one token",
                self.world, self.seq
            )));
        }
        crate::simulate_limits::validate_cost(self)?;
        if !(self.all_busy_speed.is_finite() && self.all_busy_speed > 0.0) {
            return Err(Error::config("--all-busy-speed must be a positive number"));
        }
        if !(self.partial_cost.is_finite() && self.partial_cost >= 0.0) {
            return Err(Error::config(
                "--partial-cost must be a non-negative number",
            ));
        }
        if !(self.gflops_per_rank.is_finite() && self.gflops_per_rank > 0.0) {
            return Err(Error::config("--gflops-per-rank must be a positive number"));
        }
        if self.link_gbps.is_nan() || self.link_gbps <= 0.0 {
            return Err(Error::config("--link-gbps must be positive (or inf)"));
        }
        if !(self.latency_us.is_finite() && self.latency_us >= 0.0) {
            return Err(Error::config("--latency-us must be a non-negative number"));
        }
        Ok(())
    }

    /// Seconds one rank takes for one Full tile of one head (at full speed).
    pub fn tile_s(&self) -> f64 {
        4.0 * self.head_dim as f64 * self.tile.q as f64 * self.tile.k as f64
            / (self.gflops_per_rank * 1e9)
    }

    /// Bytes of one hop carrying a block of `rows` tokens (K and V in `dtype`).
    pub fn block_bytes(&self, rows: usize) -> u64 {
        let bytes = 2
            * rows as u128
            * self.kv_heads as u128
            * self.head_dim as u128
            * self.dtype.size() as u128;
        // Saturates: `validate` refuses configurations whose blocks pass u64.
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }

    /// Seconds the link is busy sending `bytes` (without latency).
    pub fn transfer_s(&self, bytes: u64) -> f64 {
        bytes as f64 * 8.0 / (self.link_gbps * 1e9)
    }

    /// True when the ranks' threads exceed the shared cores.
    pub fn oversubscribed(&self) -> bool {
        self.cores
            .is_some_and(|c| self.world.saturating_mul(self.threads_per_rank) > c)
    }

    /// True when ranks share cores or slow each other down: the processor-sharing engine runs.
    pub fn shares_node(&self) -> bool {
        self.oversubscribed() || (self.cores.is_some() && self.all_busy_speed != 1.0)
    }

    /// Speed of each active rank (relative to its full speed) when `active` ranks compute at
    /// once on the shared `cores`.
    pub fn shared_speed(&self, active: usize) -> f64 {
        let Some(cores) = self.cores else {
            return 1.0;
        };
        if active == 0 {
            return 1.0;
        }
        let demand = self.threads_per_rank as f64 * active as f64;
        let cores = cores as f64;
        let busy = demand.min(cores);
        let neighbours = if cores > 1.0 {
            1.0 + (self.all_busy_speed - 1.0) * (busy - 1.0) / (cores - 1.0)
        } else {
            1.0
        };
        (cores / demand).min(1.0) * neighbours
    }
}

/// Predicted figures of one rank.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RankSim {
    /// Rank, tokens, compute, wait and idle seconds, bytes sent (compute: wall time inside
    /// the kernel, as measured).
    #[serde(flatten)]
    pub figures: ringattn_ring::metrics::RankFigures,
    /// Tiles computed (Full + Partial, all heads).
    pub tiles_computed: u64,
}

ringattn_ring::deref_rank_figures!(RankSim);

/// Predicted figures of one ring step (over all ranks).
#[derive(Clone, Debug, Default, Serialize)]
pub struct StepSim {
    /// The step.
    pub step: usize,
    /// Earliest start of the step over ranks (seconds from the start of the pass).
    pub start_s: f64,
    /// Latest end of the step's compute over ranks.
    pub end_s: f64,
    /// Slowest rank's compute seconds in this step.
    pub compute_max_s: f64,
    /// Mean compute seconds over ranks in this step.
    pub compute_mean_s: f64,
    /// Each rank's compute seconds in this step (kept for small rings only, see
    /// [`PER_RANK_STEPS_MAX`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_s: Option<Vec<f64>>,
}

/// Up to this ring size each [`StepSim`] keeps every rank's compute seconds.
pub const PER_RANK_STEPS_MAX: usize = 64;

/// The simulator's prediction.
#[derive(Clone, Debug, Serialize)]
pub struct Simulation {
    /// Wall seconds of the ring pass (slowest rank).
    pub predicted_wall_s: f64,
    /// max over ranks of compute seconds / mean.
    pub predicted_imbalance: f64,
    /// Most KV bytes any rank sends.
    pub bytes_per_rank: u64,
    /// FLOPs the mask requires (4 · D · H · allowed pairs), as in the run report.
    pub flops: f64,
    /// `flops / predicted_wall_s / 1e9`.
    pub predicted_gflops: f64,
    /// Mean over ranks of 1 − comm_wait / wall.
    pub predicted_overlap: f64,
    /// Seconds of one full (N/P)×(N/P) block on one rank at full speed, all heads (the unit of
    /// the closed forms: contiguous causal ≈ P − ½ blocks, striped ≈ P/2).
    pub full_block_s: f64,
    /// Longest hop (latency + transfer) in seconds.
    pub hop_s: f64,
    /// Whether ranks shared cores (processor-sharing engine).
    pub shared_cores: bool,
    /// `count_tiles` calls the simulation needed (the rest were memoised or shortcut).
    pub tile_count_calls: u64,
    /// Per-rank figures.
    pub ranks: Vec<RankSim>,
    /// Per-step figures.
    pub per_step: Vec<StepSim>,
}

/// Per-(rank, step) inputs of the event engines.
pub(crate) struct StepCosts<'a> {
    cfg: &'a SimConfig,
    work: TileWork,
    pub(crate) rows: Vec<usize>,
    /// (bytes, link-busy seconds) of a hop carrying each rank's whole block.
    hops: Vec<(u64, f64)>,
    /// Each rank's visible key ranges when the mask prunes ring traffic (windows, documents,
    /// streaming heads): a hop then carries only the rows still needed, as the ring pass does.
    visible: Option<Vec<Vec<std::ops::Range<usize>>>>,
    /// Seconds per Full tile over all heads.
    unit_s: f64,
}

impl<'a> StepCosts<'a> {
    pub(crate) fn new(cfg: &'a SimConfig) -> Self {
        let work = TileWork::new(cfg.layout, cfg.world, cfg.seq, cfg.mask.clone(), cfg.tile);
        let rows: Vec<usize> = (0..cfg.world).map(|r| work.positions(r).len()).collect();
        let hops = rows
            .iter()
            .map(|&n| {
                let bytes = cfg.block_bytes(n);
                (bytes, cfg.transfer_s(bytes))
            })
            .collect();
        let visible = cfg.mask.prunes_traffic().then(|| {
            (0..cfg.world)
                .map(|r| cfg.mask.visible_keys(work.positions(r)))
                .collect()
        });
        StepCosts {
            cfg,
            work,
            rows,
            hops,
            visible,
            unit_s: cfg.tile_s() * cfg.heads as f64,
        }
    }

    /// Source rank of the block `rank` holds at `step`.
    pub(crate) fn source(&self, rank: usize, step: usize) -> usize {
        let p = self.cfg.world;
        (rank + p - step % p) % p
    }

    /// (compute seconds at full speed, tiles computed over all heads) of `rank` on the block
    /// of `source`.
    pub(crate) fn compute(&mut self, rank: usize, source: usize) -> (f64, u64) {
        let c = self.work.counts(rank, source);
        let units = c.full as f64 + self.cfg.partial_cost * c.partial as f64;
        (units * self.unit_s, c.computed() * self.cfg.heads as u64)
    }

    /// (bytes, link-busy seconds, latency seconds) of the hop by which `rank` forwards
    /// `source`'s block at `step`: the whole block, or under a pruning mask the rows the ranks
    /// ahead still need ([`ringattn_ring::still_needed`], the ring pass's own rule).
    pub(crate) fn hop(&self, rank: usize, step: usize, source: usize) -> (u64, f64, f64) {
        let latency = self.cfg.latency_us * 1e-6;
        let Some(visible) = &self.visible else {
            let (bytes, busy) = self.hops[source];
            return (bytes, busy, latency);
        };
        let needed = ringattn_ring::still_needed(visible, rank, step);
        let rows = self
            .work
            .positions(source)
            .intersect_ranges(&needed)
            .0
            .len();
        let bytes = self.cfg.block_bytes(rows);
        (bytes, self.cfg.transfer_s(bytes), latency)
    }
}

/// Runs the simulation (validating `cfg` first).
pub fn simulate(cfg: &SimConfig) -> Result<Simulation> {
    cfg.validate()?;
    // A tile larger than every shard costs what the shard holds, not the tile's nominal size.
    let rows = cfg.seq.div_ceil(cfg.world);
    let clamped;
    let cfg = if cfg.tile.q > rows || cfg.tile.k > rows {
        clamped = SimConfig {
            tile: TileShape {
                q: cfg.tile.q.min(rows),
                k: cfg.tile.k.min(rows),
            },
            ..cfg.clone()
        };
        &clamped
    } else {
        cfg
    };
    let mut costs = StepCosts::new(cfg);
    let p = cfg.world;
    let mut trace = Trace::new(p, cfg.world <= PER_RANK_STEPS_MAX);
    if cfg.shares_node() {
        crate::simulate_shared::run(cfg, &mut costs, &mut trace);
    } else {
        run_dedicated(cfg, &mut costs, &mut trace);
    }
    let mut sim = trace.finish(cfg, &costs);
    sim.shared_cores = cfg.shares_node();
    sim.tile_count_calls = costs.work.direct_calls;
    Ok(sim)
}

/// Every rank at full speed: the plain recurrence, one step at a time (O(P²) time, O(P)
/// memory).
pub(crate) fn run_dedicated(cfg: &SimConfig, costs: &mut StepCosts<'_>, trace: &mut Trace) {
    let p = cfg.world;
    let mut finish = vec![0.0f64; p];
    let mut send_free = vec![0.0f64; p];
    // arrival[r]: when the block for rank r's current step arrived (own block: time 0).
    let mut arrival = vec![0.0f64; p];
    let mut next_arrival = vec![0.0f64; p];
    for step in 0..p {
        // Rank r holds the block of rank (r − step) mod P.
        let mut source = (p - step) % p;
        for r in 0..p {
            let start = if step == 0 {
                0.0
            } else {
                finish[r].max(arrival[r])
            };
            let (compute_s, tiles) = costs.compute(r, source);
            if step > 0 {
                trace.wait(r, start - finish[r]);
            }
            finish[r] = start + compute_s;
            trace.step(r, step, start, compute_s, tiles);
            if step + 1 < p {
                let (bytes, busy, latency) = costs.hop(r, step, source);
                let send_start = start.max(send_free[r]);
                send_free[r] = send_start + busy;
                next_arrival[(r + 1) % p] = send_start + busy + latency;
                trace.sent(r, bytes);
            }
            source = if source + 1 == p { 0 } else { source + 1 };
        }
        std::mem::swap(&mut arrival, &mut next_arrival);
    }
    for (r, f) in finish.iter().enumerate() {
        trace.done(r, *f);
    }
}
