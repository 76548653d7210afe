//! `ringattn eval fidelity`: KL, top-1 agreement and identical greedy continuation of
//! DuoAttention against full attention on a long prompt; JSON lines out.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ringattn_model::eval::fidelity::{run_fidelity, truncate_text, FidelityRow, FidelitySpec};
use ringattn_model::eval::jsonl::JsonlLog;
use ringattn_model::eval::passkey::Heads;
use ringattn_model::{default_model_path, Model, WeightFormat};
use ringattn_runtime::{Error, Result};

use super::{flag_error, fraction, list};
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
    if args.last == 0 || args.continuation == 0 {
        return Err(Error::config(
            "--last and --continuation must be at least 1",
        ));
    }
    let spec = spec_of(args)?;
    let text = std::fs::read_to_string(&args.prompt_file).map_err(|e| Error::BadInput {
        path: args.prompt_file.display().to_string(),
        reason: format!("cannot read the prompt: {e}"),
    })?;
    let path = args.model.clone().unwrap_or_else(default_model_path);
    let model = Model::load(&path, WeightFormat::F32).map_err(cli_error)?;
    let budget = args.context.unwrap_or(
        model
            .weights
            .config
            .context
            .saturating_sub(args.continuation),
    );
    let prompt = truncate_text(&model, &text, budget).map_err(cli_error)?;
    if prompt.trim().is_empty() {
        return Err(Error::config(
            "--prompt-file: no text fits in --context tokens",
        ));
    }
    let mut log = JsonlLog::open(&args.out, "fidelity.jsonl")?;
    let mut on_row = |r: &FidelityRow| {
        eprintln!(
            "fidelity {} sparsity {}: KL {:.4} (max {:.3}), top-1 {:.3}, identical {}/{}",
            r.selection,
            r.sparsity,
            r.kl_mean,
            r.kl_max,
            r.top1_agreement,
            r.identical_continuation,
            r.continuation
        );
        log.push(r);
    };
    let rows = run_fidelity(&model, &path, &prompt, &spec, &mut on_row)
        .map_err(|e| flag_error(cli_error(e)))?;
    log.finish()?;
    print_rows(&rows);
    Ok(ExitCode::SUCCESS)
}

/// The library's spec of the options (lists parsed, flags named in errors).
fn spec_of(args: &FidelityArgs) -> Result<FidelitySpec> {
    let mut heads: Vec<Heads> = args
        .duo
        .iter()
        .map(|d| Heads::Calibrated(d.clone()))
        .collect();
    if let Some(seeds) = &args.random_heads {
        heads.extend(
            list(seeds, "--random-heads", |s| s.parse().ok())?
                .into_iter()
                .map(Heads::Random),
        );
    }
    let spec = FidelitySpec {
        heads,
        sparsities: list(&args.sparsity, "--sparsity", fraction)?,
        last_k: args.last,
        continuation: args.continuation,
        threads: args.threads.unwrap_or_else(ringattn::allowed_cores).max(1),
        sink: args.sink,
        recent: args.recent,
        out: args.out.clone(),
    };
    Ok(spec)
}

/// The rows as a table on stdout.
fn print_rows(rows: &[FidelityRow]) {
    crate::outln!("selection     sparsity  prompt  KL mean   KL max  top-1  identical");
    for r in rows {
        crate::outln!(
            "{:<13} {:>8.2}  {:>6}  {:>7.4}  {:>7.3}  {:>5.3}  {}/{}",
            r.selection,
            r.sparsity,
            r.prompt_tokens,
            r.kl_mean,
            r.kl_max,
            r.top1_agreement,
            r.identical_continuation,
            r.continuation
        );
    }
}
