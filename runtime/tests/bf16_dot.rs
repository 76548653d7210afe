//! bf16 K/V on the AVX512-BF16 path (P·V by `vdpbf16ps`, probabilities rounded to bf16)
//! against the portable path on the same bf16 K/V (which widens to f32 and computes in f32):
//! every tile class, odd key counts (a half-empty last key pair), odd head dims, GQA.
//! Stated bound: |out − portable| ≤ 2⁻⁹·max|v| (each weight off by ≤ 2⁻⁹ relative), lse within
//! f32 rounding (Q·Kᵀ and the sum stay f32).

use ringattn_runtime::{
    attend_with, AttnState, Dtype, Isa, KvBlock, Mask, Positions, QShard, Synthetic, TileShape,
};

fn run(isa: Isa, n: usize, dim: usize, mask: Mask, tile: TileShape) -> ringattn_runtime::Finalized {
    let src = Synthetic { seed: 5 };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let pos = Positions::contiguous(0, n);
    let q = QShard::from_source(&src, 4, dim, pos.clone()).unwrap();
    let kv = KvBlock::from_source_as(&src, 0, 2, dim, pos, Dtype::Bf16).unwrap();
    let mut state = AttnState::new(4, n, dim);
    attend_with(isa, &q, &kv, mask, tile, &mut state, &pool);
    state.finalize_checked(&q.positions).unwrap()
}

#[test]
fn bf16_dot_products_match_the_scalar_path_within_the_stated_bound() {
    if !std::arch::is_x86_feature_detected!("avx512bf16") {
        eprintln!("no AVX512-BF16 on this CPU: the vdpbf16ps path is not reachable here");
        return;
    }
    let mut worst = 0.0f32;
    let masks = [
        Mask::None,
        Mask::Causal,
        Mask::Streaming {
            sink: 3,
            recent: 37,
        },
    ];
    for mask in masks {
        for (n, dim, tile) in [
            (300, 64, (64, 64)),
            (257, 128, (128, 128)),
            (77, 24, (32, 18)),
        ] {
            let tile = TileShape {
                q: tile.0,
                k: tile.1,
            };
            let got = run(Isa::Avx512, n, dim, mask.clone(), tile);
            let want = run(Isa::Portable, n, dim, mask.clone(), tile);
            for (a, b) in got.out.iter().zip(&want.out) {
                let err = (a - b).abs();
                worst = worst.max(err);
                // |v| < 1 for the synthetic inputs.
                assert!(err <= 1.0 / 512.0, "{mask:?} n {n} d {dim}: {a} vs {b}");
            }
            for (a, b) in got.lse.iter().zip(&want.lse) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{mask:?}: lse {a} vs {b}"
                );
            }
        }
    }
    eprintln!("bf16 dot path: max |out − portable| = {worst:.2e}");
    assert!(
        worst > 0.0,
        "the vdpbf16ps path ran (bf16 weights differ from f32 ones)"
    );
}
