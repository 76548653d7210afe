//! `ringattn eval passkey`: the needle-in-a-haystack grid on the ring, its results.jsonl,
//! heat maps and accuracy-vs-sparsity plot.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use ringattn::allowed_cores;
use ringattn::cores::default_threads;
use ringattn_model::eval::passkey::{local_runner, run_passkey, Heads, PasskeySpec, TrialResult};
use ringattn_model::eval::report::write_passkey_report;
use ringattn_model::eval::summary::table;
use ringattn_model::eval::{parse_fraction, parse_list};
use ringattn_model::{default_model_path, Model, ModelError, WeightFormat};
use ringattn_runtime::{Error, Result};

use super::flag_error;
use crate::cli::BackendChoice;
use crate::generate::cli_error;
use ringattn::launch::backend::{self, Backend};

/// Options of `ringattn eval passkey`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    ringattn eval passkey --duo data/duo-patterns/SmolLM2-135M-Instruct --out pk\n  \
    ringattn eval passkey --random-heads 1 --sparsity 0.5 --out pk   (chance baseline)\n  \
    mpirun -n 2 ringattn eval passkey --backend mpi --duo DIR --out pk   (built with --features mpi)\n\n\
    Each trial is one line of DIR/results.jsonl; a rerun skips the trials already there.\n\
    Heat maps: DIR/heatmap-GROUP-sS.svg; accuracy vs sparsity: DIR/accuracy.svg.")]
pub struct PasskeyArgs {
    /// The GGUF model [default: SmolLM2-135M-Instruct from scripts/get-model.sh].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Calibrated pattern directory (the heads to make streaming: the lowest-scored).
    #[arg(long, value_name = "DIR", conflicts_with = "random_heads")]
    pub duo: Option<PathBuf>,
    /// Choose the streaming heads at random with this seed (the chance baseline).
    #[arg(long, value_name = "SEED")]
    pub random_heads: Option<u64>,
    /// Fractions of streaming KV heads, comma-separated.
    #[arg(long, default_value = "0,0.25,0.5,0.75")]
    pub sparsity: String,
    /// Prompt lengths in tokens, comma-separated.
    #[arg(long, default_value = "1024,2048,4096,8192")]
    pub context: String,
    /// Needle depths in [0, 1], comma-separated.
    #[arg(long, default_value = "0,0.25,0.5,0.75,1")]
    pub depth: String,
    /// Trials per cell (each with its own pass key).
    #[arg(long, default_value_t = 1)]
    pub trials: usize,
    /// Seed of the pass keys.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Communication backend: `local` (threads), `mpi` or `auto`.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Workers [default: 1; with MPI: the number of MPI processes].
    #[arg(short = 'p', long)]
    pub workers: Option<usize>,
    /// Threads per worker [default: allowed cores / workers].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Sink tokens of streaming heads [default: the pattern's, else 64].
    #[arg(long)]
    pub sink: Option<usize>,
    /// Recent window of streaming heads [default: the pattern's, else 256].
    #[arg(long)]
    pub recent: Option<usize>,
    /// Tokens decoded per answer.
    #[arg(long, default_value_t = 8)]
    pub max_tokens: usize,
    /// Output directory (results.jsonl, summary.json, SVGs).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

impl PasskeyArgs {
    fn spec(&self, world: usize) -> Result<PasskeySpec> {
        let heads = Heads::choose(self.duo.clone(), self.random_heads);
        let sparsities =
            parse_list("sparsity", &self.sparsity, parse_fraction).map_err(flag_error)?;
        if heads == Heads::Full && sparsities.iter().any(|&s| s > 0.0) {
            return Err(Error::config(
                "--sparsity above 0 needs --duo DIR (calibrated heads) or --random-heads SEED",
            ));
        }
        Ok(PasskeySpec {
            heads,
            sparsities,
            contexts: parse_list("context", &self.context, |s| s.parse().ok())
                .map_err(flag_error)?,
            depths: parse_list("depth", &self.depth, parse_fraction).map_err(flag_error)?,
            trials: self.trials,
            seed: self.seed,
            world,
            threads_per_rank: (self.threads)
                .unwrap_or_else(|| default_threads(allowed_cores(), world)),
            sink: self.sink,
            recent: self.recent,
            out: self.out.clone(),
            max_tokens: self.max_tokens,
            pin: false,
        })
    }
}

/// Runs `ringattn eval passkey`.
pub fn run(args: &PasskeyArgs) -> Result<ExitCode> {
    match backend::resolve(args.backend).map_err(crate::args::cli_error)? {
        Backend::Local => {
            let spec = args.spec(args.workers.unwrap_or(1))?;
            let path = args.model.clone().unwrap_or_else(default_model_path);
            let model = Model::load(&path, WeightFormat::F32).map_err(cli_error)?;
            let mut runner = local_runner(&model);
            run_passkey(&model, &path, &spec, &mut runner, true, &mut progress)
                .map_err(flag_error)?;
            report(&args.out)
        }
        #[cfg(feature = "mpi")]
        Backend::Mpi => mpi::run(args),
        #[cfg(not(feature = "mpi"))]
        Backend::Mpi => Err(Error::config(backend::HOW_TO_BUILD_MPI)),
    }
}

fn progress(r: &TrialResult, n: usize, total: usize) {
    eprintln!("{}", r.progress_line(n, total));
}

/// summary.json, the heat maps, accuracy.svg (the library's report) and the table on stdout.
fn report(out: &Path) -> Result<ExitCode> {
    let sums = write_passkey_report(out).map_err(|e| match e {
        ModelError::Runtime(e) => e,
        e => cli_error(e),
    })?;
    crate::out!("{}", table(&sums));
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "mpi")]
mod mpi {
    //! One rank per process: every rank walks the grid; rank 0 writes and plots.

    use super::*;
    use ringattn_model::eval::passkey::run_passkey_rank;
    use ringattn_runtime::Comm;

    /// `eval passkey` on the MPI backend.
    pub fn run(args: &PasskeyArgs) -> Result<ExitCode> {
        let (mut comm, threads, _cores) =
            ringattn::launch::mpi_rank::model_world(args.workers, args.threads)
                .map_err(crate::args::cli_error)?;
        let spec = PasskeySpec {
            threads_per_rank: threads,
            ..args.spec(comm.size())?
        };
        let path = args.model.clone().unwrap_or_else(default_model_path);
        let model = Model::load(&path, WeightFormat::F32).map_err(cli_error)?;
        run_passkey_rank(&model, &path, &spec, &mut comm, &mut progress).map_err(flag_error)?;
        if comm.rank() == 0 {
            report(&args.out)
        } else {
            Ok(ExitCode::SUCCESS)
        }
    }
}
