//! The library's typed errors. They name the fields of the specs (`seq`, `kv_heads`, …), never
//! command-line flags: a front end maps field names to its own vocabulary.

use thiserror::Error;

/// Everything the library can refuse or fail with.
#[derive(Debug, Error)]
pub enum ApiError {
    /// A size that must be positive is zero.
    #[error("{field} must be at least 1")]
    Zero {
        /// The field (`seq`, `heads`, `kv_heads`, `head_dim`, `world`, `tile.q`, `tile.k`…).
        field: &'static str,
    },
    /// `heads` is not a multiple of `kv_heads` (GQA needs whole groups).
    #[error("heads ({heads}) is not a multiple of kv_heads ({kv_heads})")]
    HeadsNotMultiple {
        /// Query heads.
        heads: usize,
        /// KV heads.
        kv_heads: usize,
    },
    /// More ranks than tokens: every rank needs at least one token.
    #[error("more ranks ({world}) than tokens (seq {seq}): every rank needs at least one token")]
    TooManyRanks {
        /// Ranks.
        world: usize,
        /// Tokens.
        seq: usize,
    },
    /// A rank index outside the world, or a communicator of another shape than the handle's.
    #[error("rank {rank} of a world of {world} does not fit {what}")]
    RankMismatch {
        /// The rank given.
        rank: usize,
        /// The world size given.
        world: usize,
        /// What it was checked against.
        what: &'static str,
    },
    /// A buffer of the wrong length.
    #[error("{field} has {got} elements, expected {expected}")]
    Shape {
        /// The argument (`q`, `k`, `v`).
        field: &'static str,
        /// Its length.
        got: usize,
        /// The length the shape requires.
        expected: usize,
    },
    /// A DuoAttention plan for another number of KV heads.
    #[error("the DuoAttention plan has {plan} KV heads but kv_heads is {kv_heads}")]
    DuoHeads {
        /// KV heads of the plan.
        plan: usize,
        /// KV heads of the layer.
        kv_heads: usize,
    },
    /// DuoAttention on a non-causal layer (its streaming heads are causal).
    #[error("a DuoAttention plan needs causal = true (its streaming heads are causal)")]
    DuoNeedsCausal,
    /// DuoAttention together with packed documents (not supported: the streaming heads' sink
    /// would be the first document's).
    #[error("a DuoAttention plan cannot be combined with docs")]
    DuoWithDocs,
    /// Malformed packed documents (no document, a zero length, lengths not adding up to seq).
    #[error(transparent)]
    Docs(#[from] ringattn_runtime::DocsError),
    /// A decode append not at the end of the sequence.
    #[error("append at position {pos}, but the cache holds {len} tokens (append at {len})")]
    AppendPosition {
        /// The position given.
        pos: usize,
        /// Tokens in the cache.
        len: usize,
    },
    /// More decode tokens than the cache was made for.
    #[error("the KV cache was made for max_new = {max_new} decode tokens and is full")]
    CacheFull {
        /// Room reserved at creation.
        max_new: usize,
    },
    /// A size given in the spec differs from the input file's.
    #[error("{field} {given} does not match the input file's {file}")]
    FileMismatch {
        /// The field (`seq`, `heads`, `kv_heads`, `head_dim`).
        field: &'static str,
        /// The value given.
        given: usize,
        /// The file's.
        file: usize,
    },
    /// A fault injected outside the ring.
    #[error("fault {rank}:{step} is outside the ring ({world} ranks, steps 0..{world})")]
    FaultOutsideRing {
        /// Rank of the fault.
        rank: usize,
        /// Step of the fault.
        step: usize,
        /// Ranks.
        world: usize,
    },
    /// `attend` on a cache that holds no token.
    #[error("attend on an empty KV cache")]
    EmptyCache,
    /// A layout name that is not one of `contiguous`, `striped`, `zigzag`, `docs`, `auto`.
    #[error("unknown layout `{0}` (expected contiguous, striped, zigzag, docs or auto)")]
    UnknownLayout(String),
    /// The documents layout asked for by a run without packed documents.
    #[error("layout `{0}` needs packed documents (docs, or doc_lens / cu_seqlens in the input), and this run has none")]
    LayoutNeedsDocs(&'static str),
    /// A field's value that is not accepted; `expected` says what is.
    #[error("{field} `{}`: {expected}", .value.escape_debug())]
    Invalid {
        /// The field (`time`, `partition`, `command`, `mpirun`, `sched_alpha`…).
        field: &'static str,
        /// The value given (shown escaped, so a newline stays on one line).
        value: String,
        /// What would be accepted, and how to get it.
        expected: String,
    },
    /// A world size given that differs from the MPI job's.
    #[error("world {given} does not match the {size} MPI processes of this job (leave world unset, or start {given} processes)")]
    WorldMismatch {
        /// The world given.
        given: usize,
        /// Processes of the MPI job.
        size: usize,
    },
    /// No MPI launcher given and none found on PATH.
    #[error("no mpirun or mpiexec on PATH: install MPI with `bash scripts/install-mpi.sh`, or name one in the mpirun field")]
    NoMpiLauncher,
    /// The MPI backend asked of a build without the `mpi` feature.
    #[error("backend mpi: {}", crate::launch::backend::HOW_TO_BUILD_MPI)]
    MpiNotBuilt,
    /// A failure below the library: communication, a rank failure, an input file, I/O.
    #[error(transparent)]
    Runtime(#[from] ringattn_runtime::Error),
}

impl ApiError {
    /// The spec field the error is about, where there is one (front ends map it to a flag).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ApiError::Zero { field }
            | ApiError::Shape { field, .. }
            | ApiError::FileMismatch { field, .. }
            | ApiError::Invalid { field, .. } => Some(field),
            ApiError::FaultOutsideRing { .. } => Some("fault"),
            ApiError::HeadsNotMultiple { .. } | ApiError::DuoHeads { .. } => Some("kv_heads"),
            ApiError::TooManyRanks { .. } | ApiError::WorldMismatch { .. } => Some("world"),
            ApiError::UnknownLayout(_) | ApiError::LayoutNeedsDocs(_) => Some("layout"),
            ApiError::Docs(_) | ApiError::DuoWithDocs => Some("docs"),
            ApiError::MpiNotBuilt => Some("backend"),
            _ => None,
        }
    }

    /// True for bad input (a caller's mistake), false for a runtime failure.
    pub fn is_user_error(&self) -> bool {
        match self {
            ApiError::Runtime(e) => e.is_user_error(),
            _ => true,
        }
    }

    /// True when this rank stopped because another rank failed first.
    pub fn is_abort(&self) -> bool {
        matches!(
            self,
            ApiError::Runtime(ringattn_runtime::Error::Aborted { .. })
        )
    }
}

/// Library errors seen by code that speaks the runtime's error type (the CLI's exit codes):
/// runtime errors come back unchanged, the others become `InvalidConfig` with their message.
impl From<ApiError> for ringattn_runtime::Error {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Runtime(inner) => inner,
            other => ringattn_runtime::Error::config(other.to_string()),
        }
    }
}

impl ApiError {
    /// An [`ApiError::Invalid`] of `field`.
    pub fn invalid(
        field: &'static str,
        value: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        ApiError::Invalid {
            field,
            value: value.into(),
            expected: expected.into(),
        }
    }
}

/// Checks that every `(field, value)` is at least 1.
pub(crate) fn nonzero(fields: &[(&'static str, usize)]) -> Result<(), ApiError> {
    match fields.iter().find(|(_, v)| *v == 0) {
        Some(&(field, _)) => Err(ApiError::Zero { field }),
        None => Ok(()),
    }
}
