//! `duo calibrate`: which KV heads of the model are retrieval heads, scored from the model's
//! own behaviour on generated documents (filler with a pass key to retrieve), written in the
//! official DuoAttention pattern format (`full_attention_heads.tsv` + `config.json`) so every
//! DuoAttention consumer (`--duo DIR`, `duo inspect`, `--sparsity`) uses it unchanged.
//!
//! Two methods ([`Method`]): `mass` (attention mass outside the streaming window, one prefill
//! per document) and `ablation` (KL of the answer rows' next-token distributions when one head
//! alone is streaming: one partial prefill per head and document).

pub mod ablation;
pub mod docs;
pub mod forward;
pub mod mass;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::eval::haystack::SplitMix64;
use crate::Model;
use docs::calibration_doc;
use forward::Forward;
use mass::MassAccumulator;

/// How heads are scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Method {
    /// Attention mass outside sink + recent ([`mass`]).
    #[cfg_attr(
        feature = "clap",
        value(
            help = "Attention mass each head puts outside sink + recent (one prefill per document)"
        )
    )]
    Mass,
    /// KL when the head alone is streaming ([`ablation`]).
    #[cfg_attr(
        feature = "clap",
        value(
            help = "KL of the answer's next-token distributions when the head alone is \
            streaming (one partial prefill per head and document)"
        )
    )]
    Ablation,
}

impl Method {
    /// The method's name (`mass`, `ablation`).
    pub fn name(self) -> &'static str {
        match self {
            Method::Mass => "mass",
            Method::Ablation => "ablation",
        }
    }
}

/// What to calibrate on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CalibrateSpec {
    /// Tokens per document.
    pub context: usize,
    /// Number of documents.
    pub samples: usize,
    /// Seed of the documents (and of the sampled rows).
    pub seed: u64,
    /// Scoring method.
    pub method: Method,
    /// Sink tokens of streaming heads (the window the scores are for; written to config.json).
    pub sink: usize,
    /// Recent window of streaming heads.
    pub recent: usize,
    /// Kernel threads.
    pub threads: usize,
}

/// Scores of every (layer, KV head), row-major, each in [0, 1] (higher: more of a retrieval
/// head), and the raw measurement they came from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Calibration {
    /// Layers.
    pub layers: usize,
    /// KV heads per layer.
    pub kv_heads: usize,
    /// Scores in [0, 1], row-major `[layers][kv_heads]`.
    pub scores: Vec<f64>,
    /// Mean outside mass (`mass`) or mean KL in nats (`ablation`), row-major.
    pub raw: Vec<f64>,
    /// The spec.
    pub spec: CalibrateSpec,
}

impl Calibration {
    /// What `duo calibrate` prints after writing the pattern to `dir`: the shape and method,
    /// then the ten highest-scored heads (two lines, each ending in a newline).
    pub fn summary(&self, dir: &Path) -> String {
        let top: Vec<String> = (self.top_heads(10).into_iter())
            .map(|(l, h, score)| format!("L{l}H{h} {score:.3}"))
            .collect();
        format!(
            "wrote {} ({} layers × {} KV heads, method {})\nhighest-scored heads: {}\n",
            dir.display(),
            self.layers,
            self.kv_heads,
            self.spec.method.name(),
            top.join(", ")
        )
    }

    /// The `n` highest-scored heads as (layer, KV head, score), highest first (ties in
    /// row-major order).
    pub fn top_heads(&self, n: usize) -> Vec<(usize, usize, f64)> {
        let kv = self.kv_heads.max(1);
        let mut order: Vec<usize> = (0..self.scores.len()).collect();
        order.sort_by(|&a, &b| self.scores[b].total_cmp(&self.scores[a]));
        order
            .into_iter()
            .take(n)
            .map(|i| (i / kv, i % kv, self.scores[i]))
            .collect()
    }
}

impl CalibrateSpec {
    /// Checks what needs no model: at least one sample, thread and recent token, and
    /// documents long enough that streaming heads lose something (field `context`).
    pub fn check(&self) -> Result<()> {
        let bad = |field: &'static str, reason: String| Err(ModelError::Invalid { field, reason });
        for (field, value) in [
            ("threads", self.threads),
            ("samples", self.samples),
            ("recent", self.recent),
        ] {
            if value == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        let least = self.sink.saturating_add(self.recent).saturating_mul(2);
        if self.context < least {
            return bad(
                "context",
                format!(
                    "{} is too short: at least 2 × (sink + recent) = {least} tokens, so \
                     streaming heads lose something",
                    self.context
                ),
            );
        }
        Ok(())
    }
}

fn check(model: &Model, spec: &CalibrateSpec) -> Result<()> {
    spec.check()?;
    let ctx = model.weights.config.context;
    if spec.context > ctx {
        return Err(ModelError::Invalid {
            field: "context",
            reason: format!("{} exceeds the model's {ctx}", spec.context),
        });
    }
    Ok(())
}

/// Scores every head of `model` (`progress` gets one line per document and layer step).
pub fn calibrate(
    model: &Model,
    spec: &CalibrateSpec,
    progress: &mut dyn FnMut(&str),
) -> Result<Calibration> {
    check(model, spec)?;
    let c = &model.weights.config;
    let (layers, kv) = (c.layers, c.kv_heads);
    let mut acc = MassAccumulator::new(layers, c.heads, kv, c.head_dim, spec.sink, spec.recent);
    let mut kl_sum = vec![0.0; layers * kv];
    for s in 0..spec.samples {
        let doc = calibration_doc(&model.tokenizer, spec.context, spec.seed, s)?;
        let mut fwd = Forward::new(model, &doc.ids, spec.threads)?;
        let n = fwd.len();
        match spec.method {
            Method::Mass => {
                let rows = sample_rows(n, spec, s, doc.answer_tokens);
                let mut hook = |l: usize, q: &[f32], k: &[f32]| acc.add(l, q, k, n, &rows);
                let mut x = fwd.embedded()?;
                for l in 0..layers {
                    x = fwd.layer(l, &x, None, Some(&mut hook))?;
                }
                progress(&format!("document {}/{}: {n} tokens", s + 1, spec.samples));
            }
            Method::Ablation => {
                // The rows predicting the answer (the pass key digits and the full stop).
                let rows = n - doc.answer_tokens - 1..n - 1;
                let mut on_layer = |l: usize| {
                    progress(&format!(
                        "document {}/{}: layer {}/{layers} ablated",
                        s + 1,
                        spec.samples,
                        l + 1
                    ))
                };
                let kl = ablation::ablate_document(
                    &mut fwd,
                    rows,
                    spec.sink,
                    spec.recent,
                    &mut on_layer,
                )?;
                for (a, b) in kl_sum.iter_mut().zip(kl) {
                    *a += b / spec.samples as f64;
                }
            }
        }
    }
    let raw = match spec.method {
        Method::Mass => acc.scores(),
        Method::Ablation => kl_sum,
    };
    Ok(Calibration {
        layers,
        kv_heads: kv,
        scores: normalise(spec.method, &raw),
        raw,
        spec: spec.clone(),
    })
}

/// Query rows whose scores are measured: the answer rows and the 16 before them (where the
/// question is asked), plus 48 seeded rows past the first window.
fn sample_rows(n: usize, spec: &CalibrateSpec, doc: usize, answer: usize) -> Vec<usize> {
    let first = (spec.sink + spec.recent).min(n - 1);
    let mut rows: Vec<usize> = (n.saturating_sub(answer + 17).max(first)..n).collect();
    let mut rng = SplitMix64::new(spec.seed ^ 0x5EED ^ ((doc as u64) << 32));
    for _ in 0..48 {
        rows.push(first + rng.below((n - first) as u64) as usize);
    }
    rows.sort_unstable();
    rows.dedup();
    rows
}

/// Scores in [0, 1]: masses are already fractions; KLs are divided by the largest.
fn normalise(method: Method, raw: &[f64]) -> Vec<f64> {
    match method {
        Method::Mass => raw.iter().map(|&x| x.clamp(0.0, 1.0)).collect(),
        Method::Ablation => {
            let max = raw.iter().fold(0.0f64, |m, &x| m.max(x));
            raw.iter()
                .map(|&x| {
                    if max > 0.0 {
                        (x / max).clamp(0.0, 1.0)
                    } else {
                        0.0
                    }
                })
                .collect()
        }
    }
}

/// The TSV text of per-head `scores`: one line per layer, tab-separated.
pub fn pattern_tsv(scores: &[f64], kv_heads: usize) -> String {
    scores
        .chunks(kv_heads.max(1))
        .map(|row| {
            row.iter()
                .map(|s| format!("{s:.6}"))
                .collect::<Vec<_>>()
                .join("\t")
                + "\n"
        })
        .collect()
}

/// Writes `cal` to `dir` as `full_attention_heads.tsv`, `config.json` (sink / recent sizes
/// and how the pattern was made, `command` included) and `raw.tsv` (the unnormalised
/// measurement).
pub fn write_pattern(dir: &Path, cal: &Calibration, model_name: &str, command: &str) -> Result<()> {
    let io = |e: std::io::Error| ModelError::Invalid {
        field: "out",
        reason: format!("cannot write {}: {e}", dir.display()),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(
        dir.join("full_attention_heads.tsv"),
        pattern_tsv(&cal.scores, cal.kv_heads),
    )
    .map_err(io)?;
    std::fs::write(dir.join("raw.tsv"), pattern_tsv(&cal.raw, cal.kv_heads)).map_err(io)?;
    let config = serde_json::json!({
        "model_name": model_name,
        "sink_size": cal.spec.sink,
        "recent_size": cal.spec.recent,
        "method": cal.spec.method.name(),
        "context_length": cal.spec.context,
        "samples": cal.spec.samples,
        "seed": cal.spec.seed,
        "command": command,
        "tool": "ringattn duo calibrate",
    });
    let text = serde_json::to_string_pretty(&config).unwrap_or_default() + "\n";
    std::fs::write(dir.join("config.json"), text).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod top_tests {
    use super::*;

    #[test]
    fn top_heads_are_sorted_by_score() {
        let cal = Calibration {
            layers: 2,
            kv_heads: 2,
            scores: vec![0.1, 0.9, 0.5, 0.9],
            raw: vec![0.0; 4],
            spec: CalibrateSpec {
                context: 8,
                samples: 1,
                seed: 0,
                method: Method::Mass,
                sink: 1,
                recent: 1,
                threads: 1,
            },
        };
        assert_eq!(
            cal.top_heads(3),
            vec![(0, 1, 0.9), (1, 1, 0.9), (1, 0, 0.5)]
        );
        assert_eq!(cal.top_heads(10).len(), 4);
        assert_eq!(
            cal.summary(Path::new("p")),
            "wrote p (2 layers × 2 KV heads, method mass)\n\
             highest-scored heads: L0H1 0.900, L1H1 0.900, L1H0 0.500, L0H0 0.100\n"
        );
    }

    #[test]
    fn options_are_checked_without_a_model() {
        let spec = CalibrateSpec {
            context: 5,
            samples: 1,
            seed: 0,
            method: Method::Mass,
            sink: 1,
            recent: 2,
            threads: 1,
        };
        assert!(spec.check().is_err(), "5 < 2 × (1 + 2) is too short");
        let long = CalibrateSpec {
            context: 6,
            sink: 1,
            recent: 2,
            ..spec.clone()
        };
        assert!(long.check().is_ok());
        for bad in [
            CalibrateSpec {
                threads: 0,
                ..long.clone()
            },
            CalibrateSpec {
                samples: 0,
                ..long.clone()
            },
            CalibrateSpec {
                recent: 0,
                ..long.clone()
            },
        ] {
            assert!(bad.check().unwrap_err().to_string().contains("at least 1"));
        }
        let huge = CalibrateSpec {
            sink: usize::MAX,
            ..long
        };
        assert!(huge
            .check()
            .unwrap_err()
            .to_string()
            .starts_with("context:"));
    }
}
