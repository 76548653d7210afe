//! DuoAttention (Xiao et al., ICLR 2025) across the ring: retrieval heads keep and attend the full
//! KV; streaming heads keep only the first `sink` tokens and the last `recent` ones.
//!
//! - [`plan`]: which KV heads are retrieval and which streaming ([`DuoPlan`]), and their masks;
//! - [`decode`](mod@decode): distributed decode after the prefill, plain or with a plan.
//!
//! The streaming mask itself (`Mask::Streaming`) and its tile classification live in the
//! runtime's `mask` module, so the kernel needs no DuoAttention special case.

pub mod decode;
pub mod plan;

pub use decode::{
    decode, decode_masks, prefill, DecodeOutput, DecodeRoles, DecodeSpec, DecodeStats,
    DecodeStepStats, DecodedRow,
};
pub use plan::{DuoPlan, HeadKind};
