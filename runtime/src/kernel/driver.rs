//! The per-item loop shared by every instruction set: walk the key tiles of a block, classify,
//! compute scores from the K panels packed once per call ([`super::pack`]), blank forbidden
//! ranges of Partial tiles, online softmax, P·V.
//!
//! The arithmetic is delegated to a [`Micro`] implementation (portable, AVX2, AVX-512), so the
//! tile logic exists once and the SIMD code stays small.

use crate::mask::{Mask, TileClass};
use crate::tensor::{KvBlock, KvData, QShard};

use super::pack::{pack_transposed, PackedK};
use super::{TileCounts, TileShape};

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
        let v_tile = packed.v_tile(kv_head, ka, nk, dim, kp);
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
