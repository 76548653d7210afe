//! DuoAttention for the model: which KV heads of each layer are streaming heads (sink + recent
//! window only, in prefill and decode), from a pattern directory or a retrieval ratio.

use std::path::PathBuf;

use ringattn::spec::{selection_of, DuoSpec};
use ringattn_ring::{DuoPattern, DuoPlan, HeadKind, Selection};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Default sink tokens when neither the pattern's config nor the user gives one.
pub const DEFAULT_SINK: usize = 64;
/// Default recent window when neither the pattern's config nor the user gives one.
pub const DEFAULT_RECENT: usize = 256;

/// Where the per-layer plans come from.
#[derive(Clone, Debug, PartialEq)]
pub enum DuoSource {
    /// A DuoAttention pattern (`full_attention_heads.tsv` [+ `config.json`]) with a selection;
    /// `sink` / `recent` override the pattern's config.
    Pattern {
        /// Directory or TSV file.
        path: PathBuf,
        /// Sparsity or threshold.
        selection: Selection,
        /// Sink tokens (`None`: the pattern's, else [`DEFAULT_SINK`]).
        sink: Option<usize>,
        /// Recent window (`None`: the pattern's, else [`DEFAULT_RECENT`]).
        recent: Option<usize>,
    },
    /// The same synthetic plan in every layer: `round(ratio · kv_heads)` retrieval heads.
    Ratio {
        /// Fraction of retrieval KV heads, in [0, 1].
        ratio: f64,
        /// Sink tokens.
        sink: usize,
        /// Recent window.
        recent: usize,
    },
}

fn duo_err(e: ringattn_runtime::Error) -> ModelError {
    ModelError::Invalid {
        field: "duo",
        reason: e.to_string(),
    }
}

impl DuoSource {
    /// The model's source for a run's [`DuoSpec`]: a ratio (sink and recent defaulting to
    /// [`DEFAULT_SINK`] / [`DEFAULT_RECENT`]) or a pattern whose every layer uses its own row
    /// (the spec's `layer` is ignored). A fixed [`DuoSpec::Plan`] has no rows per layer: an
    /// error naming the field `duo`.
    pub fn from_spec(spec: &DuoSpec) -> Result<DuoSource> {
        match spec {
            DuoSpec::RetrievalRatio {
                ratio,
                sink,
                recent,
            } => Ok(DuoSource::Ratio {
                ratio: *ratio,
                sink: sink.unwrap_or(DEFAULT_SINK),
                recent: recent.unwrap_or(DEFAULT_RECENT),
            }),
            DuoSpec::Pattern {
                path,
                sparsity,
                threshold,
                sink,
                recent,
                ..
            } => Ok(DuoSource::Pattern {
                path: path.clone(),
                selection: selection_of(*sparsity, *threshold),
                sink: *sink,
                recent: *recent,
            }),
            DuoSpec::Plan(_) => Err(ModelError::Invalid {
                field: "duo",
                reason: "a single plan has no row per layer: give a pattern or a ratio".into(),
            }),
        }
    }

    /// One plan per layer for a model of `layers` layers and `kv_heads` KV heads.
    pub fn plans(&self, layers: usize, kv_heads: usize) -> Result<Vec<DuoPlan>> {
        match self {
            DuoSource::Ratio {
                ratio,
                sink,
                recent,
            } => {
                let plan = DuoPlan::with_retrieval_ratio(kv_heads, *ratio, *sink, *recent)
                    .map_err(duo_err)?;
                Ok(vec![plan; layers])
            }
            DuoSource::Pattern {
                path,
                selection,
                sink,
                recent,
            } => {
                let pat = DuoPattern::load(path).map_err(duo_err)?;
                pat.check_kv_heads(kv_heads).map_err(duo_err)?;
                if pat.layers() != layers {
                    return Err(ModelError::Invalid {
                        field: "duo",
                        reason: format!(
                            "the pattern {} has {} layers, the model {layers}",
                            path.display(),
                            pat.layers()
                        ),
                    });
                }
                let sink = sink.or(pat.config_sink()).unwrap_or(DEFAULT_SINK);
                let recent = recent.or(pat.config_recent()).unwrap_or(DEFAULT_RECENT);
                (0..layers)
                    .map(|l| pat.plan(l, *selection, sink, recent).map_err(duo_err))
                    .collect()
            }
        }
    }
}

/// What the plans of a run amount to (the report's `duo` field).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DuoSummary {
    /// Retrieval KV heads, all layers.
    pub retrieval_kv_heads: usize,
    /// Streaming KV heads, all layers.
    pub streaming_kv_heads: usize,
    /// Sink tokens.
    pub sink: usize,
    /// Recent window.
    pub recent: usize,
}

impl DuoSummary {
    /// The summary of per-layer `plans`.
    pub fn of(plans: &[DuoPlan]) -> Self {
        DuoSummary {
            retrieval_kv_heads: plans
                .iter()
                .map(|p| p.kv_heads_of(HeadKind::Retrieval).len())
                .sum(),
            streaming_kv_heads: plans
                .iter()
                .map(|p| p.kv_heads_of(HeadKind::Streaming).len())
                .sum(),
            sink: plans.first().map_or(0, |p| p.sink),
            recent: plans.first().map_or(0, |p| p.recent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_spec_maps_to_a_source_with_the_model_defaults() {
        let ratio = DuoSpec::RetrievalRatio {
            ratio: 0.5,
            sink: None,
            recent: Some(8),
        };
        assert_eq!(
            DuoSource::from_spec(&ratio).unwrap(),
            DuoSource::Ratio {
                ratio: 0.5,
                sink: DEFAULT_SINK,
                recent: 8
            }
        );
        let pattern = DuoSpec::Pattern {
            path: "p".into(),
            layer: 3,
            sparsity: Some(0.25),
            threshold: None,
            sink: Some(4),
            recent: None,
        };
        assert_eq!(
            DuoSource::from_spec(&pattern).unwrap(),
            DuoSource::Pattern {
                path: "p".into(),
                selection: selection_of(Some(0.25), None),
                sink: Some(4),
                recent: None
            }
        );
        let plan = DuoPlan::with_retrieval_ratio(2, 0.5, 4, 8).unwrap();
        assert!(DuoSource::from_spec(&DuoSpec::Plan(plan)).is_err());
    }

    #[test]
    fn a_pattern_directory_gives_one_plan_per_layer_with_the_quantile_over_all_layers() {
        let dir = std::env::temp_dir().join(format!("ringattn-model-duo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rows: Vec<String> = (0..30)
            .map(|l| format!("{} {} {}", l as f64 / 30.0, 0.5, 1.0 - l as f64 / 60.0))
            .collect();
        std::fs::write(dir.join("full_attention_heads.tsv"), rows.join("\n")).unwrap();
        let src = DuoSource::Pattern {
            path: dir.clone(),
            selection: Selection::Sparsity(0.5),
            sink: Some(8),
            recent: None,
        };
        let plans = src.plans(30, 3).unwrap();
        let s = DuoSummary::of(&plans);
        assert_eq!((s.retrieval_kv_heads, s.streaming_kv_heads), (45, 45));
        assert_eq!((s.sink, s.recent), (8, DEFAULT_RECENT));
        // A pattern of another depth or width is a typed error naming the field.
        assert!(matches!(
            src.plans(24, 3),
            Err(ModelError::Invalid { field: "duo", .. })
        ));
        assert!(matches!(
            src.plans(30, 4),
            Err(ModelError::Invalid { field: "duo", .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
