//! The cases and checks shared by the kernel's integration tests (`kernel_reference.rs`:
//! accuracy against the f64 reference; `kernel_states.rs`: thread counts, KV splits and merged
//! states): query picks, the case type and its proptest strategy, running `attend` block by
//! block with its tile counts asserted, and the fixed tolerances (out ≤ 2e-5, lse ≤ 1e-5).
// Each test binary uses part of these helpers.
#![allow(dead_code)]

use proptest::prelude::*;
use ringattn_runtime::reference::reference_row;
use ringattn_runtime::{
    attend, count_tiles, AttnState, Finalized, KvBlock, Mask, Positions, QShard, Run, Synthetic,
    TileCounts, TileShape,
};

pub const OUT_TOL: f64 = 2e-5;
pub const LSE_TOL: f64 = 1e-5;

pub const DIMS: [usize; 4] = [16, 64, 80, 128];
pub const HEADS: [(usize, usize); 3] = [(4, 4), (8, 2), (6, 1)];
pub const TILES: [TileShape; 5] = [
    TileShape { q: 7, k: 5 },
    TileShape { q: 64, k: 64 },
    TileShape { q: 16, k: 32 },
    TileShape { q: 1, k: 1 },
    TileShape { q: 65, k: 63 },
];

/// How the query rows are picked out of `0..n`.
#[derive(Clone, Copy, Debug)]
pub enum QPick {
    /// Every position.
    All,
    /// `start, start + stride, ...` below `n`.
    Strided { start: usize, stride: usize },
    /// Two stride-1 runs: `[0, n/3)` and `[n/2, n)` (zigzag-like).
    TwoRuns,
    /// Two runs, the second strided: `[1, 1 + n/4)` then `n/2, n/2 + 3, ...`.
    RunThenStride,
    /// Only the last position.
    Last,
}

impl QPick {
    pub fn positions(self, n: usize) -> Positions {
        match self {
            QPick::All => Positions::contiguous(0, n),
            QPick::Strided { start, stride } => {
                let start = start.min(n - 1);
                Positions::strided(start, (n - start).div_ceil(stride), stride)
            }
            QPick::TwoRuns => {
                let (a, b) = (n / 3, n / 2);
                Positions::new([
                    Run {
                        start: 0,
                        len: a,
                        stride: 1,
                    },
                    Run {
                        start: b,
                        len: n - b,
                        stride: 1,
                    },
                ])
                .unwrap()
            }
            QPick::RunThenStride => {
                let a = (n / 4).min(n.saturating_sub(1));
                let b = (1 + a).max(n / 2);
                let second = if b < n { (n - b).div_ceil(3) } else { 0 };
                let runs = [
                    Run {
                        start: 1.min(n - 1),
                        len: a,
                        stride: 1,
                    },
                    Run {
                        start: b,
                        len: second,
                        stride: 3,
                    },
                ];
                let p = Positions::new(runs).unwrap();
                if p.is_empty() {
                    Positions::contiguous(n - 1, 1)
                } else {
                    p
                }
            }
            QPick::Last => Positions::contiguous(n - 1, 1),
        }
    }
}

pub const PICKS: [QPick; 6] = [
    QPick::All,
    QPick::Strided {
        start: 0,
        stride: 3,
    },
    QPick::Strided {
        start: 5,
        stride: 7,
    },
    QPick::TwoRuns,
    QPick::RunThenStride,
    QPick::Last,
];

#[derive(Clone, Debug)]
pub struct Case {
    pub n: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub dim: usize,
    pub mask: Mask,
    pub tile: TileShape,
    pub pick: QPick,
    pub seed: u64,
}

pub fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// Q rows at the picked positions, and one KV block holding all `n` keys in position order.
pub fn inputs(c: &Case) -> (QShard, KvBlock) {
    let src = Synthetic { seed: c.seed };
    let q = QShard::from_source(&src, c.heads, c.dim, c.pick.positions(c.n)).unwrap();
    let kv =
        KvBlock::from_source(&src, 0, c.kv_heads, c.dim, Positions::contiguous(0, c.n)).unwrap();
    assert!(!q.positions.is_empty(), "{c:?}: empty query pick");
    (q, kv)
}

pub fn scaled(t: TileCounts, heads: usize) -> TileCounts {
    let h = heads as u64;
    TileCounts {
        full: t.full * h,
        partial: t.partial * h,
        empty: t.empty * h,
    }
}

/// Runs `attend` over each block in turn (one state), asserting every call's tile counts.
pub fn run_blocks(c: &Case, q: &QShard, blocks: &[&KvBlock], threads: usize) -> AttnState {
    let pool = pool(threads);
    let mut state = AttnState::new(q.heads, q.rows(), q.dim);
    for kv in blocks {
        let got = attend(q, kv, c.mask.clone(), c.tile, &mut state, &pool);
        let want = scaled(
            count_tiles(&q.positions, &kv.positions, c.mask.clone(), c.tile),
            q.heads,
        );
        assert_eq!(
            got, want,
            "{c:?}: attend's tile counts differ from count_tiles × heads"
        );
        if !kv.positions.is_empty() && !q.positions.is_empty() {
            let tiles_per_head = q.rows().div_ceil(c.tile.q) * kv.rows().div_ceil(c.tile.k);
            assert_eq!(
                (got.computed() + got.empty) as usize,
                tiles_per_head * q.heads,
                "{c:?}: tile total"
            );
        }
    }
    state
}

/// Largest (out, lse) error of `fin` (rows of `q`) against the f64 reference over all keys of
/// `full_kv`; asserts the fixed tolerances. Returns the errors for reporting.
pub fn check_reference(c: &Case, q: &QShard, full_kv: &KvBlock, fin: &Finalized) -> (f64, f64) {
    let (rows, d, n) = (q.rows(), q.dim, full_kv.rows());
    assert_eq!(full_kv.positions, Positions::contiguous(0, n));
    assert_eq!(fin.out.len(), q.heads * rows * d);
    assert_eq!(fin.lse.len(), q.heads * rows);
    let group = q.heads / full_kv.kv_heads;
    let (mut out_err, mut lse_err) = (0.0f64, 0.0f64);
    for h in 0..q.heads {
        let kvh = h / group;
        let keys = &full_kv.k.as_f32().unwrap()[kvh * n * d..(kvh + 1) * n * d];
        let values = &full_kv.v.as_f32().unwrap()[kvh * n * d..(kvh + 1) * n * d];
        for (r, pos) in q.positions.iter().enumerate() {
            let (want, want_lse) = reference_row(q.row(h, r), pos, keys, values, d, c.mask.clone());
            let got = &fin.out[(h * rows + r) * d..(h * rows + r + 1) * d];
            let got_lse = fin.lse[h * rows + r];
            if want_lse == f64::NEG_INFINITY {
                assert!(
                    got_lse == f32::NEG_INFINITY && got.iter().all(|&x| x == 0.0),
                    "{c:?}: head {h} pos {pos} sees no key but got lse {got_lse}"
                );
                continue;
            }
            let e = got
                .iter()
                .zip(&want)
                .map(|(&g, &w)| (g as f64 - w).abs())
                .fold(0.0, f64::max);
            let el = (got_lse as f64 - want_lse).abs();
            assert!(
                e <= OUT_TOL && el <= LSE_TOL,
                "{c:?}: head {h} pos {pos}: out err {e:.3e} (tol {OUT_TOL:e}), lse err {el:.3e} (tol {LSE_TOL:e}), \
                 lse got {got_lse} want {want_lse}"
            );
            out_err = out_err.max(e);
            lse_err = lse_err.max(el);
        }
    }
    (out_err, lse_err)
}

pub fn check_case(c: &Case) -> (f64, f64) {
    let (q, kv) = inputs(c);
    let state = run_blocks(c, &q, &[&kv], 1);
    check_reference(c, &q, &kv, &state.finalize())
}

pub fn bits(s: &AttnState) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let b = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    (b(&s.m), b(&s.l), b(&s.acc))
}

/// Masks including streaming window edges: a window of one (self only), sinks only, windows
/// equal to / one past a tile, a sink larger than the sequence, and a window covering it all.
pub fn masks() -> Vec<Mask> {
    vec![
        Mask::None,
        Mask::Causal,
        Mask::Streaming { sink: 0, recent: 1 },
        Mask::Streaming { sink: 1, recent: 1 },
        Mask::Streaming {
            sink: 4,
            recent: 16,
        },
        Mask::Streaming {
            sink: 0,
            recent: 64,
        },
        Mask::Streaming {
            sink: 64,
            recent: 64,
        },
        Mask::Streaming {
            sink: 3,
            recent: 65,
        },
        Mask::Streaming { sink: 5, recent: 5 },
        Mask::Streaming {
            sink: 1000,
            recent: 7,
        },
        Mask::Streaming {
            sink: 2,
            recent: 100_000,
        },
    ]
}

/// Compares two finalized results of the same rows within the fixed tolerances.
pub fn assert_close(what: &str, a: &Finalized, b: &Finalized) {
    assert_eq!(
        (a.out.len(), a.lse.len()),
        (b.out.len(), b.lse.len()),
        "{what}"
    );
    let e = a
        .out
        .iter()
        .zip(&b.out)
        .map(|(&x, &y)| (x as f64 - y as f64).abs())
        .fold(0.0, f64::max);
    let el = a
        .lse
        .iter()
        .zip(&b.lse)
        .map(|(&x, &y)| {
            if x == y {
                0.0
            } else {
                (x as f64 - y as f64).abs()
            }
        })
        .fold(0.0, f64::max);
    assert!(
        e <= OUT_TOL && el <= LSE_TOL,
        "{what}: out err {e:.3e}, lse err {el:.3e}"
    );
}

pub fn mask_strategy() -> impl Strategy<Value = Mask> {
    prop_oneof![
        Just(Mask::None),
        Just(Mask::Causal),
        (0usize..80, 1usize..150).prop_map(|(sink, recent)| Mask::Streaming { sink, recent }),
    ]
}

pub fn pick_strategy() -> impl Strategy<Value = QPick> {
    prop_oneof![
        Just(QPick::All),
        (0usize..20, 1usize..9).prop_map(|(start, stride)| QPick::Strided { start, stride }),
        Just(QPick::TwoRuns),
        Just(QPick::RunThenStride),
        Just(QPick::Last),
    ]
}

pub fn case_strategy() -> impl Strategy<Value = Case> {
    (
        // Mostly odd lengths, never a multiple of 64 except by chance of the +1.
        (0usize..160).prop_map(|k| 2 * k + 1),
        0..HEADS.len(),
        0..DIMS.len(),
        mask_strategy(),
        (1usize..70, 1usize..70),
        pick_strategy(),
        any::<u64>(),
    )
        .prop_map(|(n, hk, d, mask, (tq, tk), pick, seed)| Case {
            n,
            heads: HEADS[hk].0,
            kv_heads: HEADS[hk].1,
            dim: DIMS[d],
            mask,
            tile: TileShape { q: tq, k: tk },
            pick,
            seed,
        })
}
