//! DuoAttention pattern inspection (`ringattn duo inspect`): how many KV heads a selection
//! keeps as retrieval heads, layer by layer, and the KV cache memory of full attention and of
//! the plan at a given context.

use std::fmt::Write as _;
use std::path::PathBuf;

use ringattn_ring::{DuoPattern, Selection};
use ringattn_runtime::{Dtype, Error, Result};
use serde_json::{json, Value};

/// What to inspect: a pattern, a selection rule, the window and the memory figures' shape.
#[derive(Clone, Debug)]
pub struct InspectSpec {
    /// Gate pattern: a directory with `full_attention_heads.tsv` (and optional
    /// `config.json`), or a .tsv file alone.
    pub pattern: PathBuf,
    /// Which KV heads are retrieval heads.
    pub selection: Selection,
    /// Sink tokens [default: the pattern's config.json, else 64].
    pub sink: Option<usize>,
    /// Recent window [default: the pattern's config.json, else 256].
    pub recent: Option<usize>,
    /// Context length N (tokens) of the KV memory figures (at least 1).
    pub context: usize,
    /// Head dimension D (at least 1).
    pub head_dim: usize,
    /// Storage type of the KV cache.
    pub dtype: Dtype,
}

/// What [`inspect`] found: head counts and KV memory of a DuoAttention pattern.
#[derive(Clone, Debug)]
pub struct Inspection {
    /// The pattern's path.
    pub pattern: PathBuf,
    /// Layers of the model.
    pub layers: usize,
    /// KV heads per layer.
    pub kv_heads: usize,
    /// Retrieval KV heads of each layer.
    pub per_layer: Vec<usize>,
    /// The gate threshold (given, or the one the sparsity selects).
    pub threshold: f64,
    /// The sparsity asked for, if any.
    pub sparsity: Option<f64>,
    /// Sink tokens of streaming heads.
    pub sink: usize,
    /// Recent window of streaming heads.
    pub recent: usize,
    /// Context length of the memory figures.
    pub context: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Storage type of the cache.
    pub dtype: Dtype,
    /// KV bytes with full attention on every head.
    pub kv_bytes_full: u64,
    /// KV bytes under the plan.
    pub kv_bytes_duo: u64,
}

/// Counts a pattern's retrieval and streaming heads and the KV memory of full attention and
/// of the plan (`kv_bytes_duo` sums the layers' own retrieval counts).
pub fn inspect(args: &InspectSpec) -> Result<Inspection> {
    if args.context == 0 || args.head_dim == 0 {
        return Err(Error::config("context and head_dim must be at least 1"));
    }
    let pattern = DuoPattern::load(&args.pattern)?;
    let selection = args.selection;
    let (sink, recent) = (pattern.sink_or(args.sink), pattern.recent_or(args.recent));
    // Validates the selection and the window.
    pattern.plan(0, selection, sink, recent)?;
    let per_layer = pattern.retrieval_per_layer(selection)?;
    let threshold = pattern.threshold(selection)?;
    let (layers, kv_heads) = (pattern.layers(), pattern.kv_heads());
    let n = args.context as u64;
    let window = n.min((sink as u64).saturating_add(recent as u64));
    let bytes = args.dtype.size() as u64;
    let too_big = || Error::config("KV memory overflows 64 bits: reduce the context");
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
    /// Retrieval KV heads over all layers.
    pub fn retrieval(&self) -> usize {
        self.per_layer.iter().sum()
    }

    /// Streaming KV heads over all layers.
    pub fn streaming(&self) -> usize {
        self.layers * self.kv_heads - self.retrieval()
    }

    /// KV memory of the plan as a fraction of full attention's.
    pub fn kv_ratio(&self) -> f64 {
        self.kv_bytes_duo as f64 / self.kv_bytes_full as f64
    }

    /// The JSON object `duo inspect --json` writes.
    pub fn json(&self) -> Value {
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
            "dtype": self.dtype.name(),
            "kv_bytes_full": self.kv_bytes_full,
            "kv_bytes_duo": self.kv_bytes_duo,
            "kv_ratio": self.kv_ratio(),
        })
    }

    /// The table `duo inspect` prints.
    pub fn summary(&self) -> String {
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
            self.dtype.name(),
            human_bytes(self.kv_bytes_full),
            human_bytes(self.kv_bytes_duo),
            self.kv_ratio(),
            1.0 / self.kv_ratio()
        );
        s
    }
}

/// Bytes in binary units (B, KiB, MiB, GiB, TiB), two decimals.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2} {}", UNITS[unit])
}
