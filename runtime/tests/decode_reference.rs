//! The decode kernel (one query row against a KV cache) against the f64 reference.
//!
//! f32 caches: out ≤ 2e-5, lse ≤ 1e-5 max abs error; bf16 caches (8-bit mantissa, reference on
//! the unrounded values): 2e-2. MHA and GQA, causal / streaming / no mask, head dims that are and
//! are not multiples of 16, caches of several chunks, caches split over two "ranks" (disjoint
//! position sets) merged by log-sum-exp, and independence from the thread count.

use ringattn_runtime::decode::DECODE_CHUNK;
use ringattn_runtime::reference::reference_row;
use ringattn_runtime::{
    decode_attend, decode_attend_on, AttnState, Dtype, KvCache, Mask, RowSource, Synthetic,
    TensorKind,
};

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn row(src: &Synthetic, t: TensorKind, head: usize, pos: usize, dim: usize) -> Vec<f32> {
    let mut r = vec![0.0; dim];
    src.fill_row(t, head, pos, &mut r).unwrap();
    r
}

/// A cache of the rows at `positions` of every KV head.
fn cache_of(
    src: &Synthetic,
    kv_heads: usize,
    dim: usize,
    dtype: Dtype,
    positions: &[usize],
) -> KvCache {
    let mut cache = KvCache::new(dim, dtype, &vec![positions.len(); kv_heads]);
    for g in 0..kv_heads {
        for &p in positions {
            let (k, v) = (
                row(src, TensorKind::K, g, p, dim),
                row(src, TensorKind::V, g, p, dim),
            );
            cache.head_mut(g).append(p, &k, &v).unwrap();
        }
    }
    cache
}

struct Case {
    heads: usize,
    kv_heads: usize,
    dim: usize,
    n: usize,
    masks: Vec<Mask>,
    dtype: Dtype,
}

/// Decodes the query at position `n - 1` against keys `0..n` (split over two caches by parity
/// of the chunk index when `split`), returns (max out err, max lse err).
fn run(case: &Case, split: bool, threads: usize) -> (f64, f64, AttnState) {
    let src = Synthetic { seed: 11 };
    let (h, d, n) = (case.heads, case.dim, case.n);
    let q_pos = n - 1;
    let q: Vec<f32> = (0..h)
        .flat_map(|head| row(&src, TensorKind::Q, head, q_pos, d))
        .collect();
    let all: Vec<usize> = (0..n).collect();
    let parts: Vec<Vec<usize>> = if split {
        let (a, b): (Vec<usize>, Vec<usize>) = all.iter().partition(|&&p| (p / 37) % 2 == 0);
        vec![a, b]
    } else {
        vec![all]
    };
    let pool = pool(threads);
    let mut state = AttnState::new(h, 1, d);
    for part in &parts {
        let cache = cache_of(&src, case.kv_heads, d, case.dtype, part);
        let mut partial = AttnState::new(h, 1, d);
        decode_attend(&q, q_pos, &cache, &case.masks, &mut partial, &pool);
        state.merge(&partial);
    }
    let fin = state.finalize();
    let group = h / case.kv_heads;
    let (mut out_err, mut lse_err) = (0.0f64, 0.0f64);
    for g in 0..case.kv_heads {
        let keys: Vec<f32> = (0..n)
            .flat_map(|p| row(&src, TensorKind::K, g, p, d))
            .collect();
        let values: Vec<f32> = (0..n)
            .flat_map(|p| row(&src, TensorKind::V, g, p, d))
            .collect();
        for head in g * group..(g + 1) * group {
            let (out, lse) = reference_row(
                &q[head * d..(head + 1) * d],
                q_pos,
                &keys,
                &values,
                d,
                case.masks[g].clone(),
            );
            for (got, want) in fin.out[head * d..(head + 1) * d].iter().zip(&out) {
                out_err = out_err.max((*got as f64 - want).abs());
            }
            lse_err = lse_err.max((fin.lse[head] as f64 - lse).abs());
        }
    }
    (out_err, lse_err, state)
}

fn cases(dtype: Dtype) -> Vec<Case> {
    let streaming = Mask::Streaming {
        sink: 4,
        recent: 16,
    };
    let mut out = Vec::new();
    for (heads, kv_heads) in [(4, 4), (8, 2), (6, 1)] {
        for (dim, n) in [(16, 5), (64, 3 * DECODE_CHUNK + 17), (80, 300), (128, 1000)] {
            let masks = (0..kv_heads)
                .map(|g| [Mask::Causal, streaming.clone(), Mask::None][g % 3].clone())
                .collect();
            out.push(Case {
                heads,
                kv_heads,
                dim,
                n,
                masks,
                dtype,
            });
        }
    }
    out
}

#[test]
fn f32_cache_matches_the_reference() {
    for case in cases(Dtype::F32) {
        for split in [false, true] {
            let (out, lse, _) = run(&case, split, 2);
            let what = format!(
                "H={} Hkv={} d={} n={} split={split}",
                case.heads, case.kv_heads, case.dim, case.n
            );
            assert!(out <= 2e-5, "{what}: out err {out:e}");
            assert!(lse <= 1e-5, "{what}: lse err {lse:e}");
        }
    }
}

#[test]
fn bf16_cache_matches_the_reference() {
    for case in cases(Dtype::Bf16) {
        let (out, lse, _) = run(&case, true, 2);
        let what = format!(
            "H={} Hkv={} d={} n={}",
            case.heads, case.kv_heads, case.dim, case.n
        );
        assert!(
            out <= 2e-2 && lse <= 2e-2,
            "{what}: out err {out:e}, lse err {lse:e}"
        );
    }
}

#[test]
fn result_does_not_depend_on_the_thread_count() {
    for case in cases(Dtype::F32).into_iter().step_by(3) {
        let (_, _, one) = run(&case, false, 1);
        let (_, _, three) = run(&case, false, 3);
        assert_eq!(one, three, "d={} n={}", case.dim, case.n);
    }
}

#[test]
fn fully_masked_heads_stay_empty_and_count_no_pairs() {
    let src = Synthetic { seed: 1 };
    let cache = cache_of(&src, 1, 16, Dtype::F32, &[10, 11, 12]);
    let mut state = AttnState::new(2, 1, 16);
    let q = vec![0.5f32; 32];
    // Every key is after the query: causal blanks them all.
    let pairs = decode_attend(&q, 5, &cache, &[Mask::Causal], &mut state, &pool(1));
    assert_eq!(pairs, 0);
    assert_eq!(state, AttnState::new(2, 1, 16));
    let pairs = decode_attend(&q, 11, &cache, &[Mask::Causal], &mut state, &pool(1));
    assert_eq!(pairs, 4, "two query heads see keys 10 and 11");
}

/// V rows near f32::MAX (issue 13): a cache of 600 rows (3 chunks) whose unnormalised weighted
/// sum would overflow f32 gives the reference output (relative to max|v|), whole and split over
/// two caches of which only one holds huge rows (the merge brings both to one scale).
#[test]
fn huge_v_gives_the_reference_output() {
    let src = Synthetic { seed: 5 };
    let (h, d, n) = (2, 16, 600);
    let big = |p: usize, g: usize| -> Vec<f32> {
        let r = row(&src, TensorKind::V, g, p, d);
        // Positive and near 2e38 from position 300 on: no cancellation saves the sum.
        let s = if p >= 300 { 2e38 } else { 1.0 };
        r.iter().map(|x| (x.abs() * 0.5 + 0.5) * s).collect()
    };
    let q: Vec<f32> = (0..h)
        .flat_map(|head| row(&src, TensorKind::Q, head, n - 1, d))
        .collect();
    let cache = |ps: &[usize]| {
        let mut c = KvCache::new(d, Dtype::F32, &[ps.len()]);
        for &p in ps {
            let k = row(&src, TensorKind::K, 0, p, d);
            c.head_mut(0).append(p, &k, &big(p, 0)).unwrap();
        }
        c
    };
    let keys: Vec<f32> = (0..n)
        .flat_map(|p| row(&src, TensorKind::K, 0, p, d))
        .collect();
    let values: Vec<f32> = (0..n).flat_map(|p| big(p, 0)).collect();
    let vmax = values
        .iter()
        .fold(0.0f64, |a, &x| a.max(f64::from(x).abs()));
    let all: Vec<usize> = (0..n).collect();
    let pool = pool(2);
    for parts in [
        vec![all.clone()],
        vec![all[..300].to_vec(), all[300..].to_vec()],
    ] {
        let mut state = AttnState::new(h, 1, d);
        for part in &parts {
            let mut partial = AttnState::new(h, 1, d);
            decode_attend(
                &q,
                n - 1,
                &cache(part),
                &[Mask::Causal],
                &mut partial,
                &pool,
            );
            state.merge(&partial);
        }
        let fin = state
            .finalize_checked(&ringattn_runtime::Positions::contiguous(n - 1, 1))
            .unwrap();
        for head in 0..h {
            let (out, _) = reference_row(
                &q[head * d..(head + 1) * d],
                n - 1,
                &keys,
                &values,
                d,
                Mask::Causal,
            );
            for (got, want) in fin.out[head * d..(head + 1) * d].iter().zip(&out) {
                let err = (f64::from(*got) - want).abs();
                assert!(err <= 2e-5 * (want.abs() + vmax), "{got} vs {want}");
            }
        }
    }
}

/// Every instruction-set build of the decode loops gives bitwise the portable build's state
/// (f32 and bf16 caches, every mask, GQA groups, chunk tails), so forcing one is safe.
#[test]
fn every_isa_build_is_bitwise_the_portable_one() {
    let src = Synthetic { seed: 5 };
    let pool = pool(2);
    let isas = ringattn_runtime::Isa::available();
    eprintln!("decode builds compared: {isas:?}");
    for dtype in [Dtype::F32, Dtype::Bf16] {
        for case in cases(dtype) {
            let (h, d, n) = (case.heads, case.dim, case.n);
            let q: Vec<f32> = (0..h)
                .flat_map(|head| row(&src, TensorKind::Q, head, n - 1, d))
                .collect();
            let all: Vec<usize> = (0..n).collect();
            let cache = cache_of(&src, case.kv_heads, d, dtype, &all);
            let state_on = |isa| {
                let mut s = AttnState::new(h, 1, d);
                let pairs = decode_attend_on(isa, &q, n - 1, &cache, &case.masks, &mut s, &pool);
                (s, pairs)
            };
            let portable = state_on(ringattn_runtime::Isa::Portable);
            for &isa in &isas {
                assert_eq!(
                    state_on(isa),
                    portable,
                    "{isa:?} {dtype:?} H={h} Hkv={} d={d} n={n}",
                    case.kv_heads
                );
            }
        }
    }
}
