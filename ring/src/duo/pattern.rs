//! DuoAttention gate patterns: the official `full_attention_heads.tsv` (one gate α per layer and
//! KV head) and the choice of retrieval heads from it.
//!
//! A pattern is read from a directory holding `full_attention_heads.tsv` and, optionally,
//! `config.json` (its `sink_size` / `recent_size`), or from a TSV file alone. The TSV is
//! `np.savetxt` output: rows = layers, columns = KV heads, values separated by tabs or spaces,
//! possibly in scientific notation. Gates are clipped to [0, 1] (training leaves tiny negatives).
//!
//! # Choosing retrieval heads
//!
//! - [`Selection::Threshold`]`(t)`: gate ≥ t is a retrieval head.
//! - [`Selection::Sparsity`]`(s)`: the fraction `s` of all KV heads, over ALL layers together, are
//!   streaming heads (the official `sparsify_attention_heads`). The official code breaks ties
//!   (many gates are exactly 1.0 or 0.0) with seeded random noise; here ties are broken the same
//!   way but reproducibly: entry `i = layer · kv_heads + head` is sorted ascending by
//!   (gate, [`tie_key`]`(i)`), a fixed pseudo-random permutation (SplitMix64 of `i`), and the first
//!   `round(s · layers · kv_heads)` entries are streaming. Breaking ties by index instead would
//!   hand every tied retrieval slot to the last layers (Llama-3-8B at sparsity 0.75 would have no
//!   retrieval head in layers 0–8); the hash spreads them over layers as the official noise does. The effective
//!   threshold is the gate of the first retrieval entry (2.0, above every gate, when none is
//!   left). With ties at that gate, `Threshold(effective)` may select a few more heads than the
//!   sparsity did: the sparsity's count is exact, the threshold is informative.

use std::path::{Path, PathBuf};

use ringattn_runtime::{Error, Result};

use super::plan::{DuoPlan, HeadKind};

/// The tie-break key of pattern entry `index` (`layer · kv_heads + head`): SplitMix64 of the
/// index, a fixed pseudo-random permutation that plays the role of the official code's seeded
/// noise, reproducibly.
pub fn tie_key(index: usize) -> u64 {
    let mut z = (index as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Sink size used when neither the pattern's `config.json` nor the user gives one (the
/// DuoAttention evaluation scripts' value).
pub const DEFAULT_SINK: usize = 64;
/// Recent window used when neither the pattern's `config.json` nor the user gives one.
pub const DEFAULT_RECENT: usize = 256;
/// Name of the gate file inside a pattern directory.
pub const PATTERN_FILE: &str = "full_attention_heads.tsv";
/// Name of the optional configuration file inside a pattern directory.
pub const CONFIG_FILE: &str = "config.json";
/// Threshold reported when a selection keeps no retrieval head (above every clipped gate).
pub const NO_RETRIEVAL_THRESHOLD: f64 = 2.0;

/// How retrieval heads are chosen from the gates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Selection {
    /// Fraction in [0, 1] of STREAMING KV heads over all layers together (ties broken by a
    /// fixed pseudo-random key, see the module docs).
    Sparsity(f64),
    /// Gates ≥ this value are retrieval heads.
    Threshold(f64),
}

/// Gates of every (layer, KV head), clipped to [0, 1], with the pattern's sink / recent sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct DuoPattern {
    /// The TSV file the gates came from.
    source: PathBuf,
    /// Row-major `[layers][kv_heads]`.
    gates: Vec<f64>,
    layers: usize,
    kv_heads: usize,
    config_sink: Option<usize>,
    config_recent: Option<usize>,
}

impl DuoPattern {
    /// Reads a pattern from a directory (`full_attention_heads.tsv` plus optional `config.json`)
    /// or from a TSV file alone (no `config.json` is looked for beside it).
    pub fn load(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| Error::BadInput {
            path: shown.clone(),
            reason: format!(
                "cannot open DuoAttention pattern ({e}); expected a directory with \
                 {PATTERN_FILE} or a .tsv file"
            ),
        })?;
        if !meta.is_dir() {
            return Self::read_tsv(path);
        }
        let mut pattern = Self::read_tsv(&path.join(PATTERN_FILE))?;
        let config = path.join(CONFIG_FILE);
        if config.exists() {
            let (sink, recent) = read_config(&config)?;
            pattern.config_sink = sink;
            pattern.config_recent = recent;
        }
        Ok(pattern)
    }

    fn read_tsv(path: &Path) -> Result<Self> {
        regular_file(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| Error::BadInput {
            path: path.display().to_string(),
            reason: format!("cannot read DuoAttention pattern: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses TSV text (`source` names it in errors). Blank lines and `#` comment lines are
    /// skipped; every other line is one layer.
    pub fn parse(text: &str, source: &Path) -> Result<Self> {
        let bad = |reason: String| Error::BadInput {
            path: source.display().to_string(),
            reason,
        };
        let mut gates = Vec::new();
        let mut layers = 0;
        let mut kv_heads = 0;
        let mut first_line = 0;
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let mut count = 0;
            for (j, field) in trimmed.split_whitespace().enumerate() {
                let at = format!("line {line_no}, column {}", j + 1);
                let value: f64 = field
                    .parse()
                    .map_err(|_| bad(format!("{at}: `{field}` is not a number")))?;
                if !value.is_finite() {
                    return Err(bad(format!("{at}: gate is {value} (must be finite)")));
                }
                gates.push(value.clamp(0.0, 1.0));
                count += 1;
            }
            if layers == 0 {
                kv_heads = count;
                first_line = line_no;
            } else if count != kv_heads {
                return Err(bad(format!(
                    "ragged rows: line {line_no} has {count} gates, line {first_line} has \
                     {kv_heads}"
                )));
            }
            layers += 1;
        }
        if layers == 0 {
            return Err(bad(
                "empty DuoAttention pattern (no rows of gates: rows = layers, columns = KV heads)"
                    .into(),
            ));
        }
        Ok(DuoPattern {
            source: source.to_path_buf(),
            gates,
            layers,
            kv_heads,
            config_sink: None,
            config_recent: None,
        })
    }

    /// The TSV file the gates came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Number of layers (rows).
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Number of KV heads per layer (columns).
    pub fn kv_heads(&self) -> usize {
        self.kv_heads
    }

    /// The clipped gate of (`layer`, `kv_head`). Panics when out of range.
    pub fn gate(&self, layer: usize, kv_head: usize) -> f64 {
        assert!(layer < self.layers && kv_head < self.kv_heads);
        self.gates[layer * self.kv_heads + kv_head]
    }

    /// All clipped gates, row-major `[layers][kv_heads]`.
    pub fn gates(&self) -> &[f64] {
        &self.gates
    }

    /// Sink size of `config.json`, if the pattern had one.
    pub fn config_sink(&self) -> Option<usize> {
        self.config_sink
    }

    /// Recent window of `config.json`, if the pattern had one.
    pub fn config_recent(&self) -> Option<usize> {
        self.config_recent
    }

    /// Sink size to use: `user` if given, else `config.json`'s, else [`DEFAULT_SINK`].
    pub fn sink_or(&self, user: Option<usize>) -> usize {
        user.or(self.config_sink).unwrap_or(DEFAULT_SINK)
    }

    /// Recent window to use: `user` if given, else `config.json`'s, else [`DEFAULT_RECENT`].
    pub fn recent_or(&self, user: Option<usize>) -> usize {
        user.or(self.config_recent).unwrap_or(DEFAULT_RECENT)
    }

    /// Fails unless the pattern has `kv_heads` columns (the model's KV heads).
    pub fn check_kv_heads(&self, kv_heads: usize) -> Result<()> {
        if self.kv_heads == kv_heads {
            return Ok(());
        }
        Err(Error::BadInput {
            path: self.source.display().to_string(),
            reason: format!(
                "DuoAttention pattern has {} KV heads per layer (columns) but the run has \
                 --kv-heads {kv_heads}",
                self.kv_heads
            ),
        })
    }

    /// Which (layer, KV head) are retrieval heads, row-major, and the effective threshold.
    pub fn select(&self, selection: Selection) -> Result<(Vec<bool>, f64)> {
        let n = self.gates.len();
        match selection {
            Selection::Threshold(t) => {
                if !t.is_finite() {
                    return Err(Error::config(format!("--threshold {t} must be finite")));
                }
                Ok((self.gates.iter().map(|&g| g >= t).collect(), t))
            }
            Selection::Sparsity(s) => {
                if !(0.0..=1.0).contains(&s) {
                    return Err(Error::config(format!("--sparsity {s} must be in [0, 1]")));
                }
                let streaming = ((s * n as f64).round() as usize).min(n);
                let mut order: Vec<usize> = (0..n).collect();
                // Sort by gate; equal gates in the fixed pseudo-random order of `tie_key`.
                order.sort_by(|&a, &b| {
                    self.gates[a]
                        .total_cmp(&self.gates[b])
                        .then(tie_key(a).cmp(&tie_key(b)))
                });
                let mut retrieval = vec![true; n];
                for &i in &order[..streaming] {
                    retrieval[i] = false;
                }
                let threshold = order
                    .get(streaming)
                    .map_or(NO_RETRIEVAL_THRESHOLD, |&i| self.gates[i]);
                Ok((retrieval, threshold))
            }
        }
    }

    /// The effective threshold of `selection` (see the module docs).
    pub fn threshold(&self, selection: Selection) -> Result<f64> {
        self.select(selection).map(|(_, t)| t)
    }

    /// Number of retrieval KV heads in each layer.
    pub fn retrieval_per_layer(&self, selection: Selection) -> Result<Vec<usize>> {
        let (retrieval, _) = self.select(selection)?;
        Ok(retrieval
            .chunks(self.kv_heads)
            .map(|row| row.iter().filter(|&&r| r).count())
            .collect())
    }

    /// The plan of `layer`: its KV heads' kinds under `selection`, with the given window.
    pub fn plan(
        &self,
        layer: usize,
        selection: Selection,
        sink: usize,
        recent: usize,
    ) -> Result<DuoPlan> {
        if layer >= self.layers {
            return Err(Error::config(format!(
                "--layer {layer} out of range: the DuoAttention pattern has {} layers (0..={})",
                self.layers,
                self.layers - 1
            )));
        }
        check_window(recent)?;
        let (retrieval, _) = self.select(selection)?;
        let row = &retrieval[layer * self.kv_heads..(layer + 1) * self.kv_heads];
        Ok(DuoPlan {
            kinds: row.iter().map(|&r| kind_of(r)).collect(),
            sink,
            recent,
        })
    }
}

impl DuoPlan {
    /// A synthetic plan with `round(ratio · kv_heads)` retrieval heads spread evenly: the i-th
    /// retrieval head (of k) is head `floor((2i + 1) · kv_heads / (2k))`, the centre of the i-th
    /// of k equal slices. `ratio` must be in [0, 1].
    pub fn with_retrieval_ratio(
        kv_heads: usize,
        ratio: f64,
        sink: usize,
        recent: usize,
    ) -> Result<Self> {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(Error::config(format!(
                "--retrieval-ratio {ratio} must be in [0, 1]"
            )));
        }
        check_window(recent)?;
        let k = ((ratio * kv_heads as f64).round() as usize).min(kv_heads);
        let mut kinds = vec![HeadKind::Streaming; kv_heads];
        for i in 0..k {
            kinds[(2 * i + 1) * kv_heads / (2 * k)] = HeadKind::Retrieval;
        }
        Ok(DuoPlan {
            kinds,
            sink,
            recent,
        })
    }
}

fn kind_of(retrieval: bool) -> HeadKind {
    if retrieval {
        HeadKind::Retrieval
    } else {
        HeadKind::Streaming
    }
}

/// A streaming query must at least see itself.
fn check_window(recent: usize) -> Result<()> {
    if recent == 0 {
        return Err(Error::config(
            "--recent must be at least 1 (a streaming query sees itself and recent - 1 earlier \
             tokens)",
        ));
    }
    Ok(())
}

/// Pattern files must be regular files: reading a FIFO would block, a directory fails late.
fn regular_file(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(Error::BadInput {
            path: path.display().to_string(),
            reason: "cannot read DuoAttention pattern: not a regular file".into(),
        }),
        // Missing files and other errors are reported by the read that follows.
        _ => Ok(()),
    }
}

/// `sink_size` / `recent_size` of a pattern's `config.json` (`deploy_sink_size` /
/// `deploy_recent_size` win when set, as in the official deployment code).
fn read_config(path: &Path) -> Result<(Option<usize>, Option<usize>)> {
    let shown = path.display().to_string();
    let bad = |reason: String| Error::BadInput {
        path: shown.clone(),
        reason,
    };
    regular_file(path)?;
    let text =
        std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read config: {e}")))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(bad(format!(
            "config must be a JSON object (with sink_size / recent_size), found {}",
            match value {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            }
        )));
    }
    let size = |key: &str| -> Result<Option<usize>> {
        match value.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| bad(format!("`{key}` is {v}, not a non-negative integer"))),
        }
    };
    let sink = size("deploy_sink_size")?.or(size("sink_size")?);
    let recent = size("deploy_recent_size")?.or(size("recent_size")?);
    Ok((sink, recent))
}

#[cfg(test)]
mod tests;
