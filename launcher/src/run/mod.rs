//! `ringattn run`: its arguments, their mapping to the library's [`RunSpec`](ringattn::RunSpec)
//! (spec.rs), the backends and what the root prints.

pub mod spec;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ringattn::job::Job;
use ringattn::launch::backend::{resolve, Backend};
use ringattn::rank::Gathered;
use ringattn::report::Report;
use ringattn_runtime::Error;

/// Options of `ringattn run`.
#[derive(Clone, Debug, Args)]
#[command(after_help = "Examples:\n  \
    ringattn run --workers 2 --seq 16384 --heads 8 --head-dim 128 --causal --layout striped\n  \
    ringattn run --seq 4096 --causal --check --json report.json\n  \
    ringattn run --input qkv.safetensors --output out.safetensors --causal --check\n  \
    mpirun -n 4 ringattn run --backend mpi --seq 16384 --causal --check   (built with --features mpi)\n  \
    ringattn launch -p 4 -- run --seq 16384 --causal --check               (the same, mpirun found for you)")]
pub struct RunArgs {
    /// What `run` shares with `decode` (backend, workers, heads, layout, threads, report...).
    #[command(flatten)]
    pub job: crate::args::job::JobArgs,
    /// Sequence length N (tokens) [default: 4096, or the input file's].
    #[arg(short = 'n', long)]
    pub seq: Option<usize>,
    /// Causal mask: token q attends keys k <= q.
    #[arg(long)]
    pub causal: bool,
    /// Verify ROWS rows per worker (all heads) against the f64 reference; without ROWS: every
    /// row when N <= 2048, else 32 rows per worker. Fails the run (exit 1) when an element's
    /// error exceeds 2e-5 + 2e-5·|ref| or an lse's 1e-5 + 2e-6·|lse| (2e-2 + 2e-2·|ref| for
    /// both with --dtype bf16), or a value is not finite.
    #[arg(long, value_name = "ROWS", num_args = 0..=1)]
    pub check: Option<Option<usize>>,
    /// Read Q/K/V from a safetensors file: f32 tensors q [H, N, D], k and v [Hkv, N, D].
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Write out [H, N, D] and lse [H, N] (original token order) to a safetensors file.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Kernel tile shape (`--tile-q`, `--tile-k`).
    #[command(flatten)]
    pub tile: crate::args::tile::TileArgs,
    /// Testing aid: make worker RANK fail at ring step STEP (format RANK:STEP).
    #[arg(long, value_name = "RANK:STEP", hide = true)]
    pub inject_fault: Option<String>,
    /// Packed documents and sliding window.
    #[command(flatten)]
    pub mask: crate::args::mask::MaskArgs,
}

/// Runs `ringattn run` with the backend it resolves to; returns its exit code. Under MPI this
/// process is one rank (`ringattn::launch::mpi_rank::run_job`: the ranks agree on bad
/// options; rank 0 reports, the other ranks stay silent and return the same exit code).
pub fn run(args: &RunArgs) -> Result<ExitCode, Error> {
    args.job.precheck(args.output.as_deref())?;
    match resolve(args.job.backend).map_err(spec::flag_error)? {
        Backend::Local => {
            let job = ringattn::prepare_local(&args.spec()?).map_err(spec::flag_error)?;
            let gathered = ringattn::local::run_local(&job)?;
            finish(args, &job, "local", &gathered).map(ExitCode::from)
        }
        #[cfg(feature = "mpi")]
        Backend::Mpi => ringattn::launch::mpi_rank::run_job(
            &|| args.spec(),
            ringattn::allowed_cores(),
            ringattn::memory::MemoryCheck::ONE_RANK,
            || Ok(()),
            crate::args::cli_error,
            ringattn::rank::run_rank,
            |job, backend, g| finish(args, job, backend, g),
        )
        .map(ExitCode::from),
        #[cfg(not(feature = "mpi"))]
        Backend::Mpi => Err(Error::config(ringattn::launch::backend::HOW_TO_BUILD_MPI)),
    }
}

/// The root's end of a run: writes the output file and the report, and returns the exit code
/// (0, or 1 when the check failed).
pub fn finish(args: &RunArgs, job: &Job, backend: &str, gathered: &Gathered) -> Result<u8, Error> {
    if let Some(path) = &args.output {
        ringattn::output::write_output(path, job, gathered)?;
    }
    let report = Report::new(job, backend, gathered);
    args.job
        .emit(|path| report.write_json(path), &report.summary())?;
    match report.check.as_ref().filter(|c| !c.passed) {
        Some(c) => {
            eprintln!("ringattn: error: {}", c.failed_line("check", job.dtype));
            Ok(1)
        }
        None => Ok(0),
    }
}
