//! Command-line interface: `ringattn run ...`, `ringattn decode ...` and the helpers.

use clap::{Parser, Subcommand};
use ringattn::launch::backend::{HOW_TO_BUILD_MPI, MPI_BUILT};
use ringattn_runtime::{Error, Result};

/// Exact ring attention over sequences too long for one machine, on CPUs.
///
/// Workers form a logical ring and pass KV blocks peer to peer; a partitioner picks the
/// contiguous (Ring Attention), striped (Striped Attention) or zigzag layout.
#[derive(Debug, Parser)]
#[command(name = "ringattn", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run distributed attention once and report time, balance, overlap and (optionally) accuracy.
    Run(crate::run::RunArgs),
    /// Prefill a prompt over the ring, then decode tokens with the KV cache kept distributed.
    Decode(crate::decode::DecodeArgs),
    /// Show the SIMD level, the measured FMA peak per core, the cores and the affinity mask.
    Info(crate::info::InfoArgs),
    /// Predict a ring pass (step times, wall time, imbalance, bytes) with the cost model.
    Simulate(crate::simulate::SimulateArgs),
    /// Benchmarks (`bench scaling`: sweep workers × layouts, write results and plots).
    Bench(crate::bench::BenchArgs),
    /// Re-draw the plots of a `bench scaling` directory from its results.jsonl.
    Plot(crate::plot::PlotArgs),
    /// Start `run` as P MPI ranks under mpirun/mpiexec (`launch -p 4 -- run --seq 16384`).
    Launch(crate::launch::LaunchArgs),
    /// Print a SLURM batch script that runs `run` with the MPI backend (`sbatch ... -- run ...`).
    Sbatch(crate::sbatch::SbatchArgs),
    /// Generate text with SmolLM2-135M (a llama GGUF): prompt prefilled over the ring, answer
    /// decoded with the KV caches kept distributed.
    Generate(Box<crate::generate::GenerateArgs>),
    /// DuoAttention tools (`duo inspect PATTERN`: retrieval heads per layer and KV memory).
    Duo(crate::duo::DuoCmdArgs),
    /// DuoAttention on the model, measured (`eval passkey`: needle-in-a-haystack grid;
    /// `eval fidelity`: distance to full attention).
    Eval(crate::eval::EvalArgs),
}

/// `--layout`, `--dtype` and `--backend` take the library's types (clap value enums).
pub use ringattn::{launch::backend::BackendChoice, Dtype, LayoutChoice};

/// Refuses `what` (a command or option as typed) in a build without MPI, saying how to build.
pub fn needs_mpi(what: &str) -> Result<()> {
    match MPI_BUILT {
        true => Ok(()),
        false => Err(Error::config(format!("{what}: {HOW_TO_BUILD_MPI}"))),
    }
}
