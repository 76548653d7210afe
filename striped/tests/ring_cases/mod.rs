//! The ring on local threads, shared by `ring_reference.rs` (against the f64 reference) and
//! `ring_agreement.rs` (against itself): [`run_ring`] runs one ring pass per rank (each rank a
//! thread with its own one-thread rayon pool, joined by `local_world` channels), checks the
//! per-rank stats and reassembles every rank's rows into original token order; the reference
//! check and the fixed tolerances (out ≤ 2e-5 max abs, lse ≤ 1e-5).
// Each test binary uses part of these helpers.
#![allow(dead_code)]

use std::thread;

use ringattn_ring::{ring_pass, RankStats, RingConfig};
use ringattn_runtime::local::local_world;
use ringattn_runtime::reference::reference_row;
use ringattn_runtime::{
    count_tiles, AttnState, Comm, Error, KvBlock, Mask, Positions, QShard, Result, RowSource,
    Synthetic, TensorKind, TileShape,
};
use ringattn_striped::LayoutKind;

pub const OUT_TOL: f64 = 2e-5;
pub const LSE_TOL: f64 = 1e-5;

pub const WORLDS: [usize; 6] = [1, 2, 3, 4, 5, 8];
pub const HEADS: [(usize, usize); 3] = [(4, 4), (8, 2), (6, 1)];
pub const DIMS: [usize; 4] = [16, 64, 80, 128];
/// Sequence lengths per world size: P, P + 1, and fixed lengths not divisible by P or 2P
/// (37 and 4099 are prime; 1000 is not a multiple of 16, 6 or 10).
pub const N_CLASSES: usize = 5;
pub fn seq_len(class: usize, p: usize) -> usize {
    [p, p + 1, 37, 1000, 4099][class]
}
/// Sequences at least this long are checked on sampled rows only.
pub const SAMPLE_FROM: usize = 1000;

#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub layout: LayoutKind,
    pub p: usize,
    pub n: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub dim: usize,
    pub causal: bool,
    pub seed: u64,
    pub tile: TileShape,
}

impl Spec {
    pub fn mask(&self) -> Mask {
        if self.causal {
            Mask::Causal
        } else {
            Mask::None
        }
    }
}

/// What one rank's worker ended with.
pub struct RankResult {
    pub positions: Positions,
    pub result: Result<(AttnState, RankStats)>,
}

/// Runs the ring for `spec` with `p` threads, returning each rank's positions and result.
pub fn run_ring_raw(spec: &Spec) -> Vec<RankResult> {
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
pub struct RingRun {
    /// `[heads][n][dim]`.
    pub out: Vec<f32>,
    /// `[heads][n]`.
    pub lse: Vec<f32>,
    /// Per-rank measurements, by rank.
    pub stats: Vec<RankStats>,
    /// Per-rank final states (rows in the rank's local order), by rank.
    pub states: Vec<AttnState>,
}

/// Runs the ring and reassembles out/lse in original token order; also checks the per-rank
/// stats (ring order of the step sources, tile counts = `count_tiles` × heads, coverage).
pub fn run_ring(spec: &Spec) -> RingRun {
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
pub fn check_rows(n: usize) -> Vec<usize> {
    if n < SAMPLE_FROM {
        return (0..n).collect();
    }
    let mut rows: Vec<usize> = (0..=17).map(|i| i * (n - 1) / 17).collect();
    rows.dedup();
    rows
}

/// Compares `run` with the f64 reference on [`check_rows`] of every head; returns the worst
/// (out, lse) errors.
pub fn check_reference(spec: &Spec, run: &RingRun) -> (f64, f64) {
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
pub fn assert_runs_agree(what: &str, a: &RingRun, b: &RingRun) {
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
