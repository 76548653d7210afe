//! `ringattn generate`: a real LLM (SmolLM2-135M, a llama GGUF) through the ring. The prompt is
//! prefilled across the workers, the answer decoded with every layer's KV cache kept where it
//! was made; rank 0 streams the text to stdout (a prefill progress bar on a terminal) and
//! writes the report. Local threads or MPI processes (`launch -p P -- generate ...`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ringattn::allowed_cores;
use ringattn::cores::default_threads;
use ringattn_model::{
    default_model_path, DuoSource, GenerateReport, GenerateSpec, Model, ModelError, Sampling,
    WeightFormat,
};
use ringattn_runtime::{Error, Result};

use crate::args::duo::DuoArgs;
use crate::cli::{BackendChoice, Dtype, LayoutChoice};
use ringattn::launch::backend::{self, Backend};

/// Options of `ringattn generate`.
#[derive(Clone, Debug, Args)]
#[command(after_help = "Examples:\n  \
    bash scripts/get-model.sh   (once: fetches the model)\n  \
    ringattn generate --chat --prompt 'What is the capital of France?' --workers 2\n  \
    ringattn generate --prompt-file long.txt --max-tokens 64 --layout zigzag --json -\n  \
    ringattn launch -p 2 -- generate --prompt-file long.txt   (built with --features mpi)")]
pub struct GenerateArgs {
    /// The GGUF model [default: $RINGATTN_MODEL_DIR or ~/.cache/ringattn/models, file
    /// SmolLM2-135M-Instruct.Q4_1.gguf, fetched by scripts/get-model.sh].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The prompt text.
    #[arg(
        long,
        conflicts_with = "prompt_file",
        required_unless_present = "prompt_file"
    )]
    pub prompt: Option<String>,
    /// Read the prompt from this file.
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
    /// Wrap the prompt in the model's chat template (one user message).
    #[arg(long)]
    pub chat: bool,
    /// Most tokens to generate (generation also stops at the end-of-turn token).
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Communication backend: `local` (threads), `mpi` (processes under mpirun/srun) or `auto`.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Number of workers [default: 1; with MPI: the number of MPI processes].
    #[arg(short = 'p', long)]
    pub workers: Option<usize>,
    /// Threads per worker (matmuls and attention) [default: allowed cores / workers].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Token layout of the prompt across the workers.
    #[arg(long, value_enum, default_value_t = LayoutChoice::Striped)]
    pub layout: LayoutChoice,
    /// Storage type of the KV cache (and of the blocks the ring sends).
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Keep the projection weights as stored in the GGUF (Q4_1: smaller, but activations are
    /// re-quantized to 8 bits and answers change) instead of dequantizing them to f32.
    #[arg(long)]
    pub stored_weights: bool,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Accept a prompt longer than the model's trained context (8192 for SmolLM2).
    #[arg(long)]
    pub allow_long: bool,
    /// Decode exactly --max-tokens, past the end-of-turn token (benchmarks).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Write the JSON report to PATH (`-` = stdout, after the text).
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,
    /// DuoAttention (per-layer plans from the pattern, or a retrieval ratio in every layer).
    #[command(flatten)]
    pub duo: DuoArgs,
}

/// A model error as the CLI's error ([`ModelError::into_runtime`]: bad input exits 2), a
/// prompt too long with the flag that allows it.
pub(crate) fn cli_error(e: ModelError) -> Error {
    match e {
        ModelError::PromptTooLong { .. } => {
            Error::config(format!("{e} (--allow-long to run it anyway)"))
        }
        e => e.into_runtime(),
    }
}

impl GenerateArgs {
    /// The library's spec of these options (the prompt read, the duo source built).
    fn spec(&self, world: usize) -> Result<GenerateSpec> {
        let prompt = match (&self.prompt, &self.prompt_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => ringattn::io::read_text(f, "the prompt")?,
            (None, None) => return Err(Error::config("give --prompt or --prompt-file")),
        };
        let model = self.model.clone().unwrap_or_else(default_model_path);
        let duo = match self.duo.spec()? {
            Some(duo) => Some(DuoSource::from_spec(&duo).map_err(cli_error)?),
            None => None,
        };
        Ok(GenerateSpec {
            chat: self.chat,
            layout: self.layout,
            dtype: self.dtype,
            allow_long: self.allow_long,
            ignore_eos: self.ignore_eos,
            weights: match self.stored_weights {
                true => WeightFormat::Stored,
                false => WeightFormat::F32,
            },
            sampling: Sampling {
                temperature: self.temperature,
                top_p: self.top_p,
                seed: self.seed,
            },
            threads_per_rank: (self.threads)
                .unwrap_or_else(|| default_threads(allowed_cores(), world)),
            duo,
            ..GenerateSpec::new(model, &prompt, self.max_tokens, world)
        })
    }
}

/// Runs `ringattn generate`.
pub fn run_generate(args: &GenerateArgs) -> Result<ExitCode> {
    crate::args::check_outputs(None, args.json.as_deref())?;
    if args.duo.layer.is_some() {
        return Err(Error::config(
            "--layer does not apply to generate: every layer uses its own row of the pattern",
        ));
    }
    match backend::resolve(args.backend).map_err(crate::args::cli_error)? {
        Backend::Local => {
            let spec = args.spec(args.workers.unwrap_or(1))?;
            let model = Model::load(&spec.model, spec.weights).map_err(cli_error)?;
            let report = ringattn_model::generate_with(&model, &spec, &mut |_, piece| {
                crate::out!("{piece}")
            })
            .map_err(cli_error)?;
            finish(args, &report)
        }
        #[cfg(feature = "mpi")]
        Backend::Mpi => mpi::run(args),
        #[cfg(not(feature = "mpi"))]
        Backend::Mpi => Err(Error::config(backend::HOW_TO_BUILD_MPI)),
    }
}

/// Rank 0's end: a newline after the streamed text, then the report.
fn finish(args: &GenerateArgs, report: &GenerateReport) -> Result<ExitCode> {
    crate::outln!();
    match args.json.as_deref() {
        Some(path) => ringattn::io::write_json(path, report)?,
        None => eprintln!("{}", report.summary()),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "mpi")]
mod mpi {
    //! One rank per process: every rank prefills its shard and computes its rows of every
    //! decode projection; rank 0 samples and prints.

    use std::io::IsTerminal;

    use super::*;
    use ringattn_model::Progress;
    use ringattn_runtime::Comm;

    /// A prefill progress line on stderr when it is a terminal.
    fn progress_line(done: usize, layers: usize) {
        if std::io::stderr().is_terminal() {
            eprint!("\rprefill: layer {done}/{layers}");
            if done == layers {
                eprint!("\r{:30}\r", "");
            }
        }
    }

    /// `generate` on the MPI backend.
    pub fn run(args: &GenerateArgs) -> Result<ExitCode> {
        let (mut comm, threads, cores) =
            ringattn::launch::mpi_rank::model_world(args.workers, args.threads)
                .map_err(crate::args::cli_error)?;
        let mut spec = args.spec(comm.size())?;
        (spec.pin, spec.threads_per_rank, spec.cores) = (false, threads, cores);
        ringattn_model::limit_rayon_pool(spec.threads_per_rank);
        let model = Model::load(&spec.model, spec.weights).map_err(cli_error)?;
        let root = comm.rank() == 0;
        let progress = Progress {
            on_layer: &mut |d, l| {
                if root {
                    progress_line(d, l)
                }
            },
            on_token: &mut |_, piece| crate::out!("{piece}"),
        };
        let report = ringattn_model::generate_rank_progress(&model, &spec, &mut comm, progress)
            .map_err(cli_error)?;
        if root {
            finish(args, &report)
        } else {
            Ok(ExitCode::SUCCESS)
        }
    }
}
