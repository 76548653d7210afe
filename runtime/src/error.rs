//! Typed errors of the runtime. Every user-facing failure is a variant here, so the binary can
//! map it to a one-line message and an exit code (2 = bad input, 1 = runtime failure).

use thiserror::Error;

/// Result alias used across ringattn crates.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong on one node.
#[derive(Debug, Error)]
pub enum Error {
    /// A size, shape or option the user gave makes no sense (zero sizes, heads % kv_heads != 0...).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// An input file is malformed, has the wrong dtype or shape, or holds NaN/Inf.
    #[error("bad input {path}: {reason}")]
    BadInput {
        /// The file that was being read.
        path: String,
        /// What is wrong with it, with tensor name and position where known.
        reason: String,
    },
    /// An I/O error while reading or writing a file.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (e.g. "writing out.safetensors").
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// This rank failed on purpose (test hook) or by a bug; names the rank.
    #[error("rank {rank} failed: {reason}")]
    RankFailed {
        /// The failing rank.
        rank: usize,
        /// Why it failed.
        reason: String,
    },
    /// Another rank failed and the job was aborted; names the rank that failed first.
    #[error("aborted because rank {rank} failed: {reason}")]
    Aborted {
        /// The rank that failed first.
        rank: usize,
        /// That rank's failure message.
        reason: String,
    },
    /// The instruction set asked for (`isa` field, or `RINGATTN_ISA`) is not supported by this
    /// CPU.
    #[error("isa: this CPU does not support {requested} (it supports: {available})")]
    IsaUnavailable {
        /// The instruction set asked for.
        requested: &'static str,
        /// The ones this CPU supports, fastest first.
        available: String,
    },
    /// A result that f32 cannot hold (scores or sums past f32's range) for finite inputs:
    /// names the tensor, head and global position instead of returning inf or NaN.
    #[error("{tensor} head {head} position {position}: {reason}")]
    Overflow {
        /// The tensor whose value cannot be represented (`scores`, `out`, `lse`).
        tensor: &'static str,
        /// Query head.
        head: usize,
        /// Global position of the query row.
        position: usize,
        /// What overflowed.
        reason: String,
    },
    /// A peer disappeared (its channel closed) without an abort message.
    #[error("communication failure on rank {rank}: {reason}")]
    Comm {
        /// The rank that saw the failure.
        rank: usize,
        /// What happened.
        reason: String,
    },
}

impl Error {
    /// True when the error comes from bad user input (exit code 2) rather than a runtime failure.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::InvalidConfig(_) | Error::BadInput { .. } | Error::IsaUnavailable { .. }
        )
    }

    /// Shorthand for [`Error::InvalidConfig`].
    pub fn config(msg: impl Into<String>) -> Self {
        Error::InvalidConfig(msg.into())
    }
}
