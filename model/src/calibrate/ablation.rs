//! Method `ablation`: how far the model's next-token distributions at the answer rows move
//! (KL divergence from full attention) when ONE KV head alone is made streaming. Each layer's
//! input of the full run is kept, so ablating a head of layer `l` reruns layers `l..` only.

use candle_core::Tensor;
use ringattn_ring::{DuoPlan, HeadKind};

use crate::calibrate::forward::{kl_divergence, Forward};
use crate::error::Result;

/// The mean KL at `rows` of every (layer, KV head) ablation of one document, row-major;
/// `on_layer(l)` after each layer's heads.
pub fn ablate_document(
    fwd: &mut Forward<'_>,
    rows: std::ops::Range<usize>,
    sink: usize,
    recent: usize,
    on_layer: &mut dyn FnMut(usize),
) -> Result<Vec<f64>> {
    let (layers, kv_heads) = fwd.shape();
    let mut inputs: Vec<Tensor> = Vec::with_capacity(layers);
    let mut x = fwd.embedded()?;
    for l in 0..layers {
        inputs.push(x.clone());
        x = fwd.layer(l, &x, None, None)?;
    }
    let reference = fwd.logits(&x, rows.clone())?;
    let mut out = Vec::with_capacity(layers * kv_heads);
    for (l, input) in inputs.into_iter().enumerate() {
        for h in 0..kv_heads {
            let mut plan = DuoPlan::all_retrieval(kv_heads, sink, recent);
            plan.kinds[h] = HeadKind::Streaming;
            let y = fwd.layer(l, &input, Some(&plan), None)?;
            let y = fwd.layers_from(l + 1, y, None)?;
            let logits = fwd.logits(&y, rows.clone())?;
            let kl: f64 = reference
                .iter()
                .zip(&logits)
                .map(|(p, q)| kl_divergence(p, q))
                .sum::<f64>()
                / reference.len().max(1) as f64;
            out.push(kl);
        }
        on_layer(l);
    }
    Ok(out)
}
