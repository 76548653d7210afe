//! `ringattn simulate`: the ring cost model ([`ringattn_striped::simulate`](mod@ringattn_striped::simulate)) on the command
//! line, with an optional calibration of this machine's kernel speed.

use std::process::ExitCode;

use clap::Args;
use ringattn::simulation::{predict, rank_rate, sim_mask};
use ringattn_runtime::{Error, Result, TileShape};
use ringattn_striped::{LayoutKind, SimConfig};

use crate::cli::{Dtype, LayoutChoice};
use crate::run::spec::flag_error;
use ringattn_striped::calibrate::{RankRate, RateProbe};

/// Options of `ringattn simulate`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    ringattn simulate --workers 8 --seq 262144 --heads 32 --head-dim 128 --causal --layout striped --gflops-per-rank 180000 --link-gbps 2400\n  \
    ringattn simulate --workers 4 --seq 16384 --causal --calibrate --cores 2 --link-gbps inf --latency-us 0\n  \
    ringattn simulate --workers 4096 --seq 16777216 --heads 32 --kv-heads 8 --causal --json -")]
pub struct SimulateArgs {
    /// Ranks in the ring P.
    #[arg(short = 'p', long)]
    pub workers: usize,
    /// Sequence length N (tokens).
    #[arg(short = 'n', long)]
    pub seq: usize,
    /// Heads and head dimension.
    #[command(flatten)]
    pub shape: crate::args::heads::HeadArgs,
    /// Causal mask.
    #[arg(long)]
    pub causal: bool,
    /// How K and V travel (bytes per hop: f32 4, bf16 2 per element).
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Token layout; `auto` simulates contiguous, striped and zigzag (and docs with --docs)
    /// and keeps the fastest.
    #[arg(long, value_enum, default_value_t = LayoutChoice::Auto)]
    pub layout: LayoutChoice,
    /// Packed documents and a sliding window.
    #[command(flatten)]
    pub mask: crate::args::mask::MaskArgs,
    /// One rank's kernel rate on unmasked tiles, GFLOP/s [default: 100, or --calibrate].
    #[arg(long, value_name = "F", conflicts_with = "calibrate")]
    pub gflops_per_rank: Option<f64>,
    /// Measure this machine's single-thread kernel rate first (about a second) and use
    /// rate × --threads per rank.
    #[arg(long)]
    pub calibrate: bool,
    /// Cost of a masked (Partial) tile relative to an unmasked one [default: 1.15, or
    /// measured by --calibrate].
    #[arg(long, value_name = "C")]
    pub partial_cost: Option<f64>,
    /// Kernel threads per rank (scales a calibrated rate; shares --cores).
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,
    /// Cores all ranks share (one node); with more rank threads than cores, the busy ranks
    /// share them fairly [default: a core per thread].
    #[arg(long)]
    pub cores: Option<usize>,
    /// With --cores: per-thread speed when every core is busy, relative to one busy thread
    /// (shared caches, memory bandwidth, turbo) [default: 1, or measured by --calibrate].
    #[arg(long, value_name = "S")]
    pub all_busy_speed: Option<f64>,
    /// Link bandwidth per rank in Gbit/s (`inf` = free transfers, like the local backend).
    #[arg(long, default_value_t = 100.0)]
    pub link_gbps: f64,
    /// Latency per hop in microseconds.
    #[arg(long, default_value_t = 2.0)]
    pub latency_us: f64,
    /// Kernel tile shape (`--tile-q`, `--tile-k`).
    #[command(flatten)]
    pub tile: crate::args::tile::TileArgs,
    /// Write the prediction as JSON to PATH ("-" = stdout instead of the summary).
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,
    /// DuoAttention (needs --causal): the retrieval heads' pass, then the streaming heads' pass
    /// over their windows only (streaming transfers counted as whole blocks, an upper bound).
    #[command(flatten)]
    pub duo: crate::args::duo::DuoArgs,
}

/// Runs `ringattn simulate`.
pub fn run_simulate(args: &SimulateArgs) -> Result<ExitCode> {
    crate::args::check_outputs(None, args.json.as_deref())?;
    let tile = args.tile.shape();
    if args.threads == 0 {
        return Err(Error::config("--threads must be at least 1"));
    }
    if args.duo.enabled() && !args.causal {
        return Err(flag_error(ringattn::ApiError::DuoNeedsCausal));
    }
    let duo = args.duo.plan(args.shape.kv_heads())?;
    let (docs, choice) = (args.mask.docs()?, (args.layout, args.duo.enabled()));
    let mask = sim_mask(
        args.causal,
        args.mask.window,
        docs.as_ref(),
        args.seq,
        choice,
    )
    .map_err(flag_error)?;
    let rate = rate(args, tile)?;
    let base = SimConfig {
        world: args.workers,
        seq: args.seq,
        heads: args.shape.heads,
        kv_heads: args.shape.kv_heads(),
        head_dim: args.shape.head_dim,
        dtype: args.dtype,
        mask,
        layout: LayoutKind::Contiguous,
        tile,
        gflops_per_rank: rate.gflops,
        partial_cost: args.partial_cost.unwrap_or(rate.partial_cost),
        threads_per_rank: args.threads,
        cores: args.cores,
        all_busy_speed: args.all_busy_speed.unwrap_or(rate.all_busy_speed),
        link_gbps: args.link_gbps,
        latency_us: args.latency_us,
    };
    let prediction = predict(&base, args.layout, duo.as_ref())?;
    let out = prediction.output(&rate.source, duo.as_ref());
    crate::out::json_or_summary(args.json.as_deref(), &out.json(), &out.summary())?;
    Ok(ExitCode::SUCCESS)
}

/// The rank rate (given, `--calibrate`d or the default; see [`rank_rate`]).
fn rate(args: &SimulateArgs, tile: TileShape) -> Result<RankRate> {
    if !args.calibrate || args.gflops_per_rank.is_some() {
        return rank_rate(args.gflops_per_rank, None);
    }
    if args.shape.head_dim == 0 || tile.q == 0 || tile.k == 0 || args.workers == 0 {
        return Err(Error::config(
            "--workers, --head-dim, --tile-q and --tile-k must be at least 1",
        ));
    }
    let probe = RateProbe {
        head_dim: args.shape.head_dim,
        seq: args.seq,
        workers: args.workers,
        threads: args.threads,
        cores: args.cores.unwrap_or(ringattn::allowed_cores()),
        one_node: args.cores.is_some(),
        tile,
    };
    rank_rate(None, Some(&probe))
}
