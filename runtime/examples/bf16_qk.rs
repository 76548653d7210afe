//! One block of attention with bf16 K/V, first with Q exact (the default), then with Q rounded to
//! bf16 for Q·Kᵀ (`set_qk_dtype(Dtype::Bf16)`, what `--qk-dtype bf16` does): the speed of each and
//! how far the two results are apart. Where the CPU has no AVX512-BF16 the second mode is refused
//! (`check_qk_dtype` says why) and only the first runs.
//!
//! `cargo run --release -p ringattn-runtime --example bf16_qk`

use std::time::Instant;

use ringattn_runtime::{
    attend_with, check_qk_dtype, set_qk_dtype, AttnState, Dtype, Finalized, Isa, KvBlock, Mask,
    Positions, QShard, Synthetic, TileShape,
};

const SEQ: usize = 2048;
const HEADS: usize = 8;
const DIM: usize = 128;

/// The attention of `q` over `kv` (the second of two calls: the first allocates the buffers)
/// and the seconds it took.
fn attention(q: &QShard, kv: &KvBlock, pool: &rayon::ThreadPool) -> (Finalized, f64) {
    let once = || {
        let mut state = AttnState::new(HEADS, SEQ, DIM);
        let start = Instant::now();
        attend_with(
            Isa::Avx512,
            q,
            kv,
            Mask::Causal,
            TileShape::default(),
            &mut state,
            pool,
        );
        (state.finalize(), start.elapsed().as_secs_f64())
    };
    once();
    once()
}

fn main() -> ringattn_runtime::Result<()> {
    let src = Synthetic { seed: 1 };
    let pos = Positions::contiguous(0, SEQ);
    let q = QShard::from_source(&src, HEADS, DIM, pos.clone())?;
    let kv = KvBlock::from_source_as(&src, 0, HEADS, DIM, pos, Dtype::Bf16)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .build()
        .expect("a thread pool");
    let flops = 4.0 * (HEADS * DIM) as f64 * (SEQ * (SEQ + 1) / 2) as f64;
    let (exact, seconds) = attention(&q, &kv, &pool);
    println!("bf16 K/V, Q exact:   {:6.1} GFLOP/s", flops / seconds / 1e9);
    if let Err(why) = check_qk_dtype(Dtype::Bf16, Isa::Avx512, Dtype::Bf16) {
        println!("bf16 Q·Kᵀ not run: {why}");
        return Ok(());
    }
    set_qk_dtype(Dtype::Bf16);
    let (rounded, seconds) = attention(&q, &kv, &pool);
    let apart = exact
        .out
        .iter()
        .zip(&rounded.out)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("bf16 K/V, bf16 Q·Kᵀ: {:6.1} GFLOP/s", flops / seconds / 1e9);
    println!("largest |out| difference between the two: {apart:.1e}");
    Ok(())
}
