//! `ringattn duo ...`: DuoAttention tools: `inspect`, the retrieval heads a pattern selects
//! per layer and the KV memory they need against full attention; `calibrate`, a model's own
//! pattern.

pub mod calibrate;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use ringattn::duo_inspect::InspectSpec;
use ringattn::spec::selection_of;
use ringattn_runtime::{Error, Result};

use crate::cli::Dtype;

/// Options of `ringattn duo`.
#[derive(Debug, Args)]
pub struct DuoCmdArgs {
    /// Which DuoAttention tool.
    #[command(subcommand)]
    pub command: DuoCommand,
}

/// The DuoAttention tools.
#[derive(Debug, Subcommand)]
pub enum DuoCommand {
    /// Show which KV heads a pattern makes retrieval heads (per layer and in total) and the KV
    /// cache they need at a context length, against full attention.
    Inspect(InspectArgs),
    /// Score every (layer, KV head) of a model from its own attention on generated documents
    /// and write the pattern (full_attention_heads.tsv + config.json) for --duo.
    Calibrate(calibrate::CalibrateArgs),
}

/// Options of `ringattn duo inspect`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    ringattn duo inspect attn_patterns/Llama-3-8B-Instruct-Gradient-1048k/RUN --sparsity 0.5\n  \
    ringattn duo inspect full_attention_heads.tsv --threshold 0.5 --seq 1048576 --dtype bf16 --json -\n\n\
    kv_bytes_full = layers · kv_heads · N · 2 · D · bytes;\n\
    kv_bytes_duo = layers · (retrieval · N + streaming · min(N, sink + recent)) · 2 · D · bytes\n\
    (sums over the layers' own retrieval counts); kv_ratio = kv_bytes_duo / kv_bytes_full.")]
pub struct InspectArgs {
    /// Gate pattern: a directory with `full_attention_heads.tsv` (rows = layers, columns = KV
    /// heads) and optional `config.json` (sink/recent), or a .tsv file alone.
    #[arg(value_name = "PATTERN")]
    pub pattern: PathBuf,
    /// Fraction in [0, 1] of KV heads that are streaming, over all layers together (ties broken
    /// in a fixed pseudo-random order, as the official seeded noise) [default: 0.5].
    #[arg(long, value_name = "S", conflicts_with = "threshold")]
    pub sparsity: Option<f64>,
    /// Gate threshold: KV heads whose gate is >= T are retrieval heads.
    #[arg(long, value_name = "T")]
    pub threshold: Option<f64>,
    /// Sequence length N (tokens) for the KV memory figures (`--context` is an old spelling).
    #[arg(
        short = 'n',
        long = "seq",
        alias = "context",
        value_name = "N",
        default_value_t = 32768
    )]
    pub context: usize,
    /// Head dimension D.
    #[arg(short = 'd', long, default_value_t = 128)]
    pub head_dim: usize,
    /// Storage type of the KV cache (f32: 4 bytes, bf16: 2 bytes per element).
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Sink tokens of streaming heads [default: the pattern's config.json, else 64].
    #[arg(long, value_name = "TOKENS")]
    pub sink: Option<usize>,
    /// Recent window of streaming heads [default: the pattern's config.json, else 256].
    #[arg(long, value_name = "TOKENS")]
    pub recent: Option<usize>,
    /// Write the result as one JSON object to PATH ("-" = stdout, replacing the table).
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,
}

/// Runs `ringattn duo ...`.
pub fn run_duo(args: &DuoCmdArgs) -> Result<ExitCode> {
    match &args.command {
        DuoCommand::Inspect(a) => run_inspect(a),
        DuoCommand::Calibrate(a) => calibrate::run_calibrate(a),
    }
}

/// Runs `ringattn duo inspect`: the table, or the JSON object (errors naming the flags).
fn run_inspect(args: &InspectArgs) -> Result<ExitCode> {
    crate::args::check_outputs(None, args.json.as_deref())?;
    if args.context == 0 || args.head_dim == 0 {
        return Err(Error::config("--seq and --head-dim must be at least 1"));
    }
    let out = ringattn::duo_inspect::inspect(&InspectSpec {
        pattern: args.pattern.clone(),
        selection: selection_of(args.sparsity, args.threshold),
        sink: args.sink,
        recent: args.recent,
        context: args.context,
        head_dim: args.head_dim,
        dtype: args.dtype,
    })
    .map_err(|e| match e {
        Error::InvalidConfig(m) if m.contains("reduce the context") => {
            Error::config("KV memory overflows 64 bits: reduce --seq")
        }
        e => e,
    })?;
    crate::out::json_or_summary(args.json.as_deref(), &out.json(), &out.summary())?;
    Ok(ExitCode::SUCCESS)
}
