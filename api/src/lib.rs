//! ringattn: distributed ring attention on CPUs, as a library.
//!
//! - [`RunSpec`]: everything a whole job does, as plain data; [`run_local`] runs it on threads
//!   of this process, [`run_rank`] as one rank of any [`Comm`] (MPI); the report is
//!   [`report::Report`], DESIGN.md's JSON contract;
//! - [`LayerAttention`]: one rank's attention for one layer shape, called for every layer of a
//!   model with this rank's Q/K/V shard; it exposes the rank's token positions (for RoPE);
//! - [`DistKvCache`]: one layer's KV cache kept distributed across the ranks for decode;
//! - [`run_threads`]: one function per rank on threads of this process (the local backend);
//!   with the `mpi` feature, [`MpiComm`] is one rank of an `mpirun` job;
//! - [`LayoutChoice`]: the one mapping between layout names and layouts;
//! - [`tensors`]: a rank's rows of `[heads, tokens, dim]` tensors, and back;
//! - [`launch`] (mpirun command lines, signal forwarding), [`slurm`] (batch scripts, job
//!   arrays) and [`bench`](mod@bench) (the kernel, scheduler and scaling benchmarks' drivers).
//!
//! The crates below: `ringattn-striped` (layouts, partitioner, simulator) → `ringattn-ring`
//! (the ring pass, DuoAttention) → `ringattn-runtime` (kernel, online softmax, comm).

#![warn(missing_docs)]

pub mod bench;
pub mod check;
pub mod cores;
pub mod decode_rank;
pub mod decode_report;
pub mod dist_cache;
pub mod duo_inspect;
pub mod error;
pub mod io;
pub mod job;
pub mod launch;
pub mod layer;
pub mod layout;
pub mod local;
pub mod machine;
pub mod memory;
pub mod output;
#[cfg(feature = "plot")]
pub mod plot;
#[cfg(feature = "plot")]
pub mod plot_duo;
pub mod rank;
pub mod report;
pub mod results;
pub mod run;
pub mod sched_spec;
pub mod simulation;
pub mod slurm;
pub mod spec;
pub mod sweep;
pub mod tensors;
pub mod workers;

pub use dist_cache::DistKvCache;
pub use error::ApiError;
pub use layer::{executor_for, LayerAttention, LayerOutput, LayerSpec};
pub use layout::LayoutChoice;
pub use run::{
    allowed_cores, prepare_local, prepare_local_with, run_local, run_rank, RankOutput, RunOutput,
};
pub use spec::{CheckRows, DocsSpec, DuoSpec, FaultSpec, RunSpec};
pub use workers::run_threads;

pub use ringattn_ring::{metrics, DuoPlan, HeadKind};
#[cfg(feature = "mpi")]
pub use ringattn_runtime::mpi_backend::MpiComm;
pub use ringattn_runtime::{Comm, Dtype, Mask, Scheduler, TileShape};
pub use ringattn_striped::LayoutKind;
