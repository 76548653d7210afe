//! ringattn-runtime: everything ONE node does, and nothing about rings.
//!
//! - [`positions`]: a shard's global token positions as arithmetic runs;
//! - [`mask`]: masks as predicates on positions and the Empty / Full / Partial tile rule;
//! - [`kernel`]: the blocked attention kernel over (head, query tile) items, GQA by head mapping;
//! - [`state`]: the f32 online-softmax state, its log-sum-exp merge and finalisation;
//! - [`tensor`]: the query shard and the KV block (f32 or bf16 K/V) that travels the ring;
//! - [`kv_wire`]: the KV block's wire format between ranks;
//! - [`kv_cache`]: the per-rank decode KV cache; [`decode`](mod@decode): the one-row decode kernel;
//! - [`reference`](mod@reference): the f64 reference used by tests and `--check`; [`check`]:
//!   comparison with it under relative tolerances;
//! - [`source`]: deterministic synthetic inputs; [`io`]: safetensors inputs and outputs;
//! - [`comm`]: the `Comm` trait; [`cancel`]: abort noticed between kernel work items; [`local`]: the in-process threads + channels backend;
//!   `mpi_backend` (cargo feature `mpi`): one process per rank over MPI (rsmpi);
//! - [`sched`]: the hybrid-core scheduler that runs every kernel on pinned threads;
//! - [`memory`]: what a job needs and what the machine has, checked before allocating;
//! - [`error`]: typed errors.

#![warn(missing_docs)]

pub mod cancel;
pub mod check;
pub mod comm;
pub mod decode;
pub mod error;
pub mod io;
pub mod io_docs;
pub mod kernel;
pub mod kv_cache;
pub mod kv_wire;
pub mod local;
pub mod mask;
pub mod memory;
#[cfg(feature = "mpi")]
pub mod mpi_backend;
pub mod positions;
pub mod reference;
pub mod sched;
pub mod source;
pub mod state;
pub mod temp_files;
pub mod tensor;
pub mod vscale;

pub use cancel::{CancelToken, Cancellable};
pub use comm::Comm;
pub use decode::{decode_attend, decode_attend_on};
pub use error::{Error, Result};
pub use kernel::{
    activate_qk_dtype, attend, attend_with, bf16_dot_available, check_qk_dtype, count_tiles,
    parse_qk_dtype, qk_dtype, qk_dtype_for, resolve_isa, set_active_isa, set_qk_dtype, Isa,
    IsaChoice, TileCounts, TileShape, QK_DTYPE_ENV,
};
pub use kv_cache::{HeadCache, KvCache};
pub use mask::{DocsError, DocsSummary, Documents, Mask, Span, TileClass};
pub use positions::{Positions, Run};
pub use sched::{BusyClock, BusyModel, Executor, SchedConfig, SchedKind, Scheduler};
pub use source::{KvHeadSubset, RowSource, Synthetic, TensorKind};
pub use state::{AttnState, Finalized};
pub use tensor::{Dtype, KvBlock, KvData, QShard};
