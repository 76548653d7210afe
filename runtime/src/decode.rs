//! The decode kernel: ONE query row per head against a [`KvCache`].
//!
//! Work items are (KV head, chunk of [`DECODE_CHUNK`] cached rows), run in parallel as in
//! llama.cpp's decode split: each item computes, for the query heads of its KV head (GQA: query
//! head `h` reads KV head `h / (heads / kv_heads)`, so a K or V row is read once for the whole
//! group), the scores against its rows, the chunk's softmax and the weighted sum of its V rows:
//! a partial (max `m`, sum `l`, accumulator) per query head. The partials are merged by
//! log-sum-exp in item order, so the result does not depend on the thread count.
//!
//! K and V are read row-major as cached (no packing per step); bf16 rows are widened to f32 a
//! few rows at a time, and all arithmetic is f32. Keys are blanked by a [`Mask`] on their
//! absolute positions: a chunk the mask classifies Empty is skipped, a Full one is not masked, a
//! Partial one has its forbidden ranges set to −∞. The loops are written in 16-lane chunks with
//! several independent accumulators so the compiler vectorises them; the same source is compiled
//! a second and third time with AVX2+FMA and AVX-512F enabled ([`decode_attend_on`] picks by
//! the active instruction set). Rust never fuses or reorders f32 operations, so every build
//! gives bitwise the same result — only the vector width differs (the baseline x86-64 build
//! has SSE2 only, which made decode at 8K tokens spend ~3/4 of its time here).

use crate::kernel::Isa;
use crate::kv_cache::{HeadCache, KvCache};
use crate::mask::{Mask, TileClass};
use crate::sched::Executor;
use crate::state::{merge_row, AttnState, OVERFLOWED};
use crate::tensor::KvData;

/// Cached rows per work item.
pub const DECODE_CHUNK: usize = 256;

/// Vector width the loops are written for (one AVX-512 register of f32).
const LANES: usize = 16;

/// Rows widened from bf16 (and walked) at a time: a multiple of the 4 rows of [`axpy4`].
const BLOCK: usize = 16;

/// Updates `state` (`heads × 1 row × dim`, the query at absolute position `q_pos`) with the keys
/// and values of `cache`, KV head `g` under `masks[g]`, on the threads of `pool`.
///
/// `q` is `[heads][dim]`. Returns the number of (query head, key) pairs the masks allowed and
/// the kernel computed (FLOPs = 4 · dim · pairs). Panics when the shapes disagree (a programming
/// error, never user input).
pub fn decode_attend<E: Executor>(
    q: &[f32],
    q_pos: usize,
    cache: &KvCache,
    masks: &[Mask],
    state: &mut AttnState,
    pool: &E,
) -> u64 {
    decode_attend_on(Isa::active(), q, q_pos, cache, masks, state, pool)
}

/// [`decode_attend`] with the loops compiled for `isa` (AVX-512F, AVX2+FMA, else the baseline
/// build) when this CPU runs it, else the baseline: bitwise the same result on every path, so
/// tests and benchmarks can force one.
pub fn decode_attend_on<E: Executor>(
    isa: Isa,
    q: &[f32],
    q_pos: usize,
    cache: &KvCache,
    masks: &[Mask],
    state: &mut AttnState,
    pool: &E,
) -> u64 {
    let (heads, dim) = (state.heads, state.dim);
    let kv_heads = cache.kv_heads();
    assert_eq!(
        state.rows, 1,
        "the decode kernel takes one query row per head"
    );
    assert_eq!(q.len(), heads * dim, "query is not [heads][dim]");
    assert_eq!(masks.len(), kv_heads, "one mask per KV head");
    assert!(
        kv_heads > 0 && heads.is_multiple_of(kv_heads),
        "heads must be a multiple of kv_heads"
    );
    assert!(
        cache.heads().iter().all(|h| h.dim() == dim),
        "cache head dim differs from the query's"
    );
    if dim == 0 {
        return 0;
    }
    let scaled = crate::vscale::prepare_cache(cache, state);
    let cache = scaled.as_ref().unwrap_or(cache);
    let group = heads / kv_heads;
    let mut items = chunk_items(cache, masks, q_pos);
    let scale = 1.0 / (dim as f32).sqrt();
    let class = format!("decode-{}", cache.dtype().name());
    pool.run(
        &class,
        &mut items,
        &|item: &Item| (item.end - item.start) as f64,
        &Scratch::default,
        &|scratch, item| {
            let head = cache.head(item.kv_head);
            let qg = &q[item.kv_head * group * dim..(item.kv_head + 1) * group * dim];
            let mask = &masks[item.kv_head];
            let part = chunk_partial_on(isa, qg, q_pos, head, item, mask, scale, scratch);
            item.partial = Some(part);
        },
    );
    let mut pairs = 0u64;
    for item in &items {
        let part = item.partial.as_ref().expect("every item ran");
        pairs += part.pairs;
        for j in 0..group {
            let h = item.kv_head * group + j;
            merge_row(
                &mut state.m[h],
                &mut state.l[h],
                &mut state.acc[h * dim..(h + 1) * dim],
                part.m[j],
                part.l[j],
                &part.acc[j * dim..(j + 1) * dim],
            );
        }
    }
    pairs
}

/// The chunks of `DECODE_CHUNK` cached rows per KV head that the query at `q_pos` sees (Empty
/// ones left out), as work items.
fn chunk_items(cache: &KvCache, masks: &[Mask], q_pos: usize) -> Vec<Item> {
    let mut items = Vec::new();
    for (g, head) in cache.heads().iter().enumerate() {
        for start in (0..head.rows()).step_by(DECODE_CHUNK) {
            let end = (start + DECODE_CHUNK).min(head.rows());
            let pos = &head.positions()[start..end];
            let class = masks[g].classify(q_pos, q_pos, pos[0], pos[pos.len() - 1]);
            if class != TileClass::Empty {
                items.push(Item {
                    kv_head: g,
                    start,
                    end,
                    class,
                    partial: None,
                });
            }
        }
    }
    items
}

/// One work item: rows `start..end` of KV head `kv_head`.
struct Item {
    kv_head: usize,
    start: usize,
    end: usize,
    class: TileClass,
    /// The item's result, filled by whichever thread ran it (merged in item order).
    partial: Option<Partial>,
}

/// The partial state of one item for the query heads of its KV head.
struct Partial {
    m: Vec<f32>,
    l: Vec<f32>,
    acc: Vec<f32>,
    pairs: u64,
}

/// Per-thread buffers: scores `[group][chunk]` and widened bf16 rows.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    rows: Vec<f32>,
}

/// Exponentiates each query head's row of `scores` (`group` rows of `n`) in place against its
/// max; returns the maxes and sums. A row with a score beyond f32 is zeroed and marked
/// [`OVERFLOWED`]; a row with no allowed key stays (max −∞, sum 0).
#[inline(always)]
fn softmax_rows(scores: &mut [f32], n: usize, group: usize) -> (Vec<f32>, Vec<f32>) {
    let mut m = vec![f32::NEG_INFINITY; group];
    let mut l = vec![0.0f32; group];
    for (j, row) in scores.chunks_exact_mut(n).enumerate() {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max == f32::INFINITY || row.iter().any(|s| s.is_nan()) {
            // A score beyond f32: the row is marked, never exp(∞ − ∞).
            row.fill(0.0);
            m[j] = OVERFLOWED;
            continue;
        }
        if max == f32::NEG_INFINITY {
            row.fill(0.0);
            continue;
        }
        let mut sum = 0.0f32;
        for s in row.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        m[j] = max;
        l[j] = sum;
    }

    (m, l)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn chunk_partial(
    q: &[f32],
    q_pos: usize,
    head: &HeadCache,
    item: &Item,
    mask: &Mask,
    scale: f32,
    scratch: &mut Scratch,
) -> Partial {
    let dim = head.dim();
    let group = q.len() / dim;
    let n = item.end - item.start;
    let Scratch { scores, rows } = scratch;
    scores.clear();
    scores.resize(group * n, 0.0);

    // Scores: a block of K rows at a time, every query head of the group against it.
    for b in (0..n).step_by(BLOCK) {
        let len = BLOCK.min(n - b);
        let first = (item.start + b) * dim;
        let k = rows_f32(head.k(), first..first + len * dim, rows);
        for (j, q_row) in q.chunks_exact(dim).enumerate() {
            let out = &mut scores[j * n + b..j * n + b + len];
            for (o, k_row) in out.iter_mut().zip(k.chunks_exact(dim)) {
                *o = dot(q_row, k_row);
            }
        }
    }
    scores.iter_mut().for_each(|s| *s *= scale);

    let mut blocked = 0;
    if item.class == TileClass::Partial {
        let positions = &head.positions()[item.start..item.end];
        for range in mask.blocked_key_ranges(q_pos, positions) {
            blocked += range.len();
            for j in 0..group {
                scores[j * n + range.start..j * n + range.end].fill(f32::NEG_INFINITY);
            }
        }
    }

    // Softmax of the chunk, per query head.
    let (m, l) = softmax_rows(scores, n, group);

    // Σ p · v: a block of V rows at a time, four rows per pass over the accumulator.
    let mut acc = vec![0.0f32; group * dim];
    for b in (0..n).step_by(BLOCK) {
        let len = BLOCK.min(n - b);
        let first = (item.start + b) * dim;
        let v = rows_f32(head.v(), first..first + len * dim, rows);
        for (j, acc_row) in acc.chunks_exact_mut(dim).enumerate() {
            let p = &scores[j * n + b..j * n + b + len];
            let mut r = 0;
            while r + 4 <= len {
                let w = [p[r], p[r + 1], p[r + 2], p[r + 3]];
                axpy4(acc_row, w, &v[r * dim..(r + 4) * dim]);
                r += 4;
            }
            for (&w, v_row) in p[r..].iter().zip(v[r * dim..].chunks_exact(dim)) {
                acc_row
                    .iter_mut()
                    .zip(v_row)
                    .for_each(|(a, &x)| *a += w * x);
            }
        }
    }
    Partial {
        m,
        l,
        acc,
        pairs: ((n - blocked) * group) as u64,
    }
}

/// [`chunk_partial`] compiled for `isa` when this CPU runs it (see the module note).
#[allow(clippy::too_many_arguments)]
fn chunk_partial_on(
    isa: Isa,
    q: &[f32],
    q_pos: usize,
    head: &HeadCache,
    item: &Item,
    mask: &Mask,
    scale: f32,
    scratch: &mut Scratch,
) -> Partial {
    #[cfg(target_arch = "x86_64")]
    {
        let wide = matches!(isa, Isa::Avx512 | Isa::Amx);
        if wide && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU runs AVX-512F (checked just above); the function only enables it.
            return unsafe { chunk_partial_avx512(q, q_pos, head, item, mask, scale, scratch) };
        }
        let fma = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        if isa != Isa::Portable && fma {
            // SAFETY: the CPU runs AVX2 and FMA (checked just above); the function only enables them.
            return unsafe { chunk_partial_avx2(q, q_pos, head, item, mask, scale, scratch) };
        }
    }
    let _ = isa;
    chunk_partial(q, q_pos, head, item, mask, scale, scratch)
}

/// [`chunk_partial`] with AVX-512F enabled (the same source, wider vectors).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn chunk_partial_avx512(
    q: &[f32],
    q_pos: usize,
    head: &HeadCache,
    item: &Item,
    mask: &Mask,
    scale: f32,
    scratch: &mut Scratch,
) -> Partial {
    chunk_partial(q, q_pos, head, item, mask, scale, scratch)
}

/// [`chunk_partial`] with AVX2 and FMA enabled (the same source, 256-bit vectors).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn chunk_partial_avx2(
    q: &[f32],
    q_pos: usize,
    head: &HeadCache,
    item: &Item,
    mask: &Mask,
    scale: f32,
    scratch: &mut Scratch,
) -> Partial {
    chunk_partial(q, q_pos, head, item, mask, scale, scratch)
}

/// Elements `range` of `data` as f32: borrowed when stored as f32, widened into `buf` for bf16.
#[inline(always)]
fn rows_f32<'a>(
    data: &'a KvData,
    range: std::ops::Range<usize>,
    buf: &'a mut Vec<f32>,
) -> &'a [f32] {
    match data {
        KvData::F32(v) => &v[range],
        KvData::Bf16(v) => {
            buf.clear();
            // bf16 is the top half of an f32: widening is a shift, which vectorises.
            buf.extend(
                v[range]
                    .iter()
                    .map(|x| f32::from_bits(u32::from(x.to_bits()) << 16)),
            );
            buf
        }
    }
}

/// `q · k` in 16-lane chunks: sixteen independent partial sums (four SSE or one AVX-512
/// register of accumulators), summed at the end.
#[inline(always)]
fn dot(q: &[f32], k: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (qc, kc) = (q.chunks_exact(LANES), k.chunks_exact(LANES));
    let tail: f32 = qc
        .remainder()
        .iter()
        .zip(kc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in qc.zip(kc) {
        let a: &[f32; LANES] = a.try_into().expect("16 lanes");
        let b: &[f32; LANES] = b.try_into().expect("16 lanes");
        for i in 0..LANES {
            acc[i] += a[i] * b[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `acc += w[0]·v0 + w[1]·v1 + w[2]·v2 + w[3]·v3` (`v` is `[4][dim]`), one pass over `acc`.
#[inline(always)]
fn axpy4(acc: &mut [f32], w: [f32; 4], v: &[f32]) {
    let dim = acc.len();
    let (v0, rest) = v.split_at(dim);
    let (v1, rest) = rest.split_at(dim);
    let (v2, v3) = rest.split_at(dim);
    for ((((a, &x0), &x1), &x2), &x3) in acc.iter_mut().zip(v0).zip(v1).zip(v2).zip(v3) {
        *a += w[0] * x0 + w[1] * x1 + w[2] * x2 + w[3] * x3;
    }
}
