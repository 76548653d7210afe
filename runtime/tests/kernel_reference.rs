//! The single-node kernel against the f64 reference.
//!
//! Every check builds Q from a (possibly non-contiguous) subset of positions and K/V from
//! synthetic rows, runs [`attend`](ringattn_runtime::attend) and compares each (head, row) with
//! the f64 reference over all keys of the matching KV head. Tolerances are fixed by the issue:
//! out ≤ 2e-5 (max abs), lse ≤ 1e-5. Besides accuracy it checks that the tile counts `attend`
//! returns are the ones `count_tiles` predicts. Thread counts, KV splits and merged states:
//! `kernel_states.rs`.

mod kernel_cases;

use kernel_cases::*;
use proptest::prelude::*;
use ringattn_runtime::{
    attend, count_tiles, AttnState, KvBlock, Mask, Positions, QShard, RowSource, Synthetic,
    TensorKind, TileCounts, TileShape,
};

#[test]
fn kernel_matches_reference_on_explicit_matrix() {
    // Odd lengths, none a multiple of the 64-row tile (and 1).
    let lengths = [1usize, 63, 65, 131, 203, 257];
    let mut worst = (0.0f64, 0.0f64);
    let mut runs = 0;
    for (i, mask) in masks().into_iter().enumerate() {
        for (j, tile) in TILES.into_iter().enumerate() {
            let k = i * TILES.len() + j;
            let (heads, kv_heads) = HEADS[k % HEADS.len()];
            let c = Case {
                n: lengths[(i + 2 * j) % lengths.len()],
                heads,
                kv_heads,
                dim: DIMS[(k / 3) % DIMS.len()],
                mask: mask.clone(),
                tile,
                pick: PICKS[(i + j) % PICKS.len()],
                seed: k as u64,
            };
            let e = check_case(&c);
            worst = (worst.0.max(e.0), worst.1.max(e.1));
            runs += 1;
        }
    }
    // Every D × every head grouping × every query pick, with the common masks.
    for (i, dim) in DIMS.into_iter().enumerate() {
        for (j, (heads, kv_heads)) in HEADS.into_iter().enumerate() {
            for (m, mask) in [
                Mask::None,
                Mask::Causal,
                Mask::Streaming {
                    sink: 4,
                    recent: 33,
                },
            ]
            .into_iter()
            .enumerate()
            {
                let c = Case {
                    n: [97, 131, 255][(i + j + m) % 3],
                    heads,
                    kv_heads,
                    dim,
                    mask,
                    tile: TILES[(i + j + m) % 3],
                    pick: PICKS[(i * 3 + j + m) % PICKS.len()],
                    seed: 1000 + (i * 9 + j * 3 + m) as u64,
                };
                let e = check_case(&c);
                worst = (worst.0.max(e.0), worst.1.max(e.1));
                runs += 1;
            }
        }
    }
    println!(
        "explicit matrix: {runs} runs, worst out err {:.3e}, worst lse err {:.3e}",
        worst.0, worst.1
    );
}

#[test]
fn kernel_matches_reference_for_head_dims_not_multiple_of_eight() {
    // The dot product has an 8-lane body and a scalar tail; exercise the tail alone and mixed.
    for (dim, mask) in [
        (3, Mask::Causal),
        (12, Mask::None),
        (21, Mask::Streaming { sink: 2, recent: 9 }),
    ] {
        let c = Case {
            n: 77,
            heads: 4,
            kv_heads: 2,
            dim,
            mask,
            tile: TileShape { q: 16, k: 32 },
            pick: QPick::TwoRuns,
            seed: 31,
        };
        check_case(&c);
    }
}

#[test]
fn kernel_matches_reference_on_a_longer_sequence() {
    // Long enough that f32 sums over many key tiles matter; strided queries keep it cheap.
    for (mask, dim, (heads, kv_heads)) in [
        (Mask::Causal, 128, (4, 4)),
        (Mask::None, 80, (6, 1)),
        (
            Mask::Streaming {
                sink: 4,
                recent: 500,
            },
            64,
            (8, 2),
        ),
    ] {
        let c = Case {
            n: 2049,
            heads,
            kv_heads,
            dim,
            mask: mask.clone(),
            tile: TileShape::default(),
            pick: QPick::Strided {
                start: 3,
                stride: 61,
            },
            seed: 77,
        };
        let e = check_case(&c);
        println!(
            "N=2049 {mask:?} D={dim} H={heads}/{kv_heads}: out err {:.3e}, lse err {:.3e}",
            e.0, e.1
        );
    }
}

#[test]
fn tile_counts_match_count_tiles_on_explicit_cases() {
    // Hand-checked counts, so a bug shared by `attend` and `count_tiles` cannot pass unnoticed.
    let src = Synthetic { seed: 5 };
    let q = QShard::from_source(&src, 2, 16, Positions::contiguous(0, 128)).unwrap();
    let kv = KvBlock::from_source(&src, 0, 1, 16, Positions::contiguous(0, 128)).unwrap();
    let pool = pool(2);
    let tile = TileShape { q: 32, k: 32 };
    let cases = [
        // 4 × 4 tiles: causal has 6 below the diagonal, 4 on it, 6 above.
        (
            Mask::Causal,
            TileCounts {
                full: 6,
                partial: 4,
                empty: 6,
            },
        ),
        (
            Mask::None,
            TileCounts {
                full: 16,
                partial: 0,
                empty: 0,
            },
        ),
        // Window of 32, no sink: diagonal tiles partial, first sub-diagonal partial, rest empty.
        (
            Mask::Streaming {
                sink: 0,
                recent: 32,
            },
            TileCounts {
                full: 0,
                partial: 7,
                empty: 9,
            },
        ),
    ];
    for (mask, per_head) in cases {
        let mut state = AttnState::new(2, 128, 16);
        let got = attend(&q, &kv, mask.clone(), tile, &mut state, &pool);
        assert_eq!(
            count_tiles(&q.positions, &kv.positions, mask.clone(), tile),
            per_head,
            "{mask:?}"
        );
        assert_eq!(got, scaled(per_head, 2), "{mask:?}");
    }
    // Strided queries against a strided block (a striped ring step): tile 0 of queries
    // {0, 4, ..., 28} against keys {1, 5, ..., 29} is partial (query 0 precedes key 1).
    let qs = QShard::from_source(&src, 1, 16, Positions::strided(0, 32, 4)).unwrap();
    let ks = KvBlock::from_source(&src, 1, 1, 16, Positions::strided(1, 32, 4)).unwrap();
    let t = TileShape { q: 8, k: 8 };
    let mut state = AttnState::new(1, 32, 16);
    let got = attend(&qs, &ks, Mask::Causal, t, &mut state, &pool);
    assert_eq!(
        got,
        TileCounts {
            full: 6,
            partial: 4,
            empty: 6
        }
    );
    assert_eq!(
        count_tiles(&qs.positions, &ks.positions, Mask::Causal, t),
        got
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn kernel_matches_reference_random(c in case_strategy()) {
        check_case(&c);
    }
}

#[test]
fn synthetic_rows_used_by_the_reference_are_the_ones_in_the_shards() {
    // The checks above rebuild reference rows from the shards themselves; make sure those are
    // the source's rows at the right positions (a shard gathering wrong rows would otherwise
    // go unnoticed by a self-consistent comparison).
    let src = Synthetic { seed: 99 };
    let pos = QPick::RunThenStride.positions(50);
    let q = QShard::from_source(&src, 3, 8, pos.clone()).unwrap();
    let kv = KvBlock::from_source(&src, 0, 3, 8, pos.clone()).unwrap();
    let mut row = [0.0f32; 8];
    for h in 0..3 {
        for (r, p) in pos.iter().enumerate() {
            src.fill_row(TensorKind::Q, h, p, &mut row).unwrap();
            assert_eq!(q.row(h, r), &row);
            src.fill_row(TensorKind::K, h, p, &mut row).unwrap();
            assert_eq!(
                &kv.k.as_f32().unwrap()[(h * pos.len() + r) * 8..][..8],
                &row
            );
            src.fill_row(TensorKind::V, h, p, &mut row).unwrap();
            assert_eq!(
                &kv.v.as_f32().unwrap()[(h * pos.len() + r) * 8..][..8],
                &row
            );
        }
    }
}
