//! One (head, query tile) item on the AMX tiles: the same tile walk as the other paths
//! ([`crate::kernel::driver::process_item`]), with split operands and tile products.

use crate::kernel::driver::{computed_key_tiles, AlignedBuf, Item, PartialBlanker};
use crate::kernel::{TileCounts, TileShape};
use crate::mask::{Mask, TileClass};
use crate::tensor::{KvBlock, QShard};

use super::split::{softmax_split_row, split_row_avx512, PARTS};
use super::tiles::{self, ActiveTiles};
use super::{Amx, PackedAmx};

/// Rows per block: the tile products work on 2×2 tiles of 16 rows.
const BLOCK: usize = 32;

/// Per-thread buffers, allocated once per call and thread. Query rows are padded to 32 (the
/// 2×2 tile block); padding rows are kept finite and never copied out. Scores and split
/// probabilities exist for two 32-row blocks at a time (one being computed, one in softmax),
/// so they stay in L1.
pub(crate) struct Scratch {
    /// Query rows split: `[part][rows][d]`.
    q: AlignedBuf<u16>,
    /// Scores of two row blocks: `[slot][32][ld]`.
    s: AlignedBuf<f32>,
    /// Probabilities of two row blocks, split: `[part][slot][32][ld]`.
    p: AlignedBuf<u16>,
    /// The item's output accumulator while it runs: `[rows][d]`.
    o: AlignedBuf<f32>,
    blanker: PartialBlanker,
    /// The row blocks of the current key tile that compute something (reused, not reallocated).
    todo: Vec<BlockCols>,
    rows: usize,
    ld: usize,
}

impl Scratch {
    pub(crate) fn new(tile: TileShape, d: usize) -> Self {
        let (rows, ld) = (tile.q.next_multiple_of(BLOCK), tile.k.next_multiple_of(32));
        Scratch {
            q: AlignedBuf::zeroed(PARTS * rows * d),
            s: AlignedBuf::zeroed(2 * BLOCK * ld),
            p: AlignedBuf::zeroed(PARTS * 2 * BLOCK * ld),
            o: AlignedBuf::zeroed(rows * d),
            blanker: PartialBlanker::new(TileShape {
                q: BLOCK,
                k: tile.k,
            }),
            todo: Vec::with_capacity(rows / BLOCK),
            rows,
            ld,
        }
    }
}

/// Runs one item over every key tile of `kv` (whose K and V `packed` holds).
///
/// Per key tile, row block by row block (32 rows): scores on the tiles, online softmax and
/// split on AVX-512, P·V on the tiles. Each row block computes only the 32-key chunks its
/// mask lets it see (a causal diagonal or a streaming window is cut at 32 × 32, not at the
/// tile), and the softmax of one block runs interleaved with the tile products of its
/// neighbours (see [`KeyTile::run`]), so the vector units and the tile unit work at once.
#[allow(clippy::too_many_arguments)]
pub(crate) fn process_item(
    _proof: Amx,
    q: &QShard,
    kv: &KvBlock,
    packed: &PackedAmx,
    mask: &Mask,
    tile: TileShape,
    item: &mut Item<'_>,
    s: &mut Scratch,
) -> TileCounts {
    let d = q.dim;
    assert!(Amx::supports_dim(d) && packed.dim == d && packed.ld == s.ld);
    let q_rows = q.rows();
    let (qa, nq) = (item.q_start, item.m.len());
    assert!(nq <= s.rows);
    let blocks = nq.div_ceil(BLOCK);
    let kv_head = item.head / (q.heads / kv.kv_heads);
    let q_tile = &q.data[(item.head * q_rows + qa) * d..(item.head * q_rows + qa + nq) * d];
    let mut counts = TileCounts::default();
    let mut active: Option<ActiveTiles> = None;
    let mut todo = std::mem::take(&mut s.todo);
    for (t, ka, nk, class) in computed_key_tiles(q, kv, mask, tile, (qa, nq), &mut counts) {
        todo.clear();
        for b in 0..blocks {
            let rows = (qa + b * BLOCK, BLOCK.min(nq - b * BLOCK));
            if let Some(chunks) = live_chunks(mask, class, q, kv, rows, (ka, nk)) {
                todo.push(BlockCols { block: b, chunks });
            }
        }
        if todo.is_empty() {
            continue;
        }
        if active.is_none() {
            start_item(q_tile, nq, blocks * BLOCK, d, item.acc, s);
            // SAFETY: an `Amx` exists only when the CPU has AMX and the permission was granted.
            active = Some(unsafe { ActiveTiles::configure() });
        }
        let key_tile = KeyTile {
            panels: packed.panels(kv_head, t),
            parts: packed.parts,
            keys: (ka, nk),
            class,
        };
        // SAFETY: tiles are configured on this thread (`active`); the rest is `run`'s contract,
        // which the scratch sizes and the packed panels meet.
        unsafe { key_tile.run(mask, q, kv, qa, item, s, &todo) };
    }
    if active.take().is_some() {
        item.acc.copy_from_slice(&s.o.as_slice()[..nq * d]);
    }
    s.todo = todo;
    counts
}

/// A row block and the 32-key chunks `[chunks.0, chunks.1)` of the key tile it computes.
#[derive(Clone, Copy)]
struct BlockCols {
    block: usize,
    chunks: (usize, usize),
}

/// The first to last 32-key chunk of a key tile (`keys` = first row, count) that the query rows
/// `rows` (first row, count) may attend, or `None` if none: chunks are classified like tiles.
fn live_chunks(
    mask: &Mask,
    class: TileClass,
    q: &QShard,
    kv: &KvBlock,
    (qa, nr): (usize, usize),
    (ka, nk): (usize, usize),
) -> Option<(usize, usize)> {
    let chunks = nk.div_ceil(32);
    if class == TileClass::Full {
        return Some((0, chunks));
    }
    let (lo, hi) = (q.positions.get(qa), q.positions.get(qa + nr - 1));
    let live = |c: &usize| {
        let (k0, k1) = (ka + c * 32, ka + nk.min(c * 32 + 32) - 1);
        mask.classify(lo, hi, kv.positions.get(k0), kv.positions.get(k1)) != TileClass::Empty
    };
    let first = (0..chunks).find(live)?;
    let last = (first..chunks).rev().find(live)?;
    Some((first, last + 1))
}

/// One key tile of an item: its packed panels and where it lies.
struct KeyTile {
    /// The K and V panels (per part) of the tile.
    panels: ([*const u16; PARTS], [*const u16; PARTS]),
    parts: usize,
    /// First key row and count.
    keys: (usize, usize),
    class: TileClass,
}

impl KeyTile {
    /// Scores, softmax and P·V of the row blocks `todo` against this key tile.
    ///
    /// # Safety
    /// Tiles configured on this thread; AVX-512F/BW present; `s` sized for the item (its
    /// query rows split by `start_item`), `d` a multiple of 32, chunks within the tile.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run(
        &self,
        mask: &Mask,
        q: &QShard,
        kv: &KvBlock,
        qa: usize,
        item: &mut Item<'_>,
        s: &mut Scratch,
        todo: &[BlockCols],
    ) {
        let (d, ld, nq) = (q.dim, s.ld, item.m.len());
        let (ka, nk) = self.keys;
        let ((k_panel, v_panel), parts) = (self.panels, self.parts);
        let q_size = s.rows * d;
        let q_parts = s.q.as_slice().as_ptr();
        let scores_ptr = s.s.as_mut_slice().as_mut_ptr();
        let p_ptr = s.p.as_mut_slice().as_mut_ptr();
        let o_ptr = s.o.as_mut_slice().as_mut_ptr();
        // Block `todo[i]` uses score and probability slot i % 2, from its first chunk on.
        let slot_scores = |i: usize, c0: usize| scores_ptr.add((i % 2) * BLOCK * ld + c0 * 32);
        let slot_probs = |i: usize, c0: usize| {
            [0, 1, 2].map(|p| p_ptr.add(((p * 2) + i % 2) * BLOCK * ld + c0 * 32))
        };
        let score = |i: usize, between: &mut dyn FnMut()| {
            let BlockCols { block, chunks } = todo[i];
            let qb = [0, 1, 2].map(|p| q_parts.add(p * q_size + block * BLOCK * d));
            let kb = k_panel.map(|p| p.add(chunks.0 * 64));
            let cols = (chunks.1 - chunks.0) * 32;
            let out = slot_scores(i, chunks.0);
            tiles::scores(qb, d, BLOCK, kb, parts, ld, cols, out, between);
        };
        let accumulate = |i: usize, between: &mut dyn FnMut()| {
            let BlockCols { block, chunks } = todo[i];
            let probs = slot_probs(i, chunks.0).map(|p| p.cast_const());
            let vb = v_panel.map(|p| p.add(chunks.0 * 16 * d * 2));
            let o = o_ptr.add(block * BLOCK * d);
            let n = chunks.1 - chunks.0;
            tiles::accumulate(probs, ld, BLOCK, n, vb, parts, d, o, between);
        };
        // Software pipeline over the row blocks: while block i's softmax runs on the vector
        // units (a few rows after each 2×2 tile step), the tile unit works on block i − 1's
        // P·V and block i + 1's scores, which do not depend on it (two slots each for scores
        // and probabilities).
        score(0, &mut || {});
        for (i, &BlockCols { block, chunks }) in todo.iter().enumerate() {
            let (r0, nr) = (block * BLOCK, BLOCK.min(nq - block * BLOCK));
            if self.class == TileClass::Partial {
                let rows = std::slice::from_raw_parts_mut(slot_scores(i, 0), nr * ld);
                s.blanker
                    .blank(mask, q, kv, (qa + r0, nr, 0..nr), (ka, nk), rows, ld);
            }
            let mut softmax = BlockSoftmax {
                scores: slot_scores(i, chunks.0),
                probs: slot_probs(i, chunks.0),
                o: o_ptr.add(r0 * d),
                m: &mut item.m[r0..r0 + nr],
                l: &mut item.l[r0..r0 + nr],
                done: 0,
                nk: nk.min(chunks.1 * 32) - chunks.0 * 32,
                cols: (chunks.1 - chunks.0) * 32,
                ld,
                d,
                scale: 1.0 / (d as f32).sqrt(),
            };
            let steps = pacing_steps(todo, i, d, parts);
            let mut step = 0;
            let mut pace = || {
                step += 1;
                softmax.rows_until((step * nr).div_ceil(steps));
            };
            if i > 0 {
                accumulate(i - 1, &mut pace);
            }
            if i + 1 < todo.len() {
                score(i + 1, &mut pace);
            }
            softmax.rows_until(nr);
        }
        accumulate(todo.len() - 1, &mut || {});
    }
}

/// Tile-unit steps that run beside block `i`'s softmax in [`KeyTile::run`]'s pipeline: block
/// i − 1's P·V and block i + 1's scores (the softmax advances a few rows after each).
fn pacing_steps(todo: &[BlockCols], i: usize, d: usize, parts: usize) -> usize {
    let chunk_count = |c: &BlockCols| c.chunks.1 - c.chunks.0;
    let prev = i.checked_sub(1).map_or(0, |p| {
        tiles::accumulate_steps(BLOCK, chunk_count(&todo[p]), d, parts)
    });
    let next = todo.get(i + 1).map_or(0, |n| {
        tiles::score_steps(BLOCK, chunk_count(n) * 32, d, parts)
    });
    prev + next
}

/// The online softmax of one row block, a few rows at a time: each row's scores become split
/// probabilities, its running max and sum are updated, and its accumulator row is rescaled.
struct BlockSoftmax<'a> {
    scores: *const f32,
    probs: [*mut u16; PARTS],
    o: *mut f32,
    m: &'a mut [f32],
    l: &'a mut [f32],
    /// Rows done so far.
    done: usize,
    nk: usize,
    cols: usize,
    ld: usize,
    d: usize,
    scale: f32,
}

impl BlockSoftmax<'_> {
    /// Processes rows up to `end` (at most the block's rows).
    ///
    /// # Safety
    /// AVX-512F/BW present; `scores` holds `m.len()` rows of `ld` floats, each `probs[p]` as
    /// many rows of `ld` u16, `o` as many rows of `d` floats; `cols ≤ ld`, `nk ≤ cols`.
    #[inline(always)]
    unsafe fn rows_until(&mut self, end: usize) {
        while self.done < end.min(self.m.len()) {
            let i = self.done;
            let dst = self.probs.map(|p| p.add(i * self.ld));
            let row = self.scores.add(i * self.ld);
            let (m, l) = (&mut self.m[i], &mut self.l[i]);
            let alpha = softmax_split_row(row, self.nk, self.cols, self.scale, m, l, dst);
            if alpha != 1.0 {
                std::slice::from_raw_parts_mut(self.o.add(i * self.d), self.d)
                    .iter_mut()
                    .for_each(|x| *x *= alpha);
            }
            self.done += 1;
        }
    }
}

/// Before an item's first computed tile: its query rows split into `s.q` (padding rows zero)
/// and its accumulator copied into `s.o`.
fn start_item(q_tile: &[f32], nq: usize, rows: usize, d: usize, acc: &[f32], s: &mut Scratch) {
    let size = s.rows * d;
    let q_parts = s.q.as_mut_slice();
    for (i, row) in q_tile.chunks_exact(d).enumerate() {
        let dst = [0, 1, 2].map(|p| q_parts[p * size + i * d..].as_mut_ptr());
        // SAFETY: AVX-512F is present whenever an `Amx` exists (this runs only on its path);
        // `row` holds d floats and each destination row d u16.
        unsafe { split_row_avx512(row.as_ptr(), d, d, dst) };
    }
    for p in 0..PARTS {
        q_parts[p * size + nq * d..p * size + rows * d].fill(0);
    }
    s.o.as_mut_slice()[..nq * d].copy_from_slice(acc);
}
