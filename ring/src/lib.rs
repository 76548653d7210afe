//! ringattn-ring: the ring pass of Ring Attention over any layout, and the contiguous layout.
//!
//! Depends only on `ringattn-runtime`; knows nothing of striping or partitioning.

#![warn(missing_docs)]

pub mod duo;
pub mod layout;
pub mod metrics;
pub mod pass;

pub use duo::{
    duo_ring_pass, duo_ring_pass_parts, streaming_key_ranges, DuoPattern, DuoPlan, DuoRankStats,
    HeadKind, Selection,
};
pub use layout::{split_range, Contiguous, Layout};
pub use pass::{
    all_positions, ring_pass, ring_pass_forwarding, ring_pass_pruned, ring_pass_with_progress,
    still_needed, FaultInjection, RankStats, RingConfig, StepStats,
};
