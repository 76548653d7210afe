//! DuoAttention (Xiao et al., ICLR 2025) across the ring: retrieval heads keep and attend the full
//! KV; streaming heads keep only the first `sink` tokens and the last `recent` ones.
//!
//! - [`plan`]: which KV heads are retrieval and which streaming ([`DuoPlan`]), and their masks;
//! - [`prefill`]: the ring pass with streaming heads' KV pruned to what later ranks attend
//!   ([`duo_ring_pass`]).
//! - [`pattern`]: the official gate files ([`DuoPattern`]) and the choice of retrieval heads from
//!   them by sparsity or threshold ([`Selection`]).
//! - [`decode`](mod@decode): distributed decode after the prefill, plain or with a plan.
//!
//! The streaming mask itself (`Mask::Streaming`) and its tile classification live in the
//! runtime's `mask` module, so the kernel needs no DuoAttention special case.

pub mod decode;
pub mod pattern;
pub mod plan;
pub mod prefill;

pub use decode::{
    decode, decode_masked, decode_masks, decode_masks_for, prefill_for_decode,
    prefill_for_decode_masked, DecodeOutput, DecodeRoles, DecodeSpec, DecodeStats, DecodeStepStats,
    DecodedRow,
};
pub use pattern::{DuoPattern, Selection};
pub use plan::{DuoPlan, HeadKind};
pub use prefill::{duo_ring_pass, duo_ring_pass_parts, streaming_key_ranges, DuoRankStats};
