//! Command-line interface: `ringattn run ...`, `ringattn decode ...` and the helpers.

use clap::{Parser, Subcommand, ValueEnum};
use ringattn::launch::backend::{BackendChoice, HOW_TO_BUILD_MPI, MPI_BUILT};
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

/// Token layouts accepted by `--layout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    /// Let the partitioner's cost model choose (smallest predicted makespan).
    Auto,
    /// Ring Attention: each worker owns one contiguous block.
    Contiguous,
    /// Striped Attention: token i goes to worker i mod P (balanced under a causal mask).
    Striped,
    /// Worker r owns chunks r and 2P-1-r of 2P chunks (balanced, contiguous chunks).
    Zigzag,
    /// Packed documents (needs --docs, --docs-file or doc_lens in --input): whole documents
    /// per worker balanced by causal cost, documents too long to balance split zigzag-wise.
    Docs,
}

/// K/V storage types accepted by `--dtype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    /// 32-bit floats.
    F32,
    /// bfloat16 (8-bit mantissa; half the K/V bytes).
    Bf16,
}

impl DtypeArg {
    /// The runtime's storage type.
    pub fn dtype(self) -> ringattn_runtime::Dtype {
        match self {
            DtypeArg::F32 => ringattn_runtime::Dtype::F32,
            DtypeArg::Bf16 => ringattn_runtime::Dtype::Bf16,
        }
    }
}

/// Communication backends accepted by `--backend` (the library's [`BackendChoice`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// `mpi` when built with the `mpi` feature and started by mpirun/mpiexec/srun, else `local`.
    Auto,
    /// Workers are threads of this process (no MPI).
    Local,
    /// One process per rank under mpirun/mpiexec/srun (needs `--features mpi`).
    Mpi,
}

impl From<BackendArg> for BackendChoice {
    fn from(arg: BackendArg) -> Self {
        match arg {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Local => BackendChoice::Local,
            BackendArg::Mpi => BackendChoice::Mpi,
        }
    }
}

/// Refuses `what` (a command or option as typed) in a build without MPI, saying how to build.
pub fn needs_mpi(what: &str) -> Result<()> {
    match MPI_BUILT {
        true => Ok(()),
        false => Err(Error::config(format!("{what}: {HOW_TO_BUILD_MPI}"))),
    }
}
