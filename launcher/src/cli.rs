//! Command-line interface: `ringattn run ...`, `ringattn decode ...` and the helpers.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    Run(RunArgs),
    /// Prefill a prompt over the ring, then decode tokens with the KV cache kept distributed.
    Decode(crate::decode_cmd::DecodeArgs),
    /// Show the SIMD level, the measured FMA peak per core, the cores and the affinity mask.
    Info(crate::info::InfoArgs),
    /// Predict a ring pass (step times, wall time, imbalance, bytes) with the cost model.
    Simulate(crate::simulate_cmd::SimulateArgs),
    /// Benchmarks (`bench scaling`: sweep workers × layouts, write results and plots).
    Bench(crate::bench::BenchArgs),
    /// Re-draw the plots of a `bench scaling` directory from its results.jsonl.
    Plot(crate::plot::PlotArgs),
    /// Start `run` as P MPI ranks under mpirun/mpiexec (`launch -n 4 -- run --seq 16384`).
    Launch(crate::launch::LaunchArgs),
    /// Print a SLURM batch script that runs `run` with the MPI backend (`sbatch ... -- run ...`).
    Sbatch(crate::sbatch::SbatchArgs),
    /// DuoAttention tools (`duo inspect PATTERN`: retrieval heads per layer and KV memory).
    Duo(crate::duo_cmd::DuoCmdArgs),
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
}

/// K/V storage types accepted by `--dtype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    /// 32-bit floats.
    F32,
    /// bfloat16 (8-bit mantissa; checked against the reference at 2e-2).
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

/// Communication backends accepted by `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// `mpi` when built with the `mpi` feature and started by mpirun/mpiexec/srun, else `local`.
    Auto,
    /// Workers are threads of this process (no MPI).
    Local,
    /// One process per rank under mpirun/mpiexec/srun (needs `--features mpi`).
    Mpi,
}

/// Options of `ringattn run`.
#[derive(Clone, Debug, Args)]
#[command(after_help = "Examples:\n  \
    ringattn run --workers 2 --seq 16384 --heads 8 --head-dim 128 --causal --layout striped\n  \
    ringattn run --seq 4096 --causal --check --json report.json\n  \
    ringattn run --input qkv.safetensors --output out.safetensors --causal --check\n  \
    mpirun -n 4 ringattn run --backend mpi --seq 16384 --causal --check   (built with --features mpi)\n  \
    ringattn launch -n 4 -- run --seq 16384 --causal --check               (the same, mpirun found for you)")]
pub struct RunArgs {
    /// Communication backend: `local` (threads), `mpi` (processes under mpirun/srun) or `auto`.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Number of workers in the ring [default: cores allowed to this process; with MPI: the
    /// number of MPI processes, which it must equal when given].
    #[arg(short = 'p', long)]
    pub workers: Option<usize>,
    /// Sequence length N (tokens) [default: 4096, or the input file's].
    #[arg(short = 'n', long)]
    pub seq: Option<usize>,
    /// Query heads H [default: 8, or the input file's].
    #[arg(long)]
    pub heads: Option<usize>,
    /// Key/value heads (GQA when fewer than --heads; must divide it) [default: --heads].
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// Head dimension D [default: 128, or the input file's].
    #[arg(short = 'd', long)]
    pub head_dim: Option<usize>,
    /// Causal mask: token q attends keys k <= q.
    #[arg(long)]
    pub causal: bool,
    /// Token layout over workers.
    #[arg(long, value_enum, default_value_t = LayoutArg::Auto)]
    pub layout: LayoutArg,
    /// Storage type of K and V (stored, sent and cached): bf16 halves KV memory and ring
    /// traffic; queries, the softmax state and all arithmetic stay f32.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
    /// Kernel threads per worker [default: allowed cores / workers, at least 1; with MPI:
    /// the rank's share of the cores its node's ranks may use]. Ranks sharing a node get
    /// disjoint cores, each kernel thread pinned to one (see --no-pin); when ranks × threads
    /// exceed the allowed cores, rank 0 warns and the job runs unpinned.
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Do not pin kernel threads to cores (the operating system places them).
    #[arg(long)]
    pub no_pin: bool,
    /// Seed of the synthetic Q/K/V (a pure function of seed, tensor, head and position).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Verify ROWS rows per worker (all heads) against the f64 reference; without ROWS: every
    /// row when N <= 2048, else 32 rows per worker. Fails the run (exit 1) beyond
    /// out 2e-5 / lse 1e-5 max abs error (2e-2 for both with --dtype bf16).
    #[arg(long, value_name = "ROWS", num_args = 0..=1)]
    pub check: Option<Option<usize>>,
    /// Write the JSON run report to PATH ("-" = stdout, which replaces the human summary).
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,
    /// Read Q/K/V from a safetensors file: f32 tensors q [H, N, D], k and v [Hkv, N, D].
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Write out [H, N, D] and lse [H, N] (original token order) to a safetensors file.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Query rows per kernel tile.
    #[arg(long, default_value_t = ringattn_runtime::TileShape::default().q)]
    pub tile_q: usize,
    /// Key rows per kernel tile.
    #[arg(long, default_value_t = ringattn_runtime::TileShape::default().k)]
    pub tile_k: usize,
    /// Testing aid: make worker RANK fail at ring step STEP (format RANK:STEP).
    #[arg(long, value_name = "RANK:STEP", hide = true)]
    pub inject_fault: Option<String>,
    /// Kernel thread scheduling.
    #[command(flatten)]
    pub sched: crate::sched_args::SchedArgs,
    /// Micro-kernels (`--isa`).
    #[command(flatten)]
    pub isa: crate::isa_arg::IsaArgs,
    /// DuoAttention: retrieval heads attend everything, streaming heads a sink + recent window.
    #[command(flatten)]
    pub duo: crate::duo_args::DuoArgs,
}
