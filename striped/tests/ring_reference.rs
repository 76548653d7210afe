//! The full ring on local threads, against the f64 reference and against itself.
//!
//! [`run_ring`] runs one ring pass per rank (each rank a thread with its own one-thread rayon
//! pool, joined by `local_world` channels) and reassembles every rank's rows into ORIGINAL token
//! order using the rank's positions. The checks:
//!
//! - a deterministic pairwise selection over layout × P × causal × N × H/Hkv × D (every pair of
//!   axis values appears in some run) plus a proptest over random combinations, against the f64
//!   reference (every row, or for N ≥ 1000 the first, last and 16 evenly spaced rows of every
//!   head); tolerances fixed by the issue: out ≤ 2e-5 max abs, lse ≤ 1e-5;
//! - per-rank stats: step sources follow the ring, tile counts are `count_tiles` × heads;
//! - outputs agree across layouts and world sizes, and P = 1 equals one `attend` bitwise;
//! - causal balance of striped and zigzag (≤ 5 % spread of computed tiles) vs contiguous;
//! - an injected fault ends every rank within seconds, naming the failing rank.

use std::collections::HashSet;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use ringattn_ring::{ring_pass, FaultInjection, RankStats, RingConfig};
use ringattn_runtime::local::local_world;
use ringattn_runtime::reference::reference_row;
use ringattn_runtime::{
    attend, count_tiles, AttnState, Comm, Error, KvBlock, Mask, Positions, QShard, Result,
    RowSource, Synthetic, TensorKind, TileShape,
};
use ringattn_striped::LayoutKind;

const OUT_TOL: f64 = 2e-5;
const LSE_TOL: f64 = 1e-5;

const WORLDS: [usize; 6] = [1, 2, 3, 4, 5, 8];
const HEADS: [(usize, usize); 3] = [(4, 4), (8, 2), (6, 1)];
const DIMS: [usize; 4] = [16, 64, 80, 128];
/// Sequence lengths per world size: P, P + 1, and fixed lengths not divisible by P or 2P
/// (37 and 4099 are prime; 1000 is not a multiple of 16, 6 or 10).
const N_CLASSES: usize = 5;
fn seq_len(class: usize, p: usize) -> usize {
    [p, p + 1, 37, 1000, 4099][class]
}
/// Sequences at least this long are checked on sampled rows only.
const SAMPLE_FROM: usize = 1000;

#[derive(Clone, Copy, Debug)]
struct Spec {
    layout: LayoutKind,
    p: usize,
    n: usize,
    heads: usize,
    kv_heads: usize,
    dim: usize,
    causal: bool,
    seed: u64,
    tile: TileShape,
}

impl Spec {
    fn mask(&self) -> Mask {
        if self.causal {
            Mask::Causal
        } else {
            Mask::None
        }
    }
}

/// What one rank's worker ended with.
struct RankResult {
    positions: Positions,
    result: Result<(AttnState, RankStats)>,
}

/// Runs the ring for `spec` with `p` threads, returning each rank's positions and result.
fn run_ring_raw(spec: &Spec) -> Vec<RankResult> {
    let built = spec.layout.build(&spec.mask());
    let layout = &*built;
    let src = Synthetic { seed: spec.seed };
    let cfg = RingConfig {
        mask: spec.mask(),
        tile: spec.tile,
        fault: None,
    };
    let comms = local_world(spec.p);
    thread::scope(|s| {
        let handles: Vec<_> = comms
            .into_iter()
            .map(|mut comm| {
                let cfg = cfg.clone();
                s.spawn(move || {
                    let rank = comm.rank();
                    let positions = layout.positions(rank, spec.p, spec.n);
                    let q =
                        QShard::from_source(&src, spec.heads, spec.dim, positions.clone()).unwrap();
                    let kv = KvBlock::from_source(
                        &src,
                        rank,
                        spec.kv_heads,
                        spec.dim,
                        positions.clone(),
                    )
                    .unwrap();
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(1)
                        .build()
                        .unwrap();
                    let result = ring_pass(&mut comm, &q, kv, &cfg, &pool);
                    if let Err(e) = &result {
                        if !matches!(e, Error::Aborted { .. }) {
                            comm.abort(&e.to_string());
                        }
                    }
                    RankResult { positions, result }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("rank thread panicked"))
            .collect()
    })
}

/// A ring's output in original token order.
struct RingRun {
    /// `[heads][n][dim]`.
    out: Vec<f32>,
    /// `[heads][n]`.
    lse: Vec<f32>,
    /// Per-rank measurements, by rank.
    stats: Vec<RankStats>,
    /// Per-rank final states (rows in the rank's local order), by rank.
    states: Vec<AttnState>,
}

/// Runs the ring and reassembles out/lse in original token order; also checks the per-rank
/// stats (ring order of the step sources, tile counts = `count_tiles` × heads, coverage).
fn run_ring(spec: &Spec) -> RingRun {
    let ranks = run_ring_raw(spec);
    assert_eq!(ranks.len(), spec.p);
    let (h, n, d, p) = (spec.heads, spec.n, spec.dim, spec.p);
    let mut out = vec![f32::NAN; h * n * d];
    let mut lse = vec![f32::NAN; h * n];
    let mut seen = vec![false; n];
    let mut stats = Vec::with_capacity(p);
    let mut states = Vec::with_capacity(p);
    let all_positions: Vec<Positions> = ranks.iter().map(|r| r.positions.clone()).collect();
    for (rank, rr) in ranks.into_iter().enumerate() {
        let (state, st) = rr
            .result
            .unwrap_or_else(|e| panic!("{spec:?}: rank {rank} failed: {e}"));
        let rows = rr.positions.len();
        assert_eq!(
            (state.heads, state.rows, state.dim),
            (h, rows, d),
            "{spec:?}: rank {rank} state shape"
        );
        let fin = state.finalize();
        for (r, pos) in rr.positions.iter().enumerate() {
            assert!(
                !std::mem::replace(&mut seen[pos], true),
                "{spec:?}: position {pos} owned twice"
            );
            for head in 0..h {
                let dst = (head * n + pos) * d;
                let srcr = (head * rows + r) * d;
                out[dst..dst + d].copy_from_slice(&fin.out[srcr..srcr + d]);
                lse[head * n + pos] = fin.lse[head * rows + r];
            }
        }
        // Per-rank stats: P steps, step t on the block that started at rank (r − t) mod P, and
        // the kernel's tile counts exactly as the cost model's count_tiles predicts.
        assert_eq!(st.steps.len(), p, "{spec:?}: rank {rank} step count");
        let mut total = ringattn_runtime::TileCounts::default();
        for (t, step) in st.steps.iter().enumerate() {
            let origin = (rank + p - t) % p;
            assert_eq!(step.source, origin, "{spec:?}: rank {rank} step {t} source");
            let per_head = count_tiles(
                &rr.positions,
                &all_positions[origin],
                spec.mask(),
                spec.tile,
            );
            let hh = h as u64;
            assert_eq!(
                (step.tiles.full, step.tiles.partial, step.tiles.empty),
                (
                    per_head.full * hh,
                    per_head.partial * hh,
                    per_head.empty * hh
                ),
                "{spec:?}: rank {rank} step {t} tile counts"
            );
            total += step.tiles;
        }
        assert_eq!(st.tiles, total, "{spec:?}: rank {rank} total tiles");
        stats.push(st);
        states.push(state);
    }
    assert!(
        seen.iter().all(|&s| s),
        "{spec:?}: some position owned by no rank"
    );
    RingRun {
        out,
        lse,
        stats,
        states,
    }
}

/// Rows checked against the reference: all of them for short sequences, else the first, the
/// last and 16 evenly spaced ones.
fn check_rows(n: usize) -> Vec<usize> {
    if n < SAMPLE_FROM {
        return (0..n).collect();
    }
    let mut rows: Vec<usize> = (0..=17).map(|i| i * (n - 1) / 17).collect();
    rows.dedup();
    rows
}

/// Compares `run` with the f64 reference on [`check_rows`] of every head; returns the worst
/// (out, lse) errors.
fn check_reference(spec: &Spec, run: &RingRun) -> (f64, f64) {
    let (h, n, d) = (spec.heads, spec.n, spec.dim);
    let src = Synthetic { seed: spec.seed };
    let all = KvBlock::from_source(&src, 0, spec.kv_heads, d, Positions::contiguous(0, n)).unwrap();
    let group = h / spec.kv_heads;
    let mut q = vec![0.0f32; d];
    let (mut worst_out, mut worst_lse) = (0.0f64, 0.0f64);
    for head in 0..h {
        let kvh = head / group;
        let keys = &all.k.as_f32().unwrap()[kvh * n * d..(kvh + 1) * n * d];
        let values = &all.v.as_f32().unwrap()[kvh * n * d..(kvh + 1) * n * d];
        for pos in check_rows(n) {
            src.fill_row(TensorKind::Q, head, pos, &mut q).unwrap();
            let (want, want_lse) = reference_row(&q, pos, keys, values, d, spec.mask());
            let got = &run.out[(head * n + pos) * d..(head * n + pos + 1) * d];
            let got_lse = run.lse[head * n + pos];
            let e = got
                .iter()
                .zip(&want)
                .map(|(&g, &w)| (g as f64 - w).abs())
                .fold(0.0, f64::max);
            let el = (got_lse as f64 - want_lse).abs();
            assert!(
                e <= OUT_TOL && el <= LSE_TOL,
                "{spec:?}: head {head} pos {pos}: out err {e:.3e} (tol {OUT_TOL:e}), lse err {el:.3e} \
                 (tol {LSE_TOL:e}); lse got {got_lse}, want {want_lse}"
            );
            worst_out = worst_out.max(e);
            worst_lse = worst_lse.max(el);
        }
    }
    (worst_out, worst_lse)
}

/// Asserts two runs of the same problem agree on every row within the tolerances.
fn assert_runs_agree(what: &str, a: &RingRun, b: &RingRun) {
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
        .map(|(&x, &y)| (x as f64 - y as f64).abs())
        .fold(0.0, f64::max);
    // NaN (an unfilled row) makes the folds above ignore it, so check finiteness explicitly.
    assert!(
        a.out
            .iter()
            .chain(&b.out)
            .chain(&a.lse)
            .chain(&b.lse)
            .all(|x| x.is_finite()),
        "{what}: non-finite"
    );
    assert!(
        e <= OUT_TOL && el <= LSE_TOL,
        "{what}: out differs by {e:.3e}, lse by {el:.3e}"
    );
}

/// Relative cost of a run (score pairs × heads × dim), for picking cheap runs first.
fn cost(p: &[usize; 6]) -> f64 {
    let n = seq_len(p[3], WORLDS[p[1]]) as f64;
    let causal = if p[2] == 1 { 0.5 } else { 1.0 };
    n * n * HEADS[p[4]].0 as f64 * DIMS[p[5]] as f64 * causal
}

/// A deterministic pairwise (all-pairs) selection over the six axes: greedily picks the
/// combination covering the most uncovered value pairs, the cheapest among ties, until every
/// pair of values of every two axes appears in some run.
fn pairwise_specs() -> Vec<Spec> {
    let sizes = [
        LayoutKind::ALL.len(),
        WORLDS.len(),
        2,
        N_CLASSES,
        HEADS.len(),
        DIMS.len(),
    ];
    let mut combos: Vec<[usize; 6]> = vec![[0; 6]];
    for (axis, &size) in sizes.iter().enumerate() {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                (0..size).map(move |v| {
                    let mut c = c;
                    c[axis] = v;
                    c
                })
            })
            .collect();
    }
    let pairs_of = |c: &[usize; 6]| {
        let mut v = Vec::with_capacity(15);
        for a in 0..6 {
            for b in a + 1..6 {
                v.push((a, c[a], b, c[b]));
            }
        }
        v
    };
    let mut uncovered: HashSet<(usize, usize, usize, usize)> =
        combos.iter().flat_map(pairs_of).collect();
    let mut chosen = Vec::new();
    while !uncovered.is_empty() {
        let best = combos
            .iter()
            .map(|c| {
                (
                    pairs_of(c).iter().filter(|p| uncovered.contains(p)).count(),
                    c,
                )
            })
            .max_by(|(na, a), (nb, b)| na.cmp(nb).then(cost(b).total_cmp(&cost(a))))
            .map(|(_, c)| *c)
            .unwrap();
        for p in pairs_of(&best) {
            uncovered.remove(&p);
        }
        chosen.push(best);
    }
    let tiles = [
        TileShape::default(),
        TileShape { q: 16, k: 32 },
        TileShape { q: 7, k: 5 },
    ];
    chosen
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let p = WORLDS[c[1]];
            Spec {
                layout: LayoutKind::ALL[c[0]],
                p,
                n: seq_len(c[3], p),
                heads: HEADS[c[4]].0,
                kv_heads: HEADS[c[4]].1,
                dim: DIMS[c[5]],
                causal: c[2] == 1,
                seed: 0x5eed + i as u64,
                tile: tiles[i % tiles.len()],
            }
        })
        .collect()
}

#[test]
fn pairwise_selection_covers_every_value_pair() {
    let specs = pairwise_specs();
    let key = |s: &Spec| {
        let class = (0..N_CLASSES).find(|&c| seq_len(c, s.p) == s.n).unwrap();
        [
            LayoutKind::ALL.iter().position(|&l| l == s.layout).unwrap(),
            WORLDS.iter().position(|&p| p == s.p).unwrap(),
            s.causal as usize,
            class,
            HEADS
                .iter()
                .position(|&h| h == (s.heads, s.kv_heads))
                .unwrap(),
            DIMS.iter().position(|&d| d == s.dim).unwrap(),
        ]
    };
    let sizes = [3usize, WORLDS.len(), 2, N_CLASSES, HEADS.len(), DIMS.len()];
    let covered: HashSet<_> = specs
        .iter()
        .flat_map(|s| {
            let k = key(s);
            (0..6).flat_map(move |a| (a + 1..6).map(move |b| (a, k[a], b, k[b])))
        })
        .collect();
    for a in 0..6 {
        for b in a + 1..6 {
            for va in 0..sizes[a] {
                for vb in 0..sizes[b] {
                    assert!(
                        covered.contains(&(a, va, b, vb)),
                        "pair axis{a}={va}, axis{b}={vb} not covered"
                    );
                }
            }
        }
    }
    // The classic lower bound for pairwise is the product of the two largest axes (6 × 5).
    assert!(
        specs.len() >= 30 && specs.len() <= 60,
        "{} runs",
        specs.len()
    );
}

#[test]
fn ring_matches_reference_pairwise() {
    let specs = pairwise_specs();
    let t0 = Instant::now();
    let mut worst = (0.0f64, 0.0f64);
    for spec in &specs {
        let run = run_ring(spec);
        let e = check_reference(spec, &run);
        worst = (worst.0.max(e.0), worst.1.max(e.1));
    }
    println!(
        "pairwise: {} runs in {:.1}s, worst out err {:.3e}, worst lse err {:.3e}",
        specs.len(),
        t0.elapsed().as_secs_f64(),
        worst.0,
        worst.1
    );
}

#[test]
fn ring_matches_reference_single_token() {
    for layout in LayoutKind::ALL {
        for causal in [false, true] {
            for (heads, kv_heads) in HEADS {
                let spec = Spec {
                    layout,
                    p: 1,
                    n: 1,
                    heads,
                    kv_heads,
                    dim: 80,
                    causal,
                    seed: 3,
                    tile: TileShape::default(),
                };
                let run = run_ring(&spec);
                check_reference(&spec, &run);
                // One key: the output is that key's value row, lse is its scaled score.
                let src = Synthetic { seed: 3 };
                let mut v = vec![0.0f32; 80];
                for h in 0..heads {
                    src.fill_row(TensorKind::V, h / (heads / kv_heads), 0, &mut v)
                        .unwrap();
                    let got = &run.out[h * 80..(h + 1) * 80];
                    assert!(
                        got.iter().zip(&v).all(|(a, b)| (a - b).abs() <= 1e-6),
                        "{spec:?} head {h}"
                    );
                }
            }
        }
    }
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        0usize..3,
        0..WORLDS.len(),
        any::<bool>(),
        0usize..5,
        0..HEADS.len(),
        0..DIMS.len(),
        any::<u64>(),
        0usize..300,
    )
        .prop_map(|(l, pi, causal, nc, hk, di, seed, extra)| {
            let p = WORLDS[pi];
            // P, P + 1, 37, 1000 or a random length ≥ P (4099 is covered by the pairwise runs).
            let n = if nc < 4 { seq_len(nc, p) } else { p + extra };
            Spec {
                layout: LayoutKind::ALL[l],
                p,
                n,
                heads: HEADS[hk].0,
                kv_heads: HEADS[hk].1,
                dim: DIMS[di],
                causal,
                seed,
                tile: TileShape::default(),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ring_matches_reference_random(spec in spec_strategy(), tq in 1usize..80, tk in 1usize..80) {
        let spec = Spec { tile: TileShape { q: tq, k: tk }, ..spec };
        let run = run_ring(&spec);
        check_reference(&spec, &run);
    }
}

#[test]
fn outputs_agree_across_layouts_and_world_sizes() {
    let problems = [
        (37usize, (8usize, 2usize), 16usize, true),
        (37, (4, 4), 80, false),
        (1000, (6, 1), 16, true),
        (1001, (4, 4), 64, false),
    ];
    for (n, (heads, kv_heads), dim, causal) in problems {
        let base_spec = Spec {
            layout: LayoutKind::Contiguous,
            p: 1,
            n,
            heads,
            kv_heads,
            dim,
            causal,
            seed: 11,
            tile: TileShape::default(),
        };
        let base = run_ring(&base_spec);
        check_reference(&base_spec, &base);
        for layout in LayoutKind::ALL {
            for p in WORLDS {
                let spec = Spec {
                    layout,
                    p,
                    tile: TileShape { q: 32, k: 16 },
                    ..base_spec
                };
                let run = run_ring(&spec);
                assert_runs_agree(&format!("{spec:?} vs contiguous P=1"), &run, &base);
            }
        }
    }
}

#[test]
fn single_rank_ring_equals_one_attend_bitwise() {
    for layout in LayoutKind::ALL {
        for (n, causal, tile) in [
            (37, true, TileShape { q: 7, k: 5 }),
            (300, false, TileShape::default()),
            (301, true, TileShape { q: 16, k: 32 }),
        ] {
            let spec = Spec {
                layout,
                p: 1,
                n,
                heads: 8,
                kv_heads: 2,
                dim: 64,
                causal,
                seed: 21,
                tile,
            };
            let run = run_ring(&spec);
            let src = Synthetic { seed: spec.seed };
            let q = QShard::from_source(&src, 8, 64, Positions::contiguous(0, n)).unwrap();
            let kv = KvBlock::from_source(&src, 0, 2, 64, Positions::contiguous(0, n)).unwrap();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            let mut state = AttnState::new(8, n, 64);
            let tiles = attend(&q, &kv, spec.mask(), tile, &mut state, &pool);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let ring_state = &run.states[0];
            assert!(
                bits(&ring_state.m) == bits(&state.m)
                    && bits(&ring_state.l) == bits(&state.l)
                    && bits(&ring_state.acc) == bits(&state.acc),
                "{spec:?}: P=1 ring state differs from one attend"
            );
            let fin = state.finalize();
            assert!(
                bits(&run.out) == bits(&fin.out) && bits(&run.lse) == bits(&fin.lse),
                "{spec:?}: outputs differ"
            );
            assert_eq!(run.stats[0].tiles, tiles, "{spec:?}: tile counts");
        }
    }
}

#[test]
fn causal_work_is_balanced_by_striped_and_zigzag() {
    let mut spreads = Vec::new();
    for layout in LayoutKind::ALL {
        let spec = Spec {
            layout,
            p: 4,
            n: 4096,
            heads: 1,
            kv_heads: 1,
            dim: 16,
            causal: true,
            seed: 8,
            tile: TileShape::default(),
        };
        let run = run_ring(&spec);
        check_reference(&spec, &run);
        let computed: Vec<u64> = run.stats.iter().map(|s| s.tiles.computed()).collect();
        let (max, min) = (
            *computed.iter().max().unwrap(),
            *computed.iter().min().unwrap(),
        );
        assert!(min > 0, "{layout}: a rank computed nothing: {computed:?}");
        let spread = max as f64 / min as f64 - 1.0;
        let compute_s: Vec<String> = run
            .stats
            .iter()
            .map(|s| format!("{:.4}", s.compute_s))
            .collect();
        println!(
            "balance {layout:>10}: computed tiles per rank {computed:?} (spread {:.2}%), compute_s {compute_s:?}",
            spread * 100.0
        );
        spreads.push((layout, computed, spread));
    }
    for (layout, computed, spread) in spreads {
        match layout {
            LayoutKind::Striped | LayoutKind::Zigzag | LayoutKind::Documents => {
                assert!(
                    spread <= 0.05,
                    "{layout}: computed tiles {computed:?} differ by {:.2}%",
                    spread * 100.0
                )
            }
            LayoutKind::Contiguous => {
                assert!(
                    spread > 1.0,
                    "contiguous should be unbalanced under causal: {computed:?}"
                )
            }
        }
    }
}

#[test]
fn injected_fault_ends_every_rank_naming_the_failed_rank() {
    const P: usize = 4;
    let fault = FaultInjection { rank: 1, step: 2 };
    let spec = Spec {
        layout: LayoutKind::Zigzag,
        p: P,
        n: 4099,
        heads: 4,
        kv_heads: 4,
        dim: 64,
        causal: true,
        seed: 5,
        tile: TileShape::default(),
    };
    let cfg = RingConfig {
        mask: spec.mask(),
        tile: spec.tile,
        fault: Some(fault),
    };
    let src = Synthetic { seed: spec.seed };
    let layout = spec.layout.build(&Mask::None);
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    for mut comm in local_world(P) {
        let tx = tx.clone();
        let cfg = cfg.clone();
        let layout = layout.clone();
        thread::spawn(move || {
            let rank = comm.rank();
            let positions = layout.positions(rank, P, spec.n);
            let q = QShard::from_source(&src, spec.heads, spec.dim, positions.clone()).unwrap();
            let kv = KvBlock::from_source(&src, rank, spec.kv_heads, spec.dim, positions).unwrap();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            // What a launcher worker does: the ring pass, then collect results on rank 0 (a
            // barrier stands in for the gather); on its own failure, abort the job.
            let ring = ring_pass(&mut comm, &q, kv, &cfg, &pool).map(|_| ());
            let ring_err = ring.as_ref().err().map(|e| e.to_string());
            let job = ring.and_then(|()| comm.barrier());
            if let Err(e) = &job {
                if !matches!(e, Error::Aborted { .. }) {
                    comm.abort(&e.to_string());
                }
            }
            tx.send((rank, ring_err, job, start.elapsed())).unwrap();
        });
    }
    drop(tx);
    let mut results = Vec::new();
    let deadline = start + Duration::from_secs(10);
    while results.len() < P {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(r) => results.push(r),
            Err(_) => panic!(
                "only {} of {P} ranks ended within 10 s: {:?}",
                results.len(),
                results
            ),
        }
    }
    results.sort_by_key(|r| r.0);
    for (rank, ring_err, job, took) in &results {
        println!("rank {rank}: ring {ring_err:?}, job {job:?} after {took:?}");
        assert!(*took < Duration::from_secs(10), "rank {rank} took {took:?}");
        match (rank, job) {
            (1, Err(Error::RankFailed { rank: 1, .. })) => {}
            (1, other) => panic!("rank 1 should report its own failure, got {other:?}"),
            (_, Err(Error::Aborted { rank: 1, reason })) => {
                assert!(
                    reason.contains("rank 1") && reason.contains("step 2"),
                    "rank {rank}: reason {reason:?}"
                )
            }
            (r, other) => panic!("rank {r} should be aborted by rank 1, got {other:?}"),
        }
    }
    // Rank 2 needs a block that only rank 1 would forward at step 2, so its ring pass itself
    // must end with the abort (ranks 0 and 3 may legitimately finish the ring first).
    let r2 = results[2].1.as_deref().unwrap_or("");
    assert!(
        r2.contains("aborted because rank 1 failed"),
        "rank 2's ring pass: {r2:?}"
    );
}
