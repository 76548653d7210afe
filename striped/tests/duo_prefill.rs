//! DuoAttention prefill (`duo_ring_pass`) on local threads, over every layout.
//!
//! - against the f64 reference with per-head masks (retrieval: the run's mask; streaming:
//!   `Mask::Streaming`), all three layouts, P ∈ {1, 2, 3, 4}, N not divisible by P, MHA and GQA,
//!   plans mixing kinds (and all-streaming), windows crossing rank boundaries; f32 tolerances
//!   out ≤ 2e-5, lse ≤ 1e-5; bf16 2e-2;
//! - bitwise: an all-retrieval plan equals the plain ring pass, and in a mixed plan the
//!   retrieval heads' rows equal the plain ring pass's rows of those heads;
//! - contiguous streaming bytes: exactly `recent − 1` window rows per hop plus the sink rows
//!   forwarded with rank 0's block; the KV peak is below the plain ring's.

use std::thread;

use ringattn_ring::{
    duo_ring_pass, duo_ring_pass_parts, ring_pass, DuoPlan, DuoRankStats, HeadKind, RankStats,
    RingConfig,
};

mod common;
use common::shared_plan;
use ringattn_runtime::local::local_world;
use ringattn_runtime::reference::reference_row;
use ringattn_runtime::{
    AttnState, Comm, Dtype, KvBlock, Mask, Positions, QShard, RowSource, Synthetic, TensorKind,
    TileShape,
};
use ringattn_striped::LayoutKind;

use HeadKind::{Retrieval as R, Streaming as S};

#[derive(Clone, Debug)]
struct Spec {
    layout: LayoutKind,
    p: usize,
    n: usize,
    heads: usize,
    dim: usize,
    plan: DuoPlan,
    base: Mask,
    dtype: Dtype,
    tile: TileShape,
    seed: u64,
}

impl Spec {
    fn kv_heads(&self) -> usize {
        self.plan.kv_heads()
    }
}

/// One rank's result: its positions, its final state and its stats.
struct Ranked<T> {
    positions: Positions,
    state: AttnState,
    stats: T,
}

/// Runs one thread per rank; `duo` picks `duo_ring_pass` (else the plain ring pass).
fn run<T: Send>(
    spec: &Spec,
    pass: impl Fn(&mut dyn Comm, &QShard, KvBlock, &rayon::ThreadPool) -> (AttnState, T) + Sync,
) -> Vec<Ranked<T>> {
    let built = spec.layout.build(&Mask::None);
    let layout = &*built;
    let src = Synthetic { seed: spec.seed };
    thread::scope(|s| {
        let handles: Vec<_> = local_world(spec.p)
            .into_iter()
            .map(|mut comm| {
                let pass = &pass;
                s.spawn(move || {
                    let rank = comm.rank();
                    let positions = layout.positions(rank, spec.p, spec.n);
                    let q =
                        QShard::from_source(&src, spec.heads, spec.dim, positions.clone()).unwrap();
                    let kv = KvBlock::from_source_as(
                        &src,
                        rank,
                        spec.kv_heads(),
                        spec.dim,
                        positions.clone(),
                        spec.dtype,
                    )
                    .unwrap();
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(1)
                        .build()
                        .unwrap();
                    let (state, stats) = pass(&mut comm, &q, kv, &pool);
                    Ranked {
                        positions,
                        state,
                        stats,
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn cfg(spec: &Spec) -> RingConfig {
    RingConfig {
        mask: spec.base.clone(),
        tile: spec.tile,
        fault: None,
    }
}

fn run_duo(spec: &Spec) -> Vec<Ranked<DuoRankStats>> {
    let cfg = cfg(spec);
    run(spec, |comm, q, kv, pool| {
        duo_ring_pass(comm, q, kv, &cfg, pool, &spec.plan, &mut |_, _| {}).unwrap()
    })
}

/// `duo_ring_pass_parts` with the two parts made before the call (as a rank that makes its KV
/// where it lives does), so only the pass's own KV counts toward the peak.
fn run_duo_parts(spec: &Spec) -> Vec<Ranked<DuoRankStats>> {
    let cfg = cfg(spec);
    let plan = &spec.plan;
    run(spec, |comm, q, kv, pool| {
        let r = kv.select_heads(&plan.kv_heads_of(R));
        let s = kv.select_heads(&plan.kv_heads_of(S));
        drop(kv);
        duo_ring_pass_parts(comm, q, r, s, &cfg, pool, plan, &mut |_, _| {}).unwrap()
    })
}

fn run_plain(spec: &Spec) -> Vec<Ranked<RankStats>> {
    let cfg = cfg(spec);
    run(spec, |comm, q, kv, pool| {
        ring_pass(comm, q, kv, &cfg, pool).unwrap()
    })
}

/// out `[heads][n][dim]` and lse `[heads][n]` in original token order.
fn assemble<T>(spec: &Spec, ranks: &[Ranked<T>]) -> (Vec<f32>, Vec<f32>) {
    let (h, n, d) = (spec.heads, spec.n, spec.dim);
    let (mut out, mut lse) = (vec![f32::NAN; h * n * d], vec![f32::NAN; h * n]);
    for r in ranks {
        let fin = r.state.finalize();
        let rows = r.positions.len();
        for (i, pos) in r.positions.iter().enumerate() {
            for head in 0..h {
                let (dst, src) = ((head * n + pos) * d, (head * rows + i) * d);
                out[dst..dst + d].copy_from_slice(&fin.out[src..src + d]);
                lse[head * n + pos] = fin.lse[head * rows + i];
            }
        }
    }
    (out, lse)
}

/// The f64 reference of every row, with each head's mask from the plan.
fn reference(spec: &Spec) -> (Vec<f64>, Vec<f64>) {
    let (h, n, d) = (spec.heads, spec.n, spec.dim);
    let src = Synthetic { seed: spec.seed };
    let all =
        KvBlock::from_source(&src, 0, spec.kv_heads(), d, Positions::contiguous(0, n)).unwrap();
    let group = h / spec.kv_heads();
    let (mut out, mut lse) = (vec![0.0; h * n * d], vec![0.0; h * n]);
    let mut q = vec![0.0f32; d];
    for head in 0..h {
        let kvh = head / group;
        let mask = spec.plan.mask_of(kvh, spec.base.clone());
        let keys = &all.k.as_f32().unwrap()[kvh * n * d..(kvh + 1) * n * d];
        let values = &all.v.as_f32().unwrap()[kvh * n * d..(kvh + 1) * n * d];
        for pos in 0..n {
            src.fill_row(TensorKind::Q, head, pos, &mut q).unwrap();
            let (o, l) = reference_row(&q, pos, keys, values, d, mask.clone());
            out[(head * n + pos) * d..(head * n + pos + 1) * d].copy_from_slice(&o);
            lse[head * n + pos] = l;
        }
    }
    (out, lse)
}

/// Worst (out, lse) errors of a run against the reference, asserting the tolerances.
fn check(spec: &Spec, got: &(Vec<f32>, Vec<f32>), want: &(Vec<f64>, Vec<f64>)) -> (f64, f64) {
    let (tol_out, tol_lse) = match spec.dtype {
        Dtype::F32 => (2e-5, 1e-5),
        Dtype::Bf16 => (2e-2, 2e-2),
    };
    // Largest error, a non-finite output counting as infinite.
    let worst = |got: &[f32], want: &[f64]| {
        got.iter()
            .zip(want)
            .map(|(&g, &w)| {
                if g.is_finite() {
                    (g as f64 - w).abs()
                } else {
                    f64::INFINITY
                }
            })
            .fold(0.0, f64::max)
    };
    let (e_out, e_lse) = (worst(&got.0, &want.0), worst(&got.1, &want.1));
    assert!(
        e_out <= tol_out && e_lse <= tol_lse,
        "{} P={} N={} {:?} {:?}: out err {e_out:.3e}, lse err {e_lse:.3e}",
        spec.layout,
        spec.p,
        spec.n,
        spec.plan.kinds,
        spec.dtype
    );
    (e_out, e_lse)
}

fn problem(n: usize, heads: usize, dim: usize, kinds: Vec<HeadKind>, base: Mask) -> Spec {
    Spec {
        layout: LayoutKind::Contiguous,
        p: 1,
        n,
        heads,
        dim,
        plan: DuoPlan {
            kinds,
            sink: 4,
            recent: 32,
        },
        base,
        dtype: Dtype::F32,
        tile: TileShape::default(),
        seed: 0xd0,
    }
}

#[test]
fn duo_matches_reference_over_layouts_worlds_and_head_configs() {
    let problems = [
        // MHA, mixed kinds.
        problem(1001, 8, 32, vec![S, R, S, S, R, S, R, S], Mask::Causal),
        // GQA 8/4, mixed kinds.
        problem(777, 8, 64, vec![R, S, S, R], Mask::Causal),
        // GQA 32/8, mostly streaming, non-causal retrieval heads.
        problem(301, 32, 16, vec![S, S, R, S, S, S, R, S], Mask::None),
        // No retrieval heads at all.
        problem(777, 8, 32, vec![S, S, S, S], Mask::Causal),
    ];
    let tiles = [TileShape::default(), TileShape { q: 16, k: 24 }];
    let mut worst = (0.0f64, 0.0f64);
    for (i, base) in problems.iter().enumerate() {
        let want = reference(base);
        for layout in LayoutKind::ALL {
            for p in 1..=4 {
                let spec = Spec {
                    layout,
                    p,
                    tile: tiles[(i + p) % 2],
                    ..base.clone()
                };
                let e = check(&spec, &assemble(&spec, &run_duo(&spec)), &want);
                worst = (worst.0.max(e.0), worst.1.max(e.1));
            }
        }
    }
    println!(
        "duo vs reference: worst out {:.3e}, lse {:.3e}",
        worst.0, worst.1
    );
}

#[test]
fn duo_bf16_matches_reference() {
    let base = Spec {
        dtype: Dtype::Bf16,
        ..problem(500, 8, 32, vec![S, R, S, S], Mask::Causal)
    };
    let want = reference(&base);
    for layout in LayoutKind::ALL {
        let spec = Spec {
            layout,
            p: 3,
            ..base.clone()
        };
        check(&spec, &assemble(&spec, &run_duo(&spec)), &want);
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn all_retrieval_plan_is_the_plain_ring_bitwise_and_mixed_retrieval_heads_too() {
    for layout in LayoutKind::ALL {
        for p in [1, 3, 4] {
            let spec = Spec {
                layout,
                p,
                tile: TileShape { q: 16, k: 24 },
                ..problem(401, 8, 32, vec![R; 4], Mask::Causal)
            };
            let plain = run_plain(&spec);
            let duo = run_duo(&spec);
            for (a, b) in plain.iter().zip(&duo) {
                assert_eq!(bits(&a.state.m), bits(&b.state.m), "{layout} P={p}");
                assert_eq!(bits(&a.state.l), bits(&b.state.l), "{layout} P={p}");
                assert_eq!(bits(&a.state.acc), bits(&b.state.acc), "{layout} P={p}");
                assert_eq!(a.stats.bytes_sent, b.stats.bytes_sent_retrieval);
                assert_eq!(b.stats.bytes_sent_streaming, 0);
            }
            // Mixed: the retrieval heads' rows are still bitwise the plain ring's.
            let mixed = Spec {
                plan: DuoPlan {
                    kinds: vec![S, R, S, R],
                    ..spec.plan.clone()
                },
                ..spec.clone()
            };
            let (plain_out, plain_lse) = assemble(&spec, &plain);
            let (out, lse) = assemble(&mixed, &run_duo(&mixed));
            let (n, d) = (spec.n, spec.dim);
            for head in [2, 3, 6, 7] {
                assert_eq!(
                    bits(&out[head * n * d..(head + 1) * n * d]),
                    bits(&plain_out[head * n * d..(head + 1) * n * d]),
                    "{layout} P={p} head {head}"
                );
                assert_eq!(
                    bits(&lse[head * n..(head + 1) * n]),
                    bits(&plain_lse[head * n..(head + 1) * n])
                );
            }
        }
    }
}

#[test]
fn contiguous_streaming_kv_makes_one_hop_plus_the_sink() {
    let (sink, recent, dim, p, n) = (64, 256, 128, 4, 4096);
    let spec = Spec {
        p,
        plan: DuoPlan {
            kinds: vec![S, R, S, R, S, R, S, R],
            sink,
            recent,
        },
        ..problem(n, 8, dim, vec![], Mask::Causal)
    };
    let whole = run_duo(&spec);
    let duo = run_duo_parts(&spec);
    let plain = run_plain(&spec);
    // One KV row of the 4 streaming heads: K and V, f32.
    let row = (2 * 4 * dim * 4) as u64;
    let block = (n / p) as u64 * row;
    for (rank, (d, pl)) in duo.iter().zip(&plain).enumerate() {
        let s = &d.stats;
        // Ranks 0..P−2 send their last recent − 1 rows to the next rank and forward the sink
        // (rank 0's first `sink` rows) once; the last rank's block is needed by nobody.
        let want_rows = if rank + 1 < p {
            (recent - 1 + sink) as u64
        } else {
            0
        };
        assert_eq!(s.bytes_sent_streaming, want_rows * row, "rank {rank}");
        assert_eq!(
            s.bytes_sent_retrieval,
            (p as u64 - 1) * block,
            "rank {rank}"
        );
        assert_eq!(
            s.total.bytes_sent,
            s.bytes_sent_retrieval + s.bytes_sent_streaming
        );
        let sources: Vec<usize> = s.total.steps.iter().map(|x| x.source).collect();
        assert_eq!(
            sources,
            (0..p).map(|t| (rank + p - t) % p).collect::<Vec<_>>()
        );
        // Parts made separately: own retrieval + incoming retrieval + own streaming = 1.5
        // blocks, below the plain ring's own + incoming = 2 blocks.
        let own = 2 * block;
        assert_eq!(pl.stats.kv_bytes_peak, 2 * own, "rank {rank}");
        assert_eq!(s.total.kv_bytes_peak, 3 * own / 2, "rank {rank}");
        // Splitting a whole block holds it and its two parts at once: 2 blocks, counted.
        assert_eq!(
            whole[rank].stats.total.kv_bytes_peak,
            2 * own,
            "rank {rank}"
        );
        assert_eq!(
            whole[rank].state, d.state,
            "rank {rank}: parts and whole agree bitwise"
        );
        println!(
            "rank {rank}: streaming bytes {} ({} rows), retrieval bytes {}, kv peak {} (plain {})",
            s.bytes_sent_streaming,
            s.bytes_sent_streaming / row,
            s.bytes_sent_retrieval,
            s.total.kv_bytes_peak,
            pl.stats.kv_bytes_peak
        );
    }
}

#[test]
fn plan_of_the_wrong_size_is_a_config_error() {
    let spec = problem(40, 4, 8, vec![S, R], Mask::Causal);
    let src = Synthetic { seed: 1 };
    let mut comm = local_world(1).pop().unwrap();
    let q = QShard::from_source(&src, 4, 8, Positions::contiguous(0, 40)).unwrap();
    let kv = KvBlock::from_source(&src, 0, 4, 8, Positions::contiguous(0, 40)).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let err = duo_ring_pass(
        &mut comm,
        &q,
        kv,
        &cfg(&spec),
        &pool,
        &spec.plan,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(
        err.is_user_error() && err.to_string().contains("2 KV heads"),
        "{err}"
    );
}

#[test]
fn prefill_with_the_shared_patterns_matches_the_reference() {
    // Llama-2-7B (MHA, 32 KV heads) and Llama-3-8B (GQA 32/8) at sparsity 0.5 and 0.75.
    for (model, heads) in [
        ("Llama-2-7B-32K-Instruct", 32),
        ("Llama-3-8B-Instruct-Gradient-1048k", 32),
    ] {
        for sparsity in [0.5, 0.75] {
            let plan = shared_plan(model, sparsity);
            for layout in LayoutKind::ALL {
                for p in 1..=4 {
                    let spec = Spec {
                        layout,
                        p,
                        n: 203,
                        heads,
                        dim: 8,
                        plan: plan.clone(),
                        base: Mask::Causal,
                        dtype: Dtype::F32,
                        tile: TileShape { q: 16, k: 16 },
                        seed: 3,
                    };
                    let want = reference(&spec);
                    check(&spec, &assemble(&spec, &run_duo(&spec)), &want);
                }
            }
        }
    }
}

/// Windows and sinks near 2^64 are full (causal) attention: exact against the f64 reference on
/// every layout and world size (the window arithmetic saturates instead of wrapping).
#[test]
fn huge_windows_equal_causal_attention() {
    let huge = [
        (0, usize::MAX),
        (4, usize::MAX),
        (usize::MAX, usize::MAX),
        (usize::MAX, 1),
        (3, usize::MAX - 1),
        (0, 1 << 63),
    ];
    for (i, &(sink, recent)) in huge.iter().enumerate() {
        let mut base = problem(301, 8, 16, vec![S, R, S, S], Mask::Causal);
        base.plan.sink = sink;
        base.plan.recent = recent;
        let want = reference(&base);
        // The huge window is the causal mask: the reference agrees with a causal one.
        let causal = Spec {
            plan: DuoPlan::all_retrieval(4, 0, 1),
            ..base.clone()
        };
        if recent > base.n {
            let want_causal = reference(&causal);
            assert_eq!(want, want_causal, "sink {sink} recent {recent}");
        }
        for layout in LayoutKind::ALL {
            for p in [1, 2, 3] {
                let spec = Spec {
                    layout,
                    p,
                    tile: [TileShape::default(), TileShape { q: 16, k: 24 }][(i + p) % 2],
                    ..base.clone()
                };
                check(&spec, &assemble(&spec, &run_duo(&spec)), &want);
            }
        }
    }
}
