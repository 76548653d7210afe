//! `ringattn run`: its arguments, their mapping to the library's [`RunSpec`](ringattn::RunSpec)
//! (spec.rs), the backends (backend.rs, mpi.rs) and what the root prints.

pub mod backend;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod spec;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ringattn::job::Job;
use ringattn::rank::Gathered;
use ringattn::report::Report;
use ringattn_runtime::Error;

use self::backend::Backend;
use crate::cli::{BackendArg, DtypeArg, LayoutArg};

/// Options of `ringattn run`.
#[derive(Clone, Debug, Args)]
#[command(after_help = "Examples:\n  \
    ringattn run --workers 2 --seq 16384 --heads 8 --head-dim 128 --causal --layout striped\n  \
    ringattn run --seq 4096 --causal --check --json report.json\n  \
    ringattn run --input qkv.safetensors --output out.safetensors --causal --check\n  \
    mpirun -n 4 ringattn run --backend mpi --seq 16384 --causal --check   (built with --features mpi)\n  \
    ringattn launch -p 4 -- run --seq 16384 --causal --check               (the same, mpirun found for you)")]
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
    /// traffic; queries, the softmax state and all arithmetic stay f32 (--check compares bf16
    /// with the reference at 2e-2).
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
    /// Allow --threads above the cores allowed to this process (up to 16 per core).
    #[arg(long)]
    pub oversubscribe: bool,
    /// Seed of the synthetic Q/K/V (a pure function of seed, tensor, head and position).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Verify ROWS rows per worker (all heads) against the f64 reference; without ROWS: every
    /// row when N <= 2048, else 32 rows per worker. Fails the run (exit 1) when an element's
    /// error exceeds 2e-5 + 2e-5·|ref| or an lse's 1e-5 + 2e-6·|lse| (2e-2 + 2e-2·|ref| for
    /// both with --dtype bf16), or a value is not finite.
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
    pub sched: crate::args::sched::SchedArgs,
    /// Micro-kernels (`--isa`).
    #[command(flatten)]
    pub isa: crate::args::isa::IsaArgs,
    /// DuoAttention: retrieval heads attend everything, streaming heads a sink + recent window.
    #[command(flatten)]
    pub duo: crate::args::duo::DuoArgs,
    /// Packed documents and sliding window.
    #[command(flatten)]
    pub mask: crate::args::mask::MaskArgs,
}

/// Exit code of an error: 2 for bad input, 1 for runtime failures.
pub fn exit_code(e: &Error) -> u8 {
    if e.is_user_error() {
        2
    } else {
        1
    }
}

/// Runs `ringattn run` with the backend it resolves to; returns its exit code.
pub fn run(args: &RunArgs) -> Result<ExitCode, Error> {
    args.isa.isa.activate()?;
    crate::args::check_threads(args.threads, ringattn::allowed_cores(), args.oversubscribe)?;
    crate::args::check_outputs(args.output.as_deref(), args.json.as_deref())?;
    match backend::resolve(args.backend)? {
        Backend::Local => {
            let job = ringattn::prepare_local(&args.spec()?).map_err(spec::flag_error)?;
            let gathered = ringattn::local::run_local(&job)?;
            finish(args, &job, "local", &gathered).map(ExitCode::from)
        }
        #[cfg(feature = "mpi")]
        Backend::Mpi => mpi::run_mpi(args, ringattn::allowed_cores()),
        #[cfg(not(feature = "mpi"))]
        Backend::Mpi => Err(Error::config(backend::HOW_TO_BUILD_MPI)),
    }
}

/// The root's end of a run: writes the output file and the report, and returns the exit code
/// (0, or 1 when the check failed).
pub fn finish(args: &RunArgs, job: &Job, backend: &str, gathered: &Gathered) -> Result<u8, Error> {
    if let Some(path) = &args.output {
        ringattn::output::write_output(path, job, gathered)?;
    }
    let report = Report::new(job, backend, gathered);
    match args.json.as_deref() {
        Some("-") => report.write_json("-")?,
        Some(path) => {
            report.write_json(path)?;
            out!("{}", report.summary());
        }
        None => out!("{}", report.summary()),
    }
    if let Some(c) = &report.check {
        if !c.passed {
            eprintln!(
                "ringattn: error: {}",
                check_failed_line("check", c, job.dtype)
            );
            return Ok(1);
        }
    }
    Ok(0)
}

/// The line `--check` prints when it fails: the largest errors and the tolerances.
pub fn check_failed_line(
    what: &str,
    c: &ringattn::report::CheckReport,
    dtype: ringattn::Dtype,
) -> String {
    let t = ringattn::check::Tolerance::for_dtype(dtype);
    format!(
        "{what} failed: max |out err| {:.3e}, max |lse err| {:.3e} (allowed: out {:.0e} + {:.0e}·|ref|, \
         lse {:.0e} + {:.0e}·|lse|; a non-finite value never passes)",
        c.max_abs_err, c.max_lse_err, t.out_atol, t.out_rtol, t.lse_atol, t.lse_rtol
    )
}
