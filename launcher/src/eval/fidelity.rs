//! `ringattn eval fidelity`: KL, top-1 agreement and identical greedy continuation of
//! DuoAttention against full attention on a long prompt; JSON lines out.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ringattn_model::eval::fidelity::{fit_prompt, run_fidelity, table, FidelityRow, FidelitySpec};
use ringattn_model::eval::jsonl::JsonlLog;
use ringattn_model::eval::passkey::Heads;
use ringattn_model::eval::{parse_fraction, parse_list};
use ringattn_model::{default_model_path, Model, WeightFormat};
use ringattn_runtime::{Error, Result};

use super::flag_error;
use crate::generate::cli_error;

/// Options of `ringattn eval fidelity`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    ringattn eval fidelity --duo data/duo-patterns/SmolLM2-135M-Instruct --prompt-file long.txt \\\n    \
    --context 8192 --sparsity 0.25,0.5,0.75 --random-heads 1,2,3 --out fid\n\n\
    One JSON line per (selection, sparsity) in DIR/fidelity.jsonl.")]
pub struct FidelityArgs {
    /// The GGUF model [default: SmolLM2-135M-Instruct from scripts/get-model.sh].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Calibrated pattern directory.
    #[arg(long, value_name = "DIR", required_unless_present = "random_heads")]
    pub duo: Option<PathBuf>,
    /// Also compare random head selections of these seeds (comma-separated).
    #[arg(long, value_name = "SEEDS")]
    pub random_heads: Option<String>,
    /// Fractions of streaming KV heads, comma-separated.
    #[arg(long, default_value = "0.25,0.5,0.75")]
    pub sparsity: String,
    /// The prompt (raw text, no chat template).
    #[arg(long, value_name = "FILE")]
    pub prompt_file: PathBuf,
    /// Cut the prompt (at whitespace) to at most this many tokens [default: the model's
    /// trained context minus the continuation].
    #[arg(long)]
    pub context: Option<usize>,
    /// Last prompt positions compared.
    #[arg(long, default_value_t = 64)]
    pub last: usize,
    /// Greedy continuation tokens of the full model (compared position by position).
    #[arg(long, default_value_t = 32)]
    pub continuation: usize,
    /// Sink tokens of streaming heads [default: the pattern's, else 64].
    #[arg(long)]
    pub sink: Option<usize>,
    /// Recent window of streaming heads [default: the pattern's, else 256].
    #[arg(long)]
    pub recent: Option<usize>,
    /// Kernel threads [default: the allowed cores].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Output directory (fidelity.jsonl, random patterns).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Runs `ringattn eval fidelity`.
pub fn run(args: &FidelityArgs) -> Result<ExitCode> {
    if args.threads == Some(0) || args.recent == Some(0) || args.context == Some(0) {
        return Err(Error::config(
            "--threads, --recent and --context must be at least 1",
        ));
    }
    let spec = spec_of(args)?;
    let text = ringattn::io::read_text(&args.prompt_file, "the prompt")?;
    let path = args.model.clone().unwrap_or_else(default_model_path);
    let model = Model::load(&path, WeightFormat::F32).map_err(cli_error)?;
    let prompt = fit_prompt(&model, &text, args.context, args.continuation).map_err(flag_error)?;
    let mut log = JsonlLog::open(&args.out, "fidelity.jsonl")?;
    let mut on_row = |r: &FidelityRow| {
        eprintln!("{}", r.progress_line());
        log.push(r);
    };
    let rows = run_fidelity(&model, &path, &prompt, &spec, &mut on_row).map_err(flag_error)?;
    log.finish()?;
    crate::out!("{}", table(&rows));
    Ok(ExitCode::SUCCESS)
}

/// The library's spec of the options (lists parsed, flags named in errors).
fn spec_of(args: &FidelityArgs) -> Result<FidelitySpec> {
    let mut heads: Vec<Heads> = args.duo.iter().cloned().map(Heads::Calibrated).collect();
    if let Some(seeds) = &args.random_heads {
        let seeds = parse_list("random_heads", seeds, |s| s.parse().ok()).map_err(flag_error)?;
        heads.extend(seeds.into_iter().map(Heads::Random));
    }
    let spec = FidelitySpec {
        heads,
        sparsities: parse_list("sparsity", &args.sparsity, parse_fraction).map_err(flag_error)?,
        last_k: args.last,
        continuation: args.continuation,
        threads: args.threads.unwrap_or_else(ringattn::allowed_cores).max(1),
        sink: args.sink,
        recent: args.recent,
        out: args.out.clone(),
    };
    spec.check().map_err(flag_error)?;
    Ok(spec)
}
