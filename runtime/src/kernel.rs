//! The blocked attention kernel (portable path).
//!
//! Work items are (query head, query tile) pairs, run in parallel; each item walks the key
//! tiles of the block, asks [`Mask::classify`] about each, skips Empty tiles without touching
//! them, computes Full tiles with no per-element mask and masks only Partial tiles. Each item
//! owns its slice of the [`AttnState`], so the result does not depend on the thread count or
//! on which thread ran which item. GQA: query head `h` reads KV head `h / (heads / kv_heads)`.

use std::ops::AddAssign;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::mask::{Mask, TileClass};
use crate::positions::Positions;
use crate::state::AttnState;
use crate::tensor::{KvBlock, QShard};

/// Rows per query tile and per key tile.
///
/// 64 × 64 keeps a score tile (16 KiB), a K tile and a V tile (32 KiB each at d = 128) within L2
/// while giving enough work per item to amortise the classification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileShape {
    /// Query rows per tile.
    pub q: usize,
    /// Key rows per tile.
    pub k: usize,
}

impl Default for TileShape {
    fn default() -> Self {
        TileShape { q: 64, k: 64 }
    }
}

/// How many (query tile, key tile) pairs fell in each class: the kernel's own work count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileCounts {
    /// Tiles computed with no mask.
    pub full: u64,
    /// Tiles computed and masked element by element.
    pub partial: u64,
    /// Tiles skipped.
    pub empty: u64,
}

impl TileCounts {
    /// Tiles actually computed (Full + Partial).
    pub fn computed(&self) -> u64 {
        self.full + self.partial
    }
}

impl AddAssign for TileCounts {
    fn add_assign(&mut self, o: Self) {
        self.full += o.full;
        self.partial += o.partial;
        self.empty += o.empty;
    }
}

/// Counts tile classes for queries at `q` against keys at `k`, exactly as [`attend`] would
/// classify them (one query head). Used by the partitioner's cost model, so it must stay cheap
/// for long sequences: causal and unmasked counts take O(q tiles · log k tiles).
pub fn count_tiles(q: &Positions, k: &Positions, mask: Mask, tile: TileShape) -> TileCounts {
    let (tq, tk) = (tile.q.max(1), tile.k.max(1));
    let (nqt, nkt) = (q.len().div_ceil(tq) as u64, k.len().div_ceil(tk));
    let k_lo = |j: usize| k.get(j * tk);
    let k_hi = |j: usize| k.get(((j + 1) * tk).min(k.len()) - 1);
    let mut counts = TileCounts::default();
    if mask == Mask::None {
        counts.full = nqt * nkt as u64;
        return counts;
    }
    for qa in (0..q.len()).step_by(tq) {
        let (q_lo, q_hi) = (q.get(qa), q.get((qa + tq).min(q.len()) - 1));
        if mask == Mask::Causal {
            // Key tiles are ordered by position: a Full prefix, then Partial, then Empty.
            let full = partition_point(nkt, |j| k_hi(j) <= q_lo);
            let not_empty = partition_point(nkt, |j| k_lo(j) <= q_hi);
            counts.full += full as u64;
            counts.partial += (not_empty - full) as u64;
            counts.empty += (nkt - not_empty) as u64;
            continue;
        }
        for j in 0..nkt {
            match mask.classify(q_lo, q_hi, k_lo(j), k_hi(j)) {
                TileClass::Empty => counts.empty += 1,
                TileClass::Full => counts.full += 1,
                TileClass::Partial => counts.partial += 1,
            }
        }
    }
    counts
}

/// First index in `0..n` where the monotone predicate `pred` turns false.
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Updates `state` (the rows of `q`) with the keys and values of `kv` under `mask`, on the
/// threads of `pool`. Returns the tile counts summed over heads.
pub fn attend(
    q: &QShard,
    kv: &KvBlock,
    mask: Mask,
    tile: TileShape,
    state: &mut AttnState,
    pool: &rayon::ThreadPool,
) -> TileCounts {
    assert_eq!(q.dim, kv.dim, "query and key head dims differ");
    assert_eq!(
        (state.heads, state.rows, state.dim),
        (q.heads, q.rows(), q.dim)
    );
    assert!(
        kv.kv_heads > 0 && q.heads.is_multiple_of(kv.kv_heads),
        "heads must be a multiple of kv_heads"
    );
    let (rows, dim) = (q.rows(), q.dim);
    if rows == 0 || kv.rows() == 0 || dim == 0 {
        return TileCounts::default();
    }
    let tq = tile.q.max(1);
    // One item per (head, query tile), each owning disjoint slices of the state.
    let mut items: Vec<Item<'_>> = Vec::with_capacity(q.heads * rows.div_ceil(tq));
    let heads_m = state.m.chunks_mut(rows);
    let heads_l = state.l.chunks_mut(rows);
    let heads_acc = state.acc.chunks_mut(rows * dim);
    for (head, ((m, l), acc)) in heads_m.zip(heads_l).zip(heads_acc).enumerate() {
        let tiles = m
            .chunks_mut(tq)
            .zip(l.chunks_mut(tq))
            .zip(acc.chunks_mut(tq * dim));
        for (t, ((m, l), acc)) in tiles.enumerate() {
            items.push(Item {
                head,
                q_start: t * tq,
                m,
                l,
                acc,
            });
        }
    }
    let counts = pool.install(|| {
        items
            .par_iter_mut()
            .map_init(
                || Scratch::new(tile, dim),
                |scratch, item| process_item(q, kv, mask, tile, item, scratch),
            )
            .reduce(TileCounts::default, |mut a, b| {
                a += b;
                a
            })
    });
    counts
}

/// One (head, query tile) work item and its slices of the state.
struct Item<'a> {
    head: usize,
    q_start: usize,
    m: &'a mut [f32],
    l: &'a mut [f32],
    acc: &'a mut [f32],
}

/// Per-thread scratch buffers, allocated once per thread, not per tile.
struct Scratch {
    scores: Vec<f32>,
    q_pos: Vec<usize>,
    k_pos: Vec<usize>,
}

impl Scratch {
    fn new(tile: TileShape, _dim: usize) -> Self {
        Scratch {
            scores: vec![0.0; tile.q.max(1) * tile.k.max(1)],
            q_pos: vec![0; tile.q.max(1)],
            k_pos: vec![0; tile.k.max(1)],
        }
    }
}

fn process_item(
    q: &QShard,
    kv: &KvBlock,
    mask: Mask,
    tile: TileShape,
    item: &mut Item<'_>,
    s: &mut Scratch,
) -> TileCounts {
    let dim = q.dim;
    let scale = 1.0 / (dim as f32).sqrt();
    let (q_rows, k_rows) = (q.rows(), kv.rows());
    let qa = item.q_start;
    let nq = item.m.len();
    let kv_head = item.head / (q.heads / kv.kv_heads);
    let q_tile = &q.data[(item.head * q_rows + qa) * dim..(item.head * q_rows + qa + nq) * dim];
    let k_head = &kv.k[kv_head * k_rows * dim..(kv_head + 1) * k_rows * dim];
    let v_head = &kv.v[kv_head * k_rows * dim..(kv_head + 1) * k_rows * dim];
    let (q_lo, q_hi) = (q.positions.get(qa), q.positions.get(qa + nq - 1));
    let mut q_pos_ready = false;
    let mut counts = TileCounts::default();
    let tk = tile.k.max(1);
    for ka in (0..k_rows).step_by(tk) {
        let nk = tk.min(k_rows - ka);
        let class = mask.classify(
            q_lo,
            q_hi,
            kv.positions.get(ka),
            kv.positions.get(ka + nk - 1),
        );
        match class {
            TileClass::Empty => {
                counts.empty += 1;
                continue;
            }
            TileClass::Full => counts.full += 1,
            TileClass::Partial => counts.partial += 1,
        }
        let k_tile = &k_head[ka * dim..(ka + nk) * dim];
        let v_tile = &v_head[ka * dim..(ka + nk) * dim];
        let scores = &mut s.scores[..nq * nk];
        for (i, q_row) in q_tile.chunks_exact(dim).enumerate() {
            let row = &mut scores[i * nk..(i + 1) * nk];
            for (sc, k_row) in row.iter_mut().zip(k_tile.chunks_exact(dim)) {
                *sc = dot(q_row, k_row) * scale;
            }
        }
        if class == TileClass::Partial {
            if !q_pos_ready {
                q.positions.fill(qa, &mut s.q_pos[..nq]);
                q_pos_ready = true;
            }
            kv.positions.fill(ka, &mut s.k_pos[..nk]);
            for (i, &qp) in s.q_pos[..nq].iter().enumerate() {
                for (sc, &kp) in scores[i * nk..(i + 1) * nk].iter_mut().zip(&s.k_pos[..nk]) {
                    if !mask.allows(qp, kp) {
                        *sc = f32::NEG_INFINITY;
                    }
                }
            }
        }
        for i in 0..nq {
            let row = &mut scores[i * nk..(i + 1) * nk];
            let acc = &mut item.acc[i * dim..(i + 1) * dim];
            online_update(row, v_tile, dim, &mut item.m[i], &mut item.l[i], acc);
        }
    }
    counts
}

/// Folds one row of scaled scores (−∞ = masked) and the matching V rows into (m, l, acc).
#[inline]
fn online_update(
    scores: &mut [f32],
    v_tile: &[f32],
    dim: usize,
    m: &mut f32,
    l: &mut f32,
    acc: &mut [f32],
) {
    let row_max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if row_max == f32::NEG_INFINITY {
        return;
    }
    let m_new = m.max(row_max);
    let alpha = (*m - m_new).exp();
    let mut sum = 0.0f32;
    for sc in scores.iter_mut() {
        *sc = (*sc - m_new).exp();
        sum += *sc;
    }
    *l = *l * alpha + sum;
    if alpha != 1.0 {
        acc.iter_mut().for_each(|a| *a *= alpha);
    }
    for (&p, v_row) in scores.iter().zip(v_tile.chunks_exact(dim)) {
        if p != 0.0 {
            for (a, &v) in acc.iter_mut().zip(v_row) {
                *a += p * v;
            }
        }
    }
    *m = m_new;
}

/// Dot product with 8 independent partial sums, so the compiler can vectorise it.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut sums = [0.0f32; LANES];
    let (ac, ar) = a.split_at(a.len() - a.len() % LANES);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(LANES).zip(bc.chunks_exact(LANES)) {
        for k in 0..LANES {
            sums[k] += x[k] * y[k];
        }
    }
    let mut total = sums.iter().sum::<f32>();
    for (x, y) in ar.iter().zip(br) {
        total += x * y;
    }
    total
}
