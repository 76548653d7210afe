//! `ringattn decode`: a ring prefill of `--prefill` tokens, then `--steps` decoded tokens with the
//! KV cache distributed over the workers (plain, or DuoAttention when given a plan), on the
//! local or the MPI backend; the options (and their validation, through [`Job`]) are `run`'s.

use std::process::ExitCode;

use clap::Args;
use ringattn::decode_rank::{decode_rank, DecodeGathered, DecodeJob};
use ringattn::decode_report::DecodeReport;
use ringattn::job::Job;
use ringattn::memory::MemoryCheck;
use ringattn::{CheckRows, RunSpec};
use ringattn_runtime::Result;

use crate::args::cli_error;
use crate::run::spec::flag_error;
use ringattn::launch::backend::{self, Backend};

/// Options of `ringattn decode`.
#[derive(Clone, Debug, Args)]
#[command(after_help = "Examples:\n  \
    ringattn decode --prefill 8192 --steps 32 --workers 2 --heads 32 --head-dim 128\n  \
    ringattn decode --prefill 4096 --steps 16 --layout striped --check --json -\n  \
    mpirun -n 4 ringattn decode --backend mpi --prefill 16384 --steps 64   (built with --features mpi)")]
pub struct DecodeArgs {
    /// Prompt length N: tokens prefilled by the ring pass before decoding.
    #[arg(long, default_value_t = 4096)]
    pub prefill: usize,
    /// Tokens to decode after the prefill (positions N .. N+steps).
    #[arg(long, default_value_t = 32)]
    pub steps: usize,
    /// What `decode` shares with `run` (backend, workers, heads, layout, threads, report...).
    #[command(flatten)]
    pub job: crate::args::job::JobArgs,
    /// Verify ROWS evenly spaced decoded rows per worker (all heads) against the f64
    /// reference; without ROWS: every decoded row. Fails the run (exit 1) beyond
    /// 2e-5 + 2e-5·|ref| per element and 1e-5 + 2e-6·|lse| (2e-2 + 2e-2·|ref| with
    /// --dtype bf16), or on a non-finite value.
    #[arg(long, value_name = "ROWS", num_args = 0..=1)]
    pub check: Option<Option<usize>>,
    /// Accepted for symmetry with `run`: decode is always causal (a no-op switch).
    #[arg(long)]
    pub causal: bool,
    /// Packed documents and sliding window.
    #[command(flatten)]
    pub mask: crate::args::mask::MaskArgs,
}

impl DecodeArgs {
    /// The spec of the prefill: `seq` is `--prefill`, causal.
    pub fn run_spec(&self) -> Result<RunSpec> {
        Ok(RunSpec {
            seq: Some(self.prefill),
            causal: true,
            docs: self.mask.docs()?,
            window: self.mask.window,
            ..self.job.spec()?
        })
    }
}

/// Runs `ringattn decode`, with the DuoAttention plan of `--duo`/`--retrieval-ratio` if given
/// (else plain decode, every head a retrieval head).
pub fn run_decode(args: &DecodeArgs) -> Result<ExitCode> {
    args.job.precheck(None)?;
    // The KV heads before the job is validated: --kv-heads, else --heads, else 8.
    let duo = (args.job.duo).plan(args.job.kv_heads.or(args.job.heads).unwrap_or(8))?;

    let decode = DecodeJob {
        steps: args.steps,
        duo,
        check: args
            .check
            .map(|rows| rows.map_or(CheckRows::Auto, CheckRows::Rows)),
    };
    match backend::resolve(args.job.backend).map_err(cli_error)? {
        Backend::Local => {
            decode.check_counts(args.prefill).map_err(cli_error)?;
            let memory = MemoryCheck::LOCAL.decoding(args.steps);
            let job =
                ringattn::prepare_local_with(&args.run_spec()?, memory).map_err(flag_error)?;
            let gathered =
                ringattn::local::run_local_with(&job, |comm, job| decode_rank(comm, job, &decode))?;
            finish(args, &job, &decode, "local", &gathered).map(ExitCode::from)
        }
        #[cfg(feature = "mpi")]
        Backend::Mpi => ringattn::launch::mpi_rank::run_job(
            &|| args.run_spec(),
            ringattn::allowed_cores(),
            MemoryCheck::ONE_RANK.decoding(args.steps),
            || decode.check_counts(args.prefill).map_err(cli_error),
            cli_error,
            |comm, job| decode_rank(comm, job, &decode),
            |job, backend, g| finish(args, job, &decode, backend, g),
        )
        .map(ExitCode::from),
        #[cfg(not(feature = "mpi"))]
        Backend::Mpi => Err(ringattn_runtime::Error::config(backend::HOW_TO_BUILD_MPI)),
    }
}

/// The root's end: prints the summary or writes the JSON report; exit code 0, or 1 when the
/// check failed.
fn finish(
    args: &DecodeArgs,
    job: &Job,
    decode: &DecodeJob,
    backend: &str,
    g: &DecodeGathered,
) -> Result<u8> {
    let report = DecodeReport::new(job, decode, backend, g);
    args.job
        .emit(|path| report.write_json(path), &report.summary())?;
    match &report.base.check {
        Some(c) if !c.passed => {
            eprintln!(
                "ringattn: error: {}",
                c.failed_line("decode check", job.dtype)
            );
            Ok(1)
        }
        _ => Ok(0),
    }
}
