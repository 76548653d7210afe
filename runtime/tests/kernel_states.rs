//! The kernel's state is independent of how the work is cut: bitwise the same for one and
//! three threads and over blocks in sequence; two KV parts attended separately and merged match
//! one pass (within the fixed tolerances), an empty state merges as the identity, and a
//! streaming window covering everything is bitwise causal. Accuracy: `kernel_reference.rs`.

mod kernel_cases;

use kernel_cases::*;
use proptest::prelude::*;
use ringattn_runtime::{AttnState, KvBlock, Mask, Positions, Synthetic, TileShape};

#[test]
fn results_are_bitwise_identical_for_one_and_three_threads() {
    let cases = [
        Case {
            n: 203,
            heads: 8,
            kv_heads: 2,
            dim: 80,
            mask: Mask::Causal,
            tile: TileShape { q: 7, k: 5 },
            pick: QPick::All,
            seed: 1,
        },
        Case {
            n: 257,
            heads: 6,
            kv_heads: 1,
            dim: 64,
            mask: Mask::Streaming {
                sink: 3,
                recent: 40,
            },
            tile: TileShape { q: 16, k: 32 },
            pick: QPick::TwoRuns,
            seed: 2,
        },
        Case {
            n: 131,
            heads: 4,
            kv_heads: 4,
            dim: 128,
            mask: Mask::None,
            tile: TileShape::default(),
            pick: QPick::Strided {
                start: 1,
                stride: 2,
            },
            seed: 3,
        },
    ];
    for c in cases {
        let (q, kv) = inputs(&c);
        let one = run_blocks(&c, &q, &[&kv], 1);
        let three = run_blocks(&c, &q, &[&kv], 3);
        assert!(bits(&one) == bits(&three), "{c:?}: 1 and 3 threads differ");
        // Also across several blocks in sequence (as in a ring).
        let src = Synthetic { seed: c.seed };
        let halves: Vec<KvBlock> = [(0, c.n / 2), (c.n / 2, c.n - c.n / 2)]
            .into_iter()
            .map(|(s, l)| {
                KvBlock::from_source(&src, 0, c.kv_heads, c.dim, Positions::contiguous(s, l))
                    .unwrap()
            })
            .collect();
        let one = run_blocks(&c, &q, &[&halves[1], &halves[0]], 1);
        let three = run_blocks(&c, &q, &[&halves[1], &halves[0]], 3);
        assert!(
            bits(&one) == bits(&three),
            "{c:?}: 1 and 3 threads differ over two blocks"
        );
    }
}

#[test]
fn merging_states_of_two_kv_parts_matches_one_pass() {
    let masks = [
        Mask::None,
        Mask::Causal,
        Mask::Streaming {
            sink: 2,
            recent: 20,
        },
    ];
    for (i, mask) in masks.into_iter().enumerate() {
        let (heads, kv_heads) = HEADS[i];
        let c = Case {
            n: 161,
            heads,
            kv_heads,
            dim: DIMS[i + 1],
            mask,
            tile: TILES[i],
            pick: PICKS[i + 1],
            seed: 40 + i as u64,
        };
        let src = Synthetic { seed: c.seed };
        let (q, kv) = inputs(&c);
        let whole = run_blocks(&c, &q, &[&kv], 2).finalize();
        check_reference(&c, &q, &kv, &whole);
        let n = c.n;
        let splits: [[Positions; 2]; 3] = [
            [
                Positions::contiguous(0, n / 2),
                Positions::contiguous(n / 2, n - n / 2),
            ],
            [
                Positions::strided(0, n.div_ceil(2), 2),
                Positions::strided(1, n / 2, 2),
            ],
            // Uneven: the last key alone (for causal rows before it, this part sees nothing).
            [
                Positions::contiguous(0, n - 1),
                Positions::contiguous(n - 1, 1),
            ],
        ];
        for [pa, pb] in splits {
            let a = KvBlock::from_source(&src, 0, kv_heads, c.dim, pa.clone()).unwrap();
            let b = KvBlock::from_source(&src, 1, kv_heads, c.dim, pb.clone()).unwrap();
            let sa = run_blocks(&c, &q, &[&a], 2);
            let sb = run_blocks(&c, &q, &[&b], 2);
            let mut ab = sa.clone();
            ab.merge(&sb);
            let mut ba = sb.clone();
            ba.merge(&sa);
            let what = format!("{c:?} split {:?} | {:?}", pa.runs(), pb.runs());
            assert_close(&format!("{what} (a then b)"), &ab.finalize(), &whole);
            assert_close(&format!("{what} (b then a)"), &ba.finalize(), &whole);
            check_reference(&c, &q, &kv, &ab.finalize());
        }
    }
}

#[test]
fn merge_with_an_empty_state_is_the_identity() {
    let c = Case {
        n: 90,
        heads: 8,
        kv_heads: 2,
        dim: 16,
        mask: Mask::Causal,
        tile: TileShape { q: 16, k: 32 },
        pick: QPick::All,
        seed: 9,
    };
    let (q, kv) = inputs(&c);
    let s = run_blocks(&c, &q, &[&kv], 1);
    let empty = AttnState::new(s.heads, s.rows, s.dim);
    let mut a = s.clone();
    a.merge(&empty);
    assert!(
        bits(&a) == bits(&s),
        "merging an empty state changed the state"
    );
    let mut b = empty.clone();
    b.merge(&s);
    let (fa, fb) = (s.finalize(), b.finalize());
    assert_close("empty.merge(s)", &fb, &fa);
}

#[test]
fn streaming_with_a_window_covering_everything_is_bitwise_causal() {
    let c = Case {
        n: 150,
        heads: 6,
        kv_heads: 1,
        dim: 64,
        mask: Mask::Causal,
        tile: TileShape { q: 16, k: 32 },
        pick: QPick::RunThenStride,
        seed: 12,
    };
    let (q, kv) = inputs(&c);
    let causal = run_blocks(&c, &q, &[&kv], 2);
    let wide = Case {
        mask: Mask::Streaming {
            sink: 0,
            recent: c.n + 1,
        },
        ..c
    };
    let streaming = run_blocks(&wide, &q, &[&kv], 2);
    assert!(
        bits(&causal) == bits(&streaming),
        "wide streaming window differs from causal"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn thread_count_and_kv_split_do_not_matter_random(c in case_strategy(), split in 0usize..1000) {
        let (q, kv) = inputs(&c);
        let one = run_blocks(&c, &q, &[&kv], 1);
        let three = run_blocks(&c, &q, &[&kv], 3);
        prop_assert!(bits(&one) == bits(&three), "{:?}: 1 and 3 threads differ", c);
        let src = Synthetic { seed: c.seed };
        let cut = split % (c.n + 1);
        let a = KvBlock::from_source(&src, 0, c.kv_heads, c.dim, Positions::contiguous(0, cut)).unwrap();
        let b = KvBlock::from_source(&src, 1, c.kv_heads, c.dim, Positions::contiguous(cut, c.n - cut)).unwrap();
        let mut sa = run_blocks(&c, &q, &[&a], 2);
        sa.merge(&run_blocks(&c, &q, &[&b], 2));
        assert_close(&format!("{c:?} cut at {cut}"), &sa.finalize(), &one.finalize());
    }
}
