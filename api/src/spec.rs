//! [`RunSpec`]: everything a whole ring-attention job needs, as plain data (serde), and its
//! validation with errors that name the spec's fields.

use std::path::PathBuf;

use ringattn_ring::duo::pattern::{DEFAULT_RECENT, DEFAULT_SINK};
use ringattn_ring::{DuoPattern, DuoPlan, Selection};
use ringattn_runtime::io_docs::read_lengths_file;
use ringattn_runtime::{Documents, Dtype, TileShape};
use serde::{Deserialize, Serialize};

use crate::error::{nonzero, ApiError};
use crate::layout::LayoutChoice;
use crate::sched_spec::SchedSpec;

/// Rows per rank to verify against the f64 reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckRows {
    /// Every row up to [`CHECK_ALL_UP_TO`](crate::job::CHECK_ALL_UP_TO) tokens, else
    /// [`DEFAULT_CHECK_ROWS`](crate::job::DEFAULT_CHECK_ROWS) evenly spaced rows per rank.
    Auto,
    /// This many evenly spaced rows per rank (at least 1).
    Rows(usize),
}

/// A testing aid: rank `rank` fails at the start of ring step `step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// The failing rank.
    pub rank: usize,
    /// The ring step at which it fails.
    pub step: usize,
}

/// Where a DuoAttention plan comes from; made into a [`DuoPlan`] once the KV heads are known.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DuoSpec {
    /// This plan.
    Plan(DuoPlan),
    /// A synthetic plan: the fraction `ratio` of the KV heads are retrieval heads.
    RetrievalRatio {
        /// Fraction of retrieval heads.
        ratio: f64,
        /// Sink tokens of streaming heads (`None`: the default).
        sink: Option<usize>,
        /// Recent window of streaming heads (`None`: the default).
        recent: Option<usize>,
    },
    /// One layer of an official DuoAttention gate file.
    Pattern {
        /// The pattern file or directory.
        path: PathBuf,
        /// The layer whose heads are used.
        layer: usize,
        /// Fraction of streaming heads over all layers (default 0.5), unless `threshold`.
        sparsity: Option<f64>,
        /// Gate threshold: a head whose gate is at least this is a retrieval head.
        threshold: Option<f64>,
        /// Sink tokens (`None`: the pattern's, else the default).
        sink: Option<usize>,
        /// Recent window (`None`: the pattern's, else the default).
        recent: Option<usize>,
    },
}

/// Where the packed documents of a run come from (see [`ringattn_runtime::Documents`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DocsSpec {
    /// These lengths, in order (they must add up to `seq`).
    Lengths(Vec<usize>),
    /// A text file of one length per line.
    File(PathBuf),
}

impl DocsSpec {
    /// The documents (lengths not yet checked against `seq`).
    pub fn documents(&self) -> Result<Documents, ApiError> {
        let lengths = match self {
            DocsSpec::Lengths(l) => l.clone(),
            DocsSpec::File(path) => read_lengths_file(path)?,
        };
        Ok(Documents::from_lengths(&lengths)?)
    }
}

/// Default fraction of streaming heads when a pattern is used without sparsity or threshold.
pub const DEFAULT_SPARSITY: f64 = 0.5;

/// The head selection of a pattern: by `threshold` when given, else by `sparsity` (default 0.5).
pub fn selection_of(sparsity: Option<f64>, threshold: Option<f64>) -> Selection {
    match threshold {
        Some(t) => Selection::Threshold(t),
        None => Selection::Sparsity(sparsity.unwrap_or(DEFAULT_SPARSITY)),
    }
}

impl DuoSpec {
    /// The plan for a layer of `kv_heads` KV heads.
    pub fn plan(&self, kv_heads: usize) -> Result<DuoPlan, ApiError> {
        match self {
            DuoSpec::Plan(plan) => Ok(plan.clone()),
            DuoSpec::RetrievalRatio {
                ratio,
                sink,
                recent,
            } => Ok(DuoPlan::with_retrieval_ratio(
                kv_heads,
                *ratio,
                sink.unwrap_or(DEFAULT_SINK),
                recent.unwrap_or(DEFAULT_RECENT),
            )?),
            DuoSpec::Pattern {
                path,
                layer,
                sparsity,
                threshold,
                sink,
                recent,
            } => {
                let pattern = DuoPattern::load(path)?;
                pattern.check_kv_heads(kv_heads)?;
                Ok(pattern.plan(
                    *layer,
                    selection_of(*sparsity, *threshold),
                    pattern.sink_or(*sink),
                    pattern.recent_or(*recent),
                )?)
            }
        }
    }
}

/// Everything `run` does, as plain data. Sizes left `None` come from the input file, or take
/// the defaults (seq 4096, heads 8, kv_heads = heads, head_dim 128, world = allowed cores,
/// threads = allowed cores / world).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Ranks in the ring.
    pub world: Option<usize>,
    /// Sequence length N.
    pub seq: Option<usize>,
    /// Query heads.
    pub heads: Option<usize>,
    /// KV heads (GQA when fewer than `heads`; must divide it).
    pub kv_heads: Option<usize>,
    /// Head dimension.
    pub head_dim: Option<usize>,
    /// Causal mask.
    pub causal: bool,
    /// Token layout.
    pub layout: LayoutChoice,
    /// Storage type of K and V.
    pub dtype: Dtype,
    /// Kernel threads per rank.
    pub threads: Option<usize>,
    /// Pin kernel threads to cores.
    pub pin: bool,
    /// Seed of the synthetic Q/K/V (when there is no `input`).
    pub seed: u64,
    /// A safetensors file with q [H, N, D], k and v [Hkv, N, D] (f32), instead of synthetic data.
    pub input: Option<PathBuf>,
    /// Verify rows against the f64 reference.
    pub check: Option<CheckRows>,
    /// Return every rank's output rows (out and lse, in token order) to the root.
    pub want_output: bool,
    /// Kernel tile shape.
    pub tile: TileShape,
    /// Testing aid: make a rank fail.
    pub fault: Option<FaultSpec>,
    /// How kernel threads share the work.
    pub sched: SchedSpec,
    /// DuoAttention (needs `causal`).
    pub duo: Option<DuoSpec>,
    /// Packed documents: a token attends only within its own document (`None`: one document,
    /// or the input file's `doc_lens` / `cu_seqlens` tensor when it has one).
    #[serde(default)]
    pub docs: Option<DocsSpec>,
    /// Sliding window W: query q attends keys with q − W < k ≤ q (causal) or |q − k| < W.
    #[serde(default)]
    pub window: Option<usize>,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            world: None,
            seq: None,
            heads: None,
            kv_heads: None,
            head_dim: None,
            causal: false,
            layout: LayoutChoice::Auto,
            dtype: Dtype::F32,
            threads: None,
            pin: true,
            seed: 0,
            input: None,
            check: None,
            want_output: false,
            tile: TileShape::default(),
            fault: None,
            sched: SchedSpec::default(),
            duo: None,
            docs: None,
            window: None,
        }
    }
}

impl RunSpec {
    /// Checks what can be checked without reading the input file: given sizes positive, heads
    /// a multiple of kv_heads, the fault inside the ring, DuoAttention only with a causal mask.
    pub fn validate(&self) -> Result<(), ApiError> {
        let given = |v: Option<usize>| v.unwrap_or(1);
        nonzero(&[
            ("seq", given(self.seq)),
            ("heads", given(self.heads)),
            ("kv_heads", given(self.kv_heads)),
            ("head_dim", given(self.head_dim)),
            ("world", given(self.world)),
            ("tile.q", self.tile.q),
            ("tile.k", self.tile.k),
            ("threads", given(self.threads)),
        ])?;
        if let (Some(heads), Some(kv_heads)) = (self.heads, self.kv_heads) {
            check_sizes(heads, kv_heads, 1, 1)?;
        }
        if let (Some(world), Some(seq)) = (self.world, self.seq) {
            check_sizes(1, 1, world, seq)?;
        }
        if let (Some(f), Some(world)) = (self.fault, self.world) {
            check_fault(f, world)?;
        }
        if self.check == Some(CheckRows::Rows(0)) {
            return Err(ApiError::Zero {
                field: "check_rows",
            });
        }
        if self.duo.is_some() && !self.causal {
            return Err(ApiError::DuoNeedsCausal);
        }
        check_mask(self.window, self.docs.is_some(), self.duo.is_some())?;
        if self.input.is_none() {
            // With an input file the documents may be its doc_lens: checked when it is read.
            self.layout.check_docs(self.docs.is_some())?;
        }
        if let Some(DocsSpec::Lengths(lengths)) = &self.docs {
            let docs = Documents::from_lengths(lengths)?;
            if let Some(seq) = self.seq {
                docs.check_total(seq)?;
            }
        }
        Ok(())
    }
}

/// A window of at least 1, and no documents under DuoAttention (its streaming heads' sink is
/// the sequence's first tokens, not each document's).
pub(crate) fn check_mask(window: Option<usize>, docs: bool, duo: bool) -> Result<(), ApiError> {
    if window == Some(0) {
        return Err(ApiError::Zero { field: "window" });
    }
    if docs && duo {
        return Err(ApiError::DuoWithDocs);
    }
    Ok(())
}

/// Heads a multiple of KV heads, and no more ranks than tokens.
pub(crate) fn check_sizes(
    heads: usize,
    kv_heads: usize,
    world: usize,
    seq: usize,
) -> Result<(), ApiError> {
    if !heads.is_multiple_of(kv_heads) {
        return Err(ApiError::HeadsNotMultiple { heads, kv_heads });
    }
    if world > seq {
        return Err(ApiError::TooManyRanks { world, seq });
    }
    Ok(())
}

/// The fault's rank and step inside a ring of `world` ranks.
pub(crate) fn check_fault(f: FaultSpec, world: usize) -> Result<(), ApiError> {
    if f.rank >= world || f.step >= world {
        return Err(ApiError::FaultOutsideRing {
            rank: f.rank,
            step: f.step,
            world,
        });
    }
    Ok(())
}
