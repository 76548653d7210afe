//! `ringattn bench model`: SmolLM2's prefill and decode tokens/s, time to first token, peak
//! RSS and KV bytes per rank over prompt lengths × workers × layouts (the logic is
//! [`ringattn_model::bench`]); llama.cpp beside each length with `--llamacpp`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use ringattn_model::bench::llamacpp::LlamaCpp;
use ringattn_model::bench::mpi::MpiCaseRunner;
use ringattn_model::bench::{corpus, run_bench, run_local_case, Case, CaseResult, ModelBenchSpec};
use ringattn_model::{default_model_path, GenerateSpec, Model, ModelError, WeightFormat};
use ringattn_runtime::{Error, Result};

use crate::cli::{Dtype, LayoutChoice};
use crate::generate::cli_error;

/// Backends `bench model` can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelBackend {
    /// Ranks are threads of this process.
    Local,
    /// One `mpirun -n P <this ringattn> generate --backend mpi` per case (an MPI build).
    Mpi,
}

/// Options of `ringattn bench model`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    ringattn bench model --context 1024,2048,4096,8192 --workers 1,2 --llamacpp --out model-bench\n  \
    ringattn bench model --context 8192 --workers 2 --layout striped,zigzag --max-tokens 64 --out b")]
pub struct ModelBenchArgs {
    /// The GGUF model [default: the one scripts/get-model.sh fetches].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Prompt lengths in tokens, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1024, 2048, 4096, 8192])]
    pub context: Vec<usize>,
    /// Worker counts, comma separated.
    #[arg(short = 'p', long, value_delimiter = ',', default_values_t = [1, 2])]
    pub workers: Vec<usize>,
    /// Layouts, comma separated (one worker runs only the first).
    #[arg(long, value_delimiter = ',', default_values = ["striped"])]
    pub layouts: Vec<LayoutChoice>,
    /// Tokens decoded after each prompt (end-of-text ignored).
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    /// Threads per worker [default: allowed cores / workers].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Storage type of the KV cache.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Decode with the f32 weights instead of the packed GGUF blocks (the slower old path).
    #[arg(long)]
    pub dense_decode: bool,
    /// Communication backend.
    #[arg(long, value_enum, default_value_t = ModelBackend::Local)]
    pub backend: ModelBackend,
    /// The text prompts are cut from [default: README.md and BENCHMARKS.md of this directory].
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
    /// Also run llama.cpp (scripts/bench-llamacpp.py, PyPI llama-cpp-python) on each length,
    /// with as many threads as the allowed cores.
    #[arg(long)]
    pub llamacpp: bool,
    /// With --llamacpp: the Python interpreter.
    #[arg(long, default_value = "python3")]
    pub python: PathBuf,
    /// With --llamacpp: the benchmark script.
    #[arg(long, default_value = "scripts/bench-llamacpp.py")]
    pub llamacpp_script: PathBuf,
    /// Output directory: results.jsonl (resumable), prompt.txt, model.png/svg.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Do not draw the plot at the end.
    #[arg(long)]
    pub no_plot: bool,
}

/// Runs `ringattn bench model`.
pub fn run_model_bench(args: &ModelBenchArgs, allowed_cores: usize) -> Result<ExitCode> {
    crate::args::check_threads(args.threads, allowed_cores, false)?;
    let model_path = args.model.clone().unwrap_or_else(default_model_path);
    let mut spec = ModelBenchSpec {
        model: model_path.clone(),
        corpus: String::new(),
        contexts: args.context.clone(),
        workers: args.workers.clone(),
        layouts: args.layouts.clone(),
        max_tokens: args.max_tokens,
        threads_per_rank: args.threads,
        cores: allowed_cores,
        dtype: args.dtype,
        weights: if args.dense_decode {
            WeightFormat::F32Dense
        } else {
            WeightFormat::F32
        },
        backend: format!("{:?}", args.backend).to_lowercase(),
        out: args.out.clone(),
    };
    spec.validate().map_err(|e| match e {
        ModelError::Invalid { field, reason } => {
            let flag = match field {
                "contexts" => "context",
                "threads_per_rank" => "threads",
                f => f,
            };
            Error::config(format!("{}: {reason}", crate::args::flag_of(flag)))
        }
        e => cli_error(e),
    })?;
    spec.corpus = corpus(args.prompt_file.as_deref(), Path::new(""))?;
    let model = Model::load(&model_path, spec.weights).map_err(cli_error)?;
    let script = args.llamacpp_script.clone();
    let llama = match args.llamacpp {
        true => LlamaCpp::detect(args.python.clone(), script, model_path, allowed_cores)
            .map_err(|why| eprintln!("ringattn: llama.cpp skipped: {why}"))
            .ok(),
        false => None,
    };
    let mpi = match args.backend {
        ModelBackend::Mpi => {
            crate::cli::needs_mpi("bench model --backend mpi")?;
            Some(MpiCaseRunner::new(ringattn::launch::current_exe()?)?)
        }
        ModelBackend::Local => None,
    };
    let mut run_case = |case: &Case, g: &GenerateSpec| -> ringattn_model::Result<CaseResult> {
        match &mpi {
            Some(m) => m.run(case, g, &args.out),
            None => run_local_case(&model, g),
        }
    };
    let mut progress = |line: &str| eprintln!("bench model: {line}");
    let ran = run_bench(&spec, &model, &mut run_case, llama.as_ref(), &mut progress)
        .map_err(cli_error)?;
    eprintln!(
        "bench model: {ran} case(s) run; results in {}",
        args.out.display()
    );
    if !args.no_plot {
        for p in ringattn_model::bench::plot::render_dir(&args.out).map_err(cli_error)? {
            crate::outln!("wrote {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
