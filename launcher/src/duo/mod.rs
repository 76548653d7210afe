//! `ringattn duo ...`: DuoAttention tools. Today: `inspect`, the retrieval heads a pattern
//! selects per layer and the KV memory they need against full attention.

#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use ringattn_ring::{DuoPattern, Selection};
use ringattn_runtime::{Error, Result};
use serde_json::{json, Value};

use crate::args::duo::selection_of;
use crate::cli::DtypeArg;
use ringattn::io::write_atomic;

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
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
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
    }
}

/// What `duo inspect` found.
struct Inspection {
    pattern: PathBuf,
    layers: usize,
    kv_heads: usize,
    per_layer: Vec<usize>,
    threshold: f64,
    sparsity: Option<f64>,
    sink: usize,
    recent: usize,
    context: usize,
    head_dim: usize,
    dtype: DtypeArg,
    kv_bytes_full: u64,
    kv_bytes_duo: u64,
}

fn run_inspect(args: &InspectArgs) -> Result<ExitCode> {
    let out = inspect(args)?;
    match args.json.as_deref() {
        Some("-") => println!("{}", out.json()),
        Some(path) => {
            let text = serde_json::to_string_pretty(&out.json()).expect("json") + "\n";
            write_atomic(Path::new(path), &text)?;
            print!("{}", out.summary());
        }
        None => print!("{}", out.summary()),
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(args: &InspectArgs) -> Result<Inspection> {
    if args.context == 0 || args.head_dim == 0 {
        return Err(Error::config("--seq and --head-dim must be at least 1"));
    }
    let pattern = DuoPattern::load(&args.pattern)?;
    let selection = selection_of(args.sparsity, args.threshold);
    let (sink, recent) = (pattern.sink_or(args.sink), pattern.recent_or(args.recent));
    // Validates the selection and the window.
    pattern.plan(0, selection, sink, recent)?;
    let per_layer = pattern.retrieval_per_layer(selection)?;
    let threshold = pattern.threshold(selection)?;
    let (layers, kv_heads) = (pattern.layers(), pattern.kv_heads());
    let n = args.context as u64;
    let window = n.min((sink as u64).saturating_add(recent as u64));
    let bytes = match args.dtype {
        DtypeArg::F32 => 4,
        DtypeArg::Bf16 => 2,
    };
    let too_big = || Error::config("KV memory overflows 64 bits: reduce --seq");
    let per_token = 2 * (args.head_dim as u64) * bytes;
    let full = (layers as u64 * kv_heads as u64)
        .checked_mul(n)
        .and_then(|t| t.checked_mul(per_token))
        .ok_or_else(too_big)?;
    // Each layer's own split; with at most `full` bytes no partial sum overflows.
    let duo = per_layer
        .iter()
        .map(|&r| (r as u64 * n + (kv_heads - r) as u64 * window) * per_token)
        .sum();
    Ok(Inspection {
        pattern: args.pattern.clone(),
        layers,
        kv_heads,
        per_layer,
        threshold,
        sparsity: match selection {
            Selection::Sparsity(s) => Some(s),
            Selection::Threshold(_) => None,
        },
        sink,
        recent,
        context: args.context,
        head_dim: args.head_dim,
        dtype: args.dtype,
        kv_bytes_full: full,
        kv_bytes_duo: duo,
    })
}

impl Inspection {
    fn retrieval(&self) -> usize {
        self.per_layer.iter().sum()
    }

    fn streaming(&self) -> usize {
        self.layers * self.kv_heads - self.retrieval()
    }

    /// KV memory of the plan as a fraction of full attention's.
    fn kv_ratio(&self) -> f64 {
        self.kv_bytes_duo as f64 / self.kv_bytes_full as f64
    }

    fn json(&self) -> Value {
        json!({
            "pattern": self.pattern.display().to_string(),
            "layers": self.layers,
            "kv_heads": self.kv_heads,
            "retrieval_kv_heads": self.retrieval(),
            "streaming_kv_heads": self.streaming(),
            "per_layer": self.per_layer,
            "threshold": self.threshold,
            "sparsity": self.sparsity,
            "sink": self.sink,
            "recent": self.recent,
            "context": self.context,
            "head_dim": self.head_dim,
            "dtype": dtype_name(self.dtype),
            "kv_bytes_full": self.kv_bytes_full,
            "kv_bytes_duo": self.kv_bytes_duo,
            "kv_ratio": self.kv_ratio(),
        })
    }

    fn summary(&self) -> String {
        let mut s = String::new();
        let rule = match self.sparsity {
            Some(sp) => format!("sparsity {sp} (effective threshold {})", self.threshold),
            None => format!("threshold {}", self.threshold),
        };
        let _ = writeln!(
            s,
            "DuoAttention pattern {}: {} layers x {} KV heads, {rule}",
            self.pattern.display(),
            self.layers,
            self.kv_heads
        );
        let _ = writeln!(
            s,
            "streaming heads keep sink {} + recent {} tokens",
            self.sink, self.recent
        );
        let _ = writeln!(s, "{:>5}  {:>9}  {:>9}", "layer", "retrieval", "streaming");
        for (layer, &r) in self.per_layer.iter().enumerate() {
            let _ = writeln!(s, "{layer:>5}  {r:>9}  {:>9}", self.kv_heads - r);
        }
        let total = (self.layers * self.kv_heads) as f64;
        let _ = writeln!(
            s,
            "{:>5}  {:>9}  {:>9}  ({:.1}% retrieval)",
            "total",
            self.retrieval(),
            self.streaming(),
            100.0 * self.retrieval() as f64 / total
        );
        let _ = writeln!(
            s,
            "KV cache at context {}, head dim {}, {}: full {}, DuoAttention {} ({:.3} of full, {:.2}x smaller)",
            self.context,
            self.head_dim,
            dtype_name(self.dtype),
            human_bytes(self.kv_bytes_full),
            human_bytes(self.kv_bytes_duo),
            self.kv_ratio(),
            1.0 / self.kv_ratio()
        );
        s
    }
}

fn dtype_name(dtype: DtypeArg) -> &'static str {
    match dtype {
        DtypeArg::F32 => "f32",
        DtypeArg::Bf16 => "bf16",
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2} {}", UNITS[unit])
}
