//! Distributed decode (plain and DuoAttention) on local threads, against the f64 reference.
//!
//! Every rank is a thread joined by `local_world` channels, running the ring prefill and then
//! `decode`. Every decoded row of every head is compared with the reference over keys `0..=p`
//! under the head's mask (retrieval: causal; streaming: `k < sink` or `p − k < recent`), for
//! P ∈ {1, 2, 3, 4} × contiguous / striped / zigzag × MHA / GQA × plain / mixed plans, with N not
//! divisible by P, and windows small enough (sink 4, recent 16) that they move and the streaming
//! cache is cut back during the run. Also: an all-retrieval plan is plain decode bitwise, and
//! `kv_bytes_peak` is the caches' reserved capacity (no reallocation mid-run).

use std::thread;

use ringattn_ring::duo::{
    decode, decode_masks, prefill_for_decode, DecodeOutput, DecodeRoles, DecodeSpec,
};
use ringattn_ring::{DuoPlan, HeadKind, Layout};

mod common;
use common::shared_plan;
use ringattn_runtime::local::local_world;
use ringattn_runtime::reference::reference_row;
use ringattn_runtime::{Dtype, RowSource, Synthetic, TensorKind, TileShape};
use ringattn_striped::LayoutKind;

const SEED: u64 = 5;

fn one_thread() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
}

/// Runs prefill + decode on `p` rank threads; returns every rank's output in rank order.
fn run(
    layout: &dyn Layout,
    p: usize,
    spec: DecodeSpec,
    duo: Option<&DuoPlan>,
) -> Vec<DecodeOutput> {
    let src = Synthetic { seed: SEED };
    let tile = TileShape { q: 8, k: 8 };
    thread::scope(|s| {
        let handles: Vec<_> = local_world(p)
            .into_iter()
            .map(|mut comm| {
                s.spawn(move || {
                    let pool = one_thread();
                    prefill_for_decode(
                        &mut comm,
                        layout,
                        &src,
                        &spec,
                        duo,
                        tile,
                        &pool,
                        &mut |_, _| {},
                    )
                    .unwrap();
                    decode(&mut comm, layout, &src, &spec, duo, &pool, &mut |_, _| {}).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn rows_of(src: &Synthetic, t: TensorKind, head: usize, n: usize, dim: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n * dim];
    for (pos, row) in out.chunks_mut(dim).enumerate() {
        src.fill_row(t, head, pos, row).unwrap();
    }
    out
}

/// Max |out err| and |lse err| of every decoded row (all heads) against the reference.
fn errors(outputs: &[DecodeOutput], spec: &DecodeSpec, duo: Option<&DuoPlan>) -> (f64, f64) {
    let src = Synthetic { seed: SEED };
    let (d, total) = (spec.dim, spec.prefill + spec.steps);
    let masks = decode_masks(spec.kv_heads, duo);
    let group = spec.heads / spec.kv_heads;
    let mut rows: Vec<_> = outputs.iter().flat_map(|o| o.rows.iter()).collect();
    rows.sort_by_key(|r| r.step);
    assert_eq!(rows.len(), spec.steps, "one decoded row per step");
    let (mut out_err, mut lse_err) = (0.0f64, 0.0f64);
    for (g, mask) in masks.iter().enumerate() {
        let keys = rows_of(&src, TensorKind::K, g, total, d);
        let values = rows_of(&src, TensorKind::V, g, total, d);
        for (step, row) in rows.iter().enumerate() {
            let pos = spec.prefill + step;
            assert_eq!((row.step, row.pos), (step, pos));
            for h in g * group..(g + 1) * group {
                let mut q = vec![0.0f32; d];
                src.fill_row(TensorKind::Q, h, pos, &mut q).unwrap();
                let n = (pos + 1) * d;
                let (out, lse) = reference_row(&q, pos, &keys[..n], &values[..n], d, mask.clone());
                for (got, want) in row.out[h * d..(h + 1) * d].iter().zip(&out) {
                    out_err = out_err.max((*got as f64 - want).abs());
                }
                lse_err = lse_err.max((row.lse[h] as f64 - lse).abs());
            }
        }
    }
    (out_err, lse_err)
}

fn mixed_plan(kv_heads: usize) -> DuoPlan {
    let kinds = (0..kv_heads)
        .map(|g| {
            if g % 2 == 0 {
                HeadKind::Streaming
            } else {
                HeadKind::Retrieval
            }
        })
        .collect();
    DuoPlan {
        kinds,
        sink: 4,
        recent: 16,
    }
}

/// Capacity and contents of every rank's cache after the run.
fn check_caches(
    outputs: &[DecodeOutput],
    layout: &dyn Layout,
    spec: &DecodeSpec,
    duo: Option<&DuoPlan>,
) {
    let world = outputs.len();
    let roles = DecodeRoles::new(layout, world, spec);
    let elem = spec.dtype.size() as u64;
    for (rank, o) in outputs.iter().enumerate() {
        let own = layout.positions(rank, world, spec.prefill).len();
        let owned_steps = roles.owners.iter().filter(|&&r| r == rank).count();
        let mut expected = 0u64;
        for g in 0..spec.kv_heads {
            let head = o.cache.head(g);
            let streaming = duo.is_some_and(|p| p.kinds[g] == HeadKind::Streaming);
            let rows = match (streaming, duo) {
                (true, Some(plan)) if rank == roles.stream_rank => {
                    let total = spec.prefill + spec.steps;
                    let keep: Vec<usize> = (0..total)
                        .filter(|&k| k < plan.sink || k.saturating_add(plan.recent) >= total)
                        .collect();
                    assert_eq!(
                        head.positions(),
                        &keep[..],
                        "rank {rank} streaming head {g}"
                    );
                    total.min(plan.sink.saturating_add(plan.recent).saturating_add(1))
                }
                (true, _) => {
                    assert!(head.is_empty(), "rank {rank} keeps streaming head {g}");
                    0
                }
                _ => {
                    assert_eq!(head.rows(), own + owned_steps, "rank {rank} head {g}");
                    own + owned_steps
                }
            };
            assert_eq!(head.capacity_rows(), rows, "rank {rank} head {g} capacity");
            expected += 2 * (rows * spec.dim) as u64 * elem;
        }
        assert_eq!(o.cache.allocated_bytes(), expected, "rank {rank}");
        assert_eq!(
            o.stats.kv_bytes_peak, expected,
            "rank {rank}: peak is the reserved capacity"
        );
        assert_eq!(o.stats.steps.len(), spec.steps);
    }
}

#[test]
fn decode_matches_the_reference_on_every_layout_world_and_plan() {
    for kind in LayoutKind::ALL {
        let built = kind.build(&ringattn_runtime::Mask::None);
        let layout = &*built;
        for p in 1..=4 {
            for (heads, kv_heads) in [(4, 4), (8, 2)] {
                // N = 45: not divisible by 2, 3, 4 (or 2P); N = 9 < sink + recent: the
                // streaming cache first grows, then is cut back once the window moves.
                for (prefill, steps) in [(45, 7), (9, 16)] {
                    let spec = DecodeSpec {
                        prefill,
                        steps,
                        heads,
                        kv_heads,
                        dim: 16,
                        dtype: Dtype::F32,
                    };
                    let plan = mixed_plan(kv_heads);
                    for duo in [None, Some(&plan)] {
                        let outputs = run(layout, p, spec, duo);
                        let (out, lse) = errors(&outputs, &spec, duo);
                        let what = format!(
                            "{} P={p} H={heads}/{kv_heads} N={prefill} duo={}",
                            kind,
                            duo.is_some()
                        );
                        assert!(out <= 2e-5, "{what}: out err {out:e}");
                        assert!(lse <= 1e-5, "{what}: lse err {lse:e}");
                        check_caches(&outputs, layout, &spec, duo);
                    }
                }
            }
        }
    }
}

#[test]
fn bf16_cache_decodes_within_bf16_tolerance() {
    let spec = DecodeSpec {
        prefill: 301,
        steps: 6,
        heads: 8,
        kv_heads: 2,
        dim: 64,
        dtype: Dtype::Bf16,
    };
    let plan = mixed_plan(2);
    for kind in LayoutKind::ALL {
        let outputs = run(
            &*kind.build(&ringattn_runtime::Mask::None),
            3,
            spec,
            Some(&plan),
        );
        let (out, lse) = errors(&outputs, &spec, Some(&plan));
        assert!(
            out <= 2e-2 && lse <= 2e-2,
            "{kind}: out {out:e} lse {lse:e}"
        );
        check_caches(
            &outputs,
            &*kind.build(&ringattn_runtime::Mask::None),
            &spec,
            Some(&plan),
        );
    }
}

#[test]
fn all_retrieval_plan_is_plain_decode_bitwise() {
    let spec = DecodeSpec {
        prefill: 530,
        steps: 5,
        heads: 6,
        kv_heads: 3,
        dim: 32,
        dtype: Dtype::F32,
    };
    let plan = DuoPlan::all_retrieval(3, 4, 16);
    for kind in LayoutKind::ALL {
        let plain = run(&*kind.build(&ringattn_runtime::Mask::None), 3, spec, None);
        let duo = run(
            &*kind.build(&ringattn_runtime::Mask::None),
            3,
            spec,
            Some(&plan),
        );
        for (a, b) in plain.iter().zip(&duo) {
            assert_eq!(a.rows, b.rows, "{kind}");
            assert_eq!(a.cache, b.cache, "{kind}");
        }
    }
}

#[test]
fn striped_decode_spreads_new_tokens_round_robin() {
    let spec = DecodeSpec {
        prefill: 10,
        steps: 8,
        heads: 2,
        kv_heads: 2,
        dim: 16,
        dtype: Dtype::F32,
    };
    let outputs = run(
        &*LayoutKind::Striped.build(&ringattn_runtime::Mask::None),
        4,
        spec,
        None,
    );
    for (rank, o) in outputs.iter().enumerate() {
        let owned: Vec<usize> = o.rows.iter().map(|r| r.pos).collect();
        let expected: Vec<usize> = (10..18).filter(|p| p % 4 == rank).collect();
        assert_eq!(owned, expected, "rank {rank}");
        let heads_rows = o.cache.head(0).rows();
        assert_eq!(heads_rows, (0..18).filter(|p| p % 4 == rank).count());
    }
    let roles = DecodeRoles::new(
        &*LayoutKind::Striped.build(&ringattn_runtime::Mask::None),
        4,
        &spec,
    );
    assert_eq!(roles.stream_rank, 1, "owner of token 9");
}

#[test]
fn decode_with_the_shared_patterns_matches_the_reference() {
    for (model, heads, kv_heads) in [
        ("Llama-2-7B-32K-Instruct", 32, 32),
        ("Llama-3-8B-Instruct-Gradient-1048k", 32, 8),
    ] {
        for sparsity in [0.5, 0.75] {
            let plan = shared_plan(model, sparsity);
            assert_eq!(plan.kv_heads(), kv_heads);
            for kind in LayoutKind::ALL {
                for p in 1..=4 {
                    let spec = DecodeSpec {
                        prefill: 61,
                        steps: 5,
                        heads,
                        kv_heads,
                        dim: 8,
                        dtype: Dtype::F32,
                    };
                    let outputs = run(
                        &*kind.build(&ringattn_runtime::Mask::None),
                        p,
                        spec,
                        Some(&plan),
                    );
                    let (out, lse) = errors(&outputs, &spec, Some(&plan));
                    let what = format!("{model} s={sparsity} {kind} P={p}");
                    assert!(out <= 2e-5, "{what}: out err {out:e}");
                    assert!(lse <= 1e-5, "{what}: lse err {lse:e}");
                }
            }
        }
    }
}

/// Decode with `recent` (and `sink`) near 2^64: the streaming heads keep every row and match
/// the f64 reference exactly as full causal attention would.
#[test]
fn decode_with_huge_windows_matches_the_reference() {
    for kind in LayoutKind::ALL {
        let built = kind.build(&ringattn_runtime::Mask::None);
        let layout = &*built;
        for p in [1, 3] {
            for (sink, recent) in [(4, usize::MAX), (usize::MAX, usize::MAX), (0, 1 << 63)] {
                let spec = DecodeSpec {
                    prefill: 45,
                    steps: 7,
                    heads: 8,
                    kv_heads: 4,
                    dim: 16,
                    dtype: Dtype::F32,
                };
                let plan = DuoPlan {
                    sink,
                    recent,
                    ..mixed_plan(4)
                };
                let outputs = run(layout, p, spec, Some(&plan));
                let (out, lse) = errors(&outputs, &spec, Some(&plan));
                let what = format!("{kind} P={p} sink={sink} recent={recent}");
                assert!(out <= 2e-5, "{what}: out err {out:e}");
                assert!(lse <= 1e-5, "{what}: lse err {lse:e}");
                check_caches(&outputs, layout, &spec, Some(&plan));
            }
        }
    }
}
