//! Helpers shared by the DuoAttention integration tests.

use ringattn_ring::{DuoPattern, DuoPlan, Selection};

/// The plan of the first layer of a vendored official pattern (`data/duo-patterns`: Llama-2-7B
/// MHA 32 KV heads, Llama-3-8B GQA 8 KV heads) that mixes both kinds at `sparsity`, with a small
/// window (sink 4, recent 24) so that windows move and cross rank boundaries in short sequences.
pub fn shared_plan(model: &str, sparsity: f64) -> DuoPlan {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/duo-patterns")
        .join(model)
        .join("lr=0.02-reg=0.05-ctx=1000_32000-multi_passkey10");
    let pattern = DuoPattern::load(&dir).unwrap();
    let sel = Selection::Sparsity(sparsity);
    let per_layer = pattern.retrieval_per_layer(sel).unwrap();
    let layer = (0..pattern.layers())
        .find(|&l| per_layer[l] > 0 && per_layer[l] < pattern.kv_heads())
        .expect("a layer with both kinds");
    pattern.plan(layer, sel, 4, 24).unwrap()
}
