//! Who does what in a decode run, and each KV head's decode mask.

use ringattn_runtime::Mask;

use super::DecodeSpec;
use crate::duo::plan::DuoPlan;
use crate::layout::Layout;

/// The mask of each KV head in decode: causal for retrieval heads (and for every head without a
/// plan), `Mask::Streaming { sink, recent }` for streaming heads.
pub fn decode_masks(kv_heads: usize, duo: Option<&DuoPlan>) -> Vec<Mask> {
    decode_masks_for(kv_heads, duo, &Mask::Causal)
}

/// [`decode_masks`] with `base` (causal, possibly with a sliding window or packed documents:
/// decoded tokens belong to the last document) for retrieval heads.
pub fn decode_masks_for(kv_heads: usize, duo: Option<&DuoPlan>, base: &Mask) -> Vec<Mask> {
    (0..kv_heads)
        .map(|g| duo.map_or(base.clone(), |plan| plan.mask_of(g, base.clone())))
        .collect()
}

/// Who does what in a decode run (the same on every rank).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeRoles {
    /// Owner of each step's token: it appends the token's retrieval K/V, broadcasts the query and
    /// receives the reduced output.
    pub owners: Vec<usize>,
    /// The rank holding every streaming head's bounded cache: the owner of the last prefill
    /// token.
    pub stream_rank: usize,
}

impl DecodeRoles {
    /// The roles of `spec` over `world` ranks laid out by `layout`.
    pub fn new(layout: &dyn Layout, world: usize, spec: &DecodeSpec) -> Self {
        let (n, last) = (spec.prefill, spec.prefill.saturating_sub(1));
        DecodeRoles {
            owners: (0..spec.steps)
                .map(|s| layout.decode_owner(n.saturating_add(s), world, n))
                .collect(),
            // The owner of the last prefill token: what `decode_owner` answers for it.
            stream_rank: layout.decode_owner(last, world, n),
        }
    }
}
