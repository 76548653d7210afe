//! `ringattn bench ...`: benchmark groups, one subcommand each ([`BenchCommand`]), each with
//! its own module and arguments.

pub mod kernel;
pub mod model;
pub mod scaling;
pub mod sched;

use std::process::ExitCode;

use clap::{Args, Subcommand};
use ringattn_runtime::Result;

/// Options of `ringattn bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark.
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The benchmark groups.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Sweep workers × layouts × lengths (strong or weak scaling); append one run report per
    /// line to DIR/results.jsonl (finished runs are skipped) and draw DIR/scaling.png/.svg and
    /// DIR/balance.png.
    Scaling(scaling::ScalingArgs),
    /// The single-node kernel's GFLOP/s over seq × head dim × threads × mask, beside the
    /// measured FMA peak; one JSON object per line with --json.
    Kernel(kernel::KernelArgs),
    /// The kernel under the hybrid, static and rayon schedulers (optionally with a slowed
    /// core), against the ideal split; one JSON object with --json.
    Sched(sched::SchedBenchArgs),
    /// SmolLM2 through the ring: prefill / decode tokens/s, TTFT, peak RSS, KV bytes per rank
    /// over prompt lengths × workers × layouts (llama.cpp beside it with --llamacpp); resumable
    /// DIR/results.jsonl and DIR/model.png/.svg.
    Model(model::ModelBenchArgs),
}

/// Runs `ringattn bench ...` on a machine with `allowed_cores` cores.
pub fn run_bench(args: &BenchArgs, allowed_cores: usize) -> Result<ExitCode> {
    match &args.command {
        BenchCommand::Scaling(a) => scaling::run_scaling(a, allowed_cores),
        BenchCommand::Kernel(a) => kernel::run_kernel_bench(a, allowed_cores),
        BenchCommand::Sched(a) => sched::run_sched_bench(a, allowed_cores),
        BenchCommand::Model(a) => model::run_model_bench(a, allowed_cores),
    }
}
