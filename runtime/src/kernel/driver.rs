//! The per-item loop shared by every instruction set: walk the key tiles of a block, classify,
//! pack K, compute scores, blank forbidden ranges of Partial tiles, online softmax, P·V.
//!
//! The arithmetic is delegated to a [`Micro`] implementation (portable, AVX2, AVX-512), so the
//! tile logic exists once and the SIMD code stays small.

use crate::mask::{Mask, TileClass};
use crate::tensor::{KvBlock, KvData, QShard};

use super::{TileCounts, TileShape};
use crate::sched::Executor;

pub(crate) use super::buffers::{AlignedBuf, Pooled};

/// The three per-tile operations an instruction set provides.
pub(crate) trait Micro: Copy + Send + Sync {
    /// Column padding of packed K tiles (the vector width in f32 lanes).
    const LANES: usize;

    /// The instruction set these micro-kernels use (names the scheduler's kernel class).
    const ISA: super::Isa;

    /// Query rows taken through Q·Kᵀ, softmax and P·V together within a tile. A block that the
    /// mask leaves Empty for a key tile is skipped and a Full one is not blanked (the
    /// partitioner's tile, and so its counts, are unchanged): on a causal diagonal most of a
    /// Partial tile's rows see all or none of its keys. The whole tile (`usize::MAX`) by default.
    const Q_BLOCK: usize = usize::MAX;

    /// Key columns per contiguous block of a packed K panel (see [`pack_transposed`]): the
    /// `[d][w]` slice a Q·Kᵀ register block walks is then one contiguous stretch. In the plain
    /// `[d][ld]` layout (`usize::MAX`, the default) that slice's rows sit `ld·4` bytes apart —
    /// 512 at the default tile — so they fall on a few L1 sets and evict each other.
    const K_COLS: usize = usize::MAX;

    /// Element of packed V: f32 rows, or (bf16 path) a u32 holding the bf16 values of two
    /// consecutive keys at one column.
    type V: Pooled + Sync;

    /// Keys per packed V element along the key axis (1 for f32 rows, 2 for bf16 key pairs).
    /// Packed V of one KV head is `rows.div_ceil(KEYS_PER_V) × d` elements.
    const KEYS_PER_V: usize = 1;

    /// Packs rows `start..start + nk` of head `head` of `v` (`rows` rows per head) into `dst`
    /// (`nk.div_ceil(KEYS_PER_V) × d` elements).
    #[allow(clippy::too_many_arguments)]
    fn pack_v(
        self,
        v: &KvData,
        head: usize,
        rows: usize,
        start: usize,
        nk: usize,
        d: usize,
        dst: &mut [Self::V],
    );

    /// Packs one key tile for [`Micro::qk`]: `k` holds `nk` rows of `d` (f32, bf16 widened),
    /// `dst` is the tile's `d × ld` panel; `shape` is `(nk, d, ld)`. [`pack_transposed`] with
    /// `K_COLS` unless a path's Q·Kᵀ reads another layout.
    fn pack_k(self, k: &[f32], shape: (usize, usize, usize), dst: &mut [f32]) {
        pack_transposed(k, shape, Self::K_COLS, dst)
    }

    /// `s[i·ld + j] = Σ_p q[i·d + p] · K[j][p]` for `i < nq`, `j < ld` (`ld` a multiple of
    /// `LANES`), `kt` being K packed by [`Micro::pack_k`] (columns past the real keys
    /// zero-padded).
    fn qk(self, q: &[f32], nq: usize, d: usize, kt: &[f32], ld: usize, s: &mut [f32]);

    /// One online-softmax step for a row of raw scores (−∞ = blocked): with `scale` applied,
    /// updates the running max `m` and sum `l`, overwrites `row` with `exp(score·scale − m_new)`
    /// and returns the factor `alpha = exp(m_old − m_new)` for the accumulator. A row with no
    /// allowed key becomes zeros and returns 1 (state unchanged).
    fn softmax_row(self, row: &mut [f32], scale: f32, m: &mut f32, l: &mut f32) -> f32;

    /// [`Micro::softmax_row`] on rows `0..m.len()` of `scores` (row stride `ld`, the first `nk`
    /// scores of each), each row's factor written to `alpha`. A path overrides it to work on
    /// several rows at once, so that their reductions and `exp` chains overlap instead of
    /// waiting on each other; the result must stay bitwise that of `softmax_row` per row.
    #[allow(clippy::too_many_arguments)]
    fn softmax_rows(
        self,
        scores: &mut [f32],
        ld: usize,
        nk: usize,
        scale: f32,
        m: &mut [f32],
        l: &mut [f32],
        alpha: &mut [f32],
    ) {
        for (i, row) in scores.chunks_mut(ld).take(m.len()).enumerate() {
            alpha[i] = self.softmax_row(&mut row[..nk], scale, &mut m[i], &mut l[i]);
        }
    }

    /// `acc[i·d + c] = alpha[i]·acc[i·d + c] + Σ_{j<nk} p[i·ld + j] · v[j·d + c]` for `i < nq`.
    #[allow(clippy::too_many_arguments)]
    fn pv(
        self,
        p: &[f32],
        ld: usize,
        nq: usize,
        nk: usize,
        v: &[Self::V],
        d: usize,
        alpha: &[f32],
        acc: &mut [f32],
    );
}

/// [`Micro::pack_v`] of the f32 paths: the `nk` rows as f32 (bf16 widened) in column blocks of
/// `cols` (the last one what is left), each block a row-major `[nk][w]` stretch, blocks one
/// after another: column `c` of key `j` in the block starting at column `b` is at
/// `dst[b·nk + j·w + (c − b)]`. A P·V register block then walks a contiguous slice (rows of
/// a `[nk][d]` tile sit `d·4` bytes apart, on a few L1 sets); `cols ≥ d` is plain `[nk][d]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_v_f32(
    v: &KvData,
    head: usize,
    rows: usize,
    start: usize,
    (nk, d): (usize, usize),
    cols: usize,
    dst: &mut [f32],
) {
    let first = (head * rows + start) * d;
    if cols >= d {
        return v.read_f32(first, &mut dst[..nk * d]);
    }
    for (b, w) in column_blocks(d, cols) {
        let block = &mut dst[b * nk..(b + w) * nk];
        for (j, row) in block.chunks_exact_mut(w).enumerate() {
            v.read_f32(first + j * d + b, row);
        }
    }
}

/// The blocks `(first column, width)` of `len` columns cut every `cols` (the last one what is
/// left; `cols ≥ len` gives one block): the one walk of the packed K and V layouts.
pub(crate) fn column_blocks(len: usize, cols: usize) -> impl Iterator<Item = (usize, usize)> {
    let cols = cols.max(1);
    (0..len).step_by(cols).map(move |b| (b, cols.min(len - b)))
}

/// What one online-softmax step does with a row of raw scores, decided from the row's max.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum RowStep {
    /// Every key blocked: the row becomes zeros, the state is unchanged, alpha = 1.
    Blocked,
    /// A score is +∞ or NaN (Q·K beyond f32): the row becomes zeros, the running max becomes
    /// [`OVERFLOWED`](crate::state::OVERFLOWED), alpha = 1. No `exp(∞ − ∞)` is ever formed.
    Overflowed,
    /// The new running max and the accumulator factor `exp(m_old − m_new)`.
    Update {
        /// `max(m_old, row_max · scale)`.
        m_new: f32,
        /// Exactly 1 when the max did not move.
        alpha: f32,
    },
}

/// The step for a row whose largest raw score is `row_max`, with running max `m`. (A NaN score
/// that the max skipped shows up as a non-finite row sum: the paths' `exp2` propagates NaN, and
/// a finite row sums to at most its length; each path then calls [`overflowed`].) Every path's softmax then computes `exp((s·scale) − m_new)` as a rounded
/// product minus `m_new` (never fused): rounding is monotone, so the argument is ≤ 0 for every
/// finite score however large (4e12 or −4e20), and exp never overflows.
pub(crate) fn row_step(row_max: f32, scale: f32, m: f32) -> RowStep {
    if row_max.is_nan() || row_max == f32::INFINITY {
        return RowStep::Overflowed;
    }
    if row_max == f32::NEG_INFINITY {
        return RowStep::Blocked;
    }
    let m_new = m.max(row_max * scale);
    // Once the running max settles (most tiles), alpha is exactly 1 and needs no exp.
    let alpha = if m_new == m { 1.0 } else { (m - m_new).exp() };
    RowStep::Update { m_new, alpha }
}

/// Ends a row's online-softmax step given the sum of its probabilities: `l` and `m` take the
/// step `(m_new, alpha)` and alpha is returned. A non-finite sum (a NaN score, which every
/// path's `exp` propagates) zeroes the row and marks it overflowed instead. Every path ends its
/// rows here, so they agree on it.
pub(crate) fn finish_row(
    row: &mut [f32],
    sum: f32,
    (m_new, alpha): (f32, f32),
    m: &mut f32,
    l: &mut f32,
) -> f32 {
    if !sum.is_finite() {
        row.fill(0.0);
        return overflowed(m);
    }
    *l = *l * alpha + sum;
    *m = m_new;
    alpha
}

/// Marks the row's state [`OVERFLOWED`](crate::state::OVERFLOWED) (its probabilities must be
/// zeroed by the caller) and returns alpha = 1.
pub(crate) fn overflowed(m: &mut f32) -> f32 {
    *m = crate::state::OVERFLOWED;
    1.0
}

/// Blanks the forbidden scores of Partial tiles: whole ranges per row from
/// [`Mask::blocked_key_ranges`], no branch per element. Keeps the positions of the item's query
/// rows (filled on its first Partial tile) and of the current key tile.
pub(crate) struct PartialBlanker {
    q_pos: Vec<usize>,
    k_pos: Vec<usize>,
    q_start: Option<usize>,
}

impl PartialBlanker {
    pub(crate) fn new(tile: TileShape) -> Self {
        PartialBlanker {
            q_pos: vec![0; tile.q],
            k_pos: vec![0; tile.k],
            q_start: None,
        }
    }

    /// Sets to −∞ the scores of `scores` that `mask` forbids: `scores` holds rows `rows` (row
    /// stride `ld`) of the item whose query rows are `(qa, nq)` = (first, count) of `q`; its
    /// columns are key rows `(ka, nk)` of `kv`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn blank(
        &mut self,
        mask: &Mask,
        q: &QShard,
        kv: &KvBlock,
        (qa, nq, rows): (usize, usize, std::ops::Range<usize>),
        (ka, nk): (usize, usize),
        scores: &mut [f32],
        ld: usize,
    ) {
        if self.q_start != Some(qa) {
            q.positions.fill(qa, &mut self.q_pos[..nq]);
            self.q_start = Some(qa);
        }
        kv.positions.fill(ka, &mut self.k_pos[..nk]);
        for (row, &qp) in scores.chunks_mut(ld).zip(&self.q_pos[rows]) {
            for blocked in mask.blocked_key_ranges(qp, &self.k_pos[..nk]) {
                row[blocked].fill(f32::NEG_INFINITY);
            }
        }
    }
}

/// The key tiles of `kv` that query rows `(first, count)` of `q` must compute, in order, as
/// (tile index, first key row, key count, class); Empty tiles are only counted in `counts`,
/// Full and Partial ones counted and returned. Every kernel path walks its item with this.
pub(crate) fn computed_key_tiles<'a>(
    q: &'a QShard,
    kv: &'a KvBlock,
    mask: &'a Mask,
    tile: TileShape,
    (qa, nq): (usize, usize),
    counts: &'a mut TileCounts,
) -> impl Iterator<Item = (usize, usize, usize, TileClass)> + 'a {
    let (q_lo, q_hi) = (q.positions.get(qa), q.positions.get(qa + nq - 1));
    let k_rows = kv.rows();
    (0..k_rows)
        .step_by(tile.k)
        .enumerate()
        .filter_map(move |(t, ka)| {
            let nk = tile.k.min(k_rows - ka);
            let (k_lo, k_hi) = (kv.positions.get(ka), kv.positions.get(ka + nk - 1));
            let class = mask.classify(q_lo, q_hi, k_lo, k_hi);
            match class {
                TileClass::Empty => counts.empty += 1,
                TileClass::Full => counts.full += 1,
                TileClass::Partial => counts.partial += 1,
            }
            (class != TileClass::Empty).then_some((t, ka, nk, class))
        })
}

/// One (head, query tile) work item and its slices of the state.
pub(crate) struct Item<'a> {
    pub head: usize,
    pub q_start: usize,
    pub m: &'a mut [f32],
    pub l: &'a mut [f32],
    pub acc: &'a mut [f32],
}

/// Per-thread scratch buffers, allocated once per thread, never per tile.
pub(crate) struct Scratch {
    scores: AlignedBuf,
    alpha: Vec<f32>,
    blanker: PartialBlanker,
}

impl Scratch {
    pub(crate) fn new<M: Micro>(tile: TileShape) -> Self {
        let ld = tile.k.next_multiple_of(M::LANES);
        Scratch {
            scores: AlignedBuf::zeroed(tile.q * ld),
            alpha: vec![0.0; tile.q],
            blanker: PartialBlanker::new(tile),
        }
    }
}

/// K and V of a whole block prepared once per call. K for Q·Kᵀ: per (KV head, key tile) a `[d][ld]`
/// panel ([`pack_transposed`]), so items read ready panels instead of each repacking them.
pub(crate) struct PackedK<V: Pooled = f32> {
    data: AlignedBuf,
    /// V of the block as f32 in one 64-byte-aligned buffer (same `[kv_heads][rows][dim]`
    /// order): full-width loads of V rows never split a cache line, and bf16 V is widened once
    /// per call instead of once per (item, tile).
    v: AlignedBuf<V>,
    /// Packed V elements per KV head.
    v_head: usize,
    ld: usize,
    panel: usize,
    tiles_per_head: usize,
}

impl<V: Pooled + Sync> PackedK<V> {
    /// Packs every key tile of every KV head of `kv` and copies V, on the threads of `pool`.
    pub(crate) fn new<M: Micro<V = V>, E: Executor>(
        micro: M,
        kv: &KvBlock,
        tile: TileShape,
        pool: &E,
    ) -> Self {
        let (rows, d) = (kv.rows(), kv.dim);
        let ld = tile.k.next_multiple_of(M::LANES);
        let tiles_per_head = rows.div_ceil(tile.k);
        let panel = d * ld;
        // Every element is written below (panels include their zero padding).
        let mut data = AlignedBuf::reused(kv.kv_heads * tiles_per_head * panel);
        let mut panels: Vec<(usize, &mut [f32])> = data
            .as_mut_slice()
            .chunks_mut(panel.max(1))
            .enumerate()
            .collect();
        pool.run(
            "pack",
            &mut panels,
            &|_| 1.0,
            &|| Vec::with_capacity(tile.k * d),
            &|widened, (idx, dst)| {
                let (head, t) = (*idx / tiles_per_head, *idx % tiles_per_head);
                let ka = t * tile.k;
                let nk = tile.k.min(rows - ka);
                let start = (head * rows + ka) * d;
                let k = f32_rows(&kv.k, start, nk * d, widened);
                micro.pack_k(k, (nk, d, ld), dst);
            },
        );
        // V per (KV head, key tile); tile.k is a multiple of KEYS_PER_V, so tiles start on
        // whole packed elements.
        let kp = M::KEYS_PER_V;
        let v_head = rows.div_ceil(kp) * d;
        let mut v = AlignedBuf::<V>::reused(kv.kv_heads * v_head);
        let mut chunks: Vec<(usize, &mut [V])> = Vec::new();
        for (head, dst) in v.as_mut_slice().chunks_mut(v_head.max(1)).enumerate() {
            let per_tile = (tile.k / kp * d).max(1);
            for (t, dst) in dst.chunks_mut(per_tile).enumerate() {
                chunks.push((head * tiles_per_head + t, dst));
            }
        }
        pool.run("pack", &mut chunks, &|_| 1.0, &|| (), &|(), (idx, dst)| {
            let (head, t) = (*idx / tiles_per_head, *idx % tiles_per_head);
            let ka = t * tile.k;
            micro.pack_v(&kv.v, head, rows, ka, tile.k.min(rows - ka), d, dst);
        });
        PackedK {
            data,
            v,
            v_head,
            ld,
            panel,
            tiles_per_head,
        }
    }

    fn panel(&self, head: usize, t: usize) -> &[f32] {
        let start = (head * self.tiles_per_head + t) * self.panel;
        &self.data.as_slice()[start..start + self.panel]
    }
}

/// Runs one item over every key tile of `kv`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn process_item<M: Micro>(
    micro: M,
    q: &QShard,
    kv: &KvBlock,
    packed: &PackedK<M::V>,
    mask: &Mask,
    tile: TileShape,
    item: &mut Item<'_>,
    s: &mut Scratch,
) -> TileCounts {
    let dim = q.dim;
    let scale = 1.0 / (dim as f32).sqrt();
    let q_rows = q.rows();
    let (qa, nq) = (item.q_start, item.m.len());
    let kv_head = item.head / (q.heads / kv.kv_heads);
    let q_tile = &q.data[(item.head * q_rows + qa) * dim..(item.head * q_rows + qa + nq) * dim];
    let ld = packed.ld;
    let mut counts = TileCounts::default();
    let q_block = M::Q_BLOCK.clamp(1, nq);
    for (t, ka, nk, class) in computed_key_tiles(q, kv, mask, tile, (qa, nq), &mut counts) {
        let kp = M::KEYS_PER_V;
        let v_start = kv_head * packed.v_head + ka / kp * dim;
        let v_tile = &packed.v.as_slice()[v_start..v_start + nk.div_ceil(kp) * dim];
        for r0 in (0..nq).step_by(q_block) {
            let rows = r0..(r0 + q_block).min(nq);
            let nb = rows.len();
            let class = match class {
                TileClass::Partial if nb < nq => {
                    let q_rows = (qa + r0, qa + rows.end - 1);
                    row_block_class(mask, q, kv, q_rows, (ka, ka + nk - 1))
                }
                class => class,
            };
            if class == TileClass::Empty {
                continue;
            }
            let scores = &mut s.scores.as_mut_slice()[..nb * ld];
            let q_rows = &q_tile[r0 * dim..rows.end * dim];
            micro.qk(q_rows, nb, dim, packed.panel(kv_head, t), ld, scores);
            if class == TileClass::Partial {
                let block = (qa, nq, rows.clone());
                s.blanker.blank(mask, q, kv, block, (ka, nk), scores, ld);
            }
            let (m, l) = (&mut item.m[rows.clone()], &mut item.l[rows.clone()]);
            let alpha = &mut s.alpha[..nb];
            micro.softmax_rows(scores, ld, nk, scale, m, l, alpha);
            let acc = &mut item.acc[r0 * dim..rows.end * dim];
            micro.pv(scores, ld, nb, nk, v_tile, dim, alpha, acc);
        }
    }
    counts
}

/// The class of query rows `first..=last` of `q` against key rows `first..=last` of `kv`
/// (positions ascend within a shard, so the ends bound the block).
fn row_block_class(
    mask: &Mask,
    q: &QShard,
    kv: &KvBlock,
    (q_first, q_last): (usize, usize),
    (k_first, k_last): (usize, usize),
) -> TileClass {
    let (q_lo, q_hi) = (q.positions.get(q_first), q.positions.get(q_last));
    mask.classify(
        q_lo,
        q_hi,
        kv.positions.get(k_first),
        kv.positions.get(k_last),
    )
}

/// Elements `[start, start + len)` of `data` as f32: borrowed when stored as f32, else widened
/// into `buf` (one key tile at a time while K is packed).
fn f32_rows<'a>(data: &'a KvData, start: usize, len: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
    match data.as_f32() {
        Some(values) => &values[start..start + len],
        None => {
            buf.resize(len, 0.0);
            data.read_f32(start, buf);
            buf
        }
    }
}

/// K of a key tile packed for Q·Kᵀ, so a vector load takes one dimension of consecutive keys:
/// the `ld` columns (keys, zero past `nk`) in blocks of `cols` (the last one what is left), each
/// block a `[d][w]` row-major stretch, blocks one after another. Key `j` of dimension `p` in the
/// block starting at column `b` is at `kt[b·d + p·w + (j − b)]`; `cols ≥ ld` is plain `[d][ld]`.
fn pack_transposed(k: &[f32], (nk, d, ld): (usize, usize, usize), cols: usize, kt: &mut [f32]) {
    for (b, w) in column_blocks(ld, cols) {
        let keys = nk.saturating_sub(b).min(w); // real keys in this block, zeros after them
        let block = &mut kt[b * d..(b + w) * d];
        for (p, dst) in block.chunks_exact_mut(w).enumerate() {
            for (j, slot) in dst[..keys].iter_mut().enumerate() {
                *slot = k[(b + j) * d + p];
            }
            dst[keys..].fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_k_blocks_hold_every_key_and_dimension_where_the_layout_says() {
        // (keys, dims, padded width, block width): whole blocks, a narrower last block, one
        // block wider than the panel (the plain [d][ld] layout), padding past the keys, a
        // block of padding only.
        for (nk, d, ld, cols) in [
            (128, 8, 128, 32),
            (37, 5, 48, 32),
            (20, 3, 32, usize::MAX),
            (20, 4, 64, 32),
        ] {
            let k: Vec<f32> = (0..nk * d).map(|i| i as f32 + 1.0).collect();
            let mut kt = vec![f32::NAN; d * ld];
            pack_transposed(&k, (nk, d, ld), cols, &mut kt);
            for j in 0..ld {
                let b = j - j % cols.min(ld);
                let w = cols.min(ld - b);
                for p in 0..d {
                    let want = if j < nk { k[j * d + p] } else { 0.0 };
                    assert_eq!(kt[b * d + p * w + (j - b)], want, "key {j} dim {p}");
                }
            }
        }
    }

    #[test]
    fn packed_v_blocks_hold_every_key_and_column_where_the_layout_says() {
        // Rows 3..3 + nk of head 1 (of 2, 40 rows each); f32 and bf16 storage.
        let (rows, nk, start) = (40, 29, 3);
        for (d, cols) in [(80, 64), (64, 64), (24, 16), (10, usize::MAX)] {
            let values: Vec<f32> = (0..2 * rows * d).map(|i| (i % 251) as f32).collect();
            let bf16 = values.iter().map(|&x| half::bf16::from_f32(x)).collect();
            for v in [KvData::F32(values.clone()), KvData::Bf16(bf16)] {
                let mut dst = vec![f32::NAN; nk * d];
                pack_v_f32(&v, 1, rows, start, (nk, d), cols, &mut dst);
                for c in 0..d {
                    let b = c - c % cols.min(d);
                    let w = cols.min(d - b);
                    for j in 0..nk {
                        let want = values[((rows + start + j) * d) + c];
                        assert_eq!(dst[b * nk + j * w + (c - b)], want, "key {j} column {c}");
                    }
                }
            }
        }
    }

    #[test]
    fn warm_up_leaves_the_packing_buffers_of_the_first_call_in_the_pool() {
        use crate::{positions::Positions, source::Synthetic, tensor::KvBlock};
        // An odd shape: 1 KV head × 997 rows × d 13 (no other test packs it).
        let kv = KvBlock::from_source(
            &Synthetic { seed: 2 },
            0,
            1,
            13,
            Positions::contiguous(0, 997),
        )
        .unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let tile = TileShape { q: 64, k: 64 };
        super::super::warm_up(&kv, tile, &pool);
        let (v_len, slack) = (997 * 13, 16);
        let held = f32::pool()
            .lock()
            .unwrap()
            .iter()
            .any(|b| (v_len + slack..=2 * (v_len + slack)).contains(&b.capacity()));
        assert!(held, "the V buffer of this shape waits in the pool");
    }
}
