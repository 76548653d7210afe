//! One (head, query tile) item on the AMX tiles: the same tile walk as the other paths
//! ([`crate::kernel::driver::process_item`]), with split operands and tile products.

use crate::kernel::driver::{AlignedBuf, Item, PartialBlanker};
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
            rows,
            ld,
        }
    }
}

/// Runs one item over every key tile of `kv` (whose K and V `packed` holds).
///
/// Per key tile, row block by row block (32 rows): scores on the tiles, online softmax and
/// split on AVX-512, P·V on the tiles. The softmax of block `b` runs interleaved with the
/// score products of block `b + 1` ([`tiles::scores`]' `between`), so the vector units and
/// the tile unit work at the same time.
#[allow(clippy::too_many_arguments)]
pub(crate) fn process_item(
    _proof: Amx,
    q: &QShard,
    kv: &KvBlock,
    packed: &PackedAmx,
    mask: Mask,
    tile: TileShape,
    item: &mut Item<'_>,
    s: &mut Scratch,
) -> TileCounts {
    let d = q.dim;
    assert!(Amx::supports_dim(d) && packed.dim == d && packed.ld == s.ld);
    let scale = 1.0 / (d as f32).sqrt();
    let (q_rows, k_rows) = (q.rows(), kv.rows());
    let (qa, nq) = (item.q_start, item.m.len());
    assert!(nq <= s.rows);
    let blocks = nq.div_ceil(BLOCK);
    let kv_head = item.head / (q.heads / kv.kv_heads);
    let q_tile = &q.data[(item.head * q_rows + qa) * d..(item.head * q_rows + qa + nq) * d];
    let (q_lo, q_hi) = (q.positions.get(qa), q.positions.get(qa + nq - 1));
    let ld = s.ld;
    let mut counts = TileCounts::default();
    let mut active: Option<ActiveTiles> = None;
    for (t, ka) in (0..k_rows).step_by(tile.k).enumerate() {
        let nk = tile.k.min(k_rows - ka);
        let (k_lo, k_hi) = (kv.positions.get(ka), kv.positions.get(ka + nk - 1));
        let class = mask.classify(q_lo, q_hi, k_lo, k_hi);
        match class {
            TileClass::Empty => {
                counts.empty += 1;
                continue;
            }
            TileClass::Full => counts.full += 1,
            TileClass::Partial => counts.partial += 1,
        }
        if active.is_none() {
            start_item(q_tile, nq, blocks * BLOCK, d, item.acc, s);
            // SAFETY: an `Amx` exists only when the CPU has AMX and the permission was granted.
            active = Some(unsafe { ActiveTiles::configure() });
        }
        let cols = nk.next_multiple_of(32);
        let (k_panel, v_panel) = packed.panels(kv_head, t);
        let q_size = s.rows * d;
        let q_parts = s.q.as_slice().as_ptr();
        let q_block =
            |b: usize| [0, 1, 2].map(|p| q_parts.wrapping_add(p * q_size + b * BLOCK * d));
        let scores_ptr = s.s.as_mut_slice().as_mut_ptr();
        let slot_scores = |b: usize| scores_ptr.wrapping_add((b % 2) * BLOCK * ld);
        let p_ptr = s.p.as_mut_slice().as_mut_ptr();
        let slot_probs =
            |b: usize| [0, 1, 2].map(|p| p_ptr.wrapping_add(((p * 2) + b % 2) * BLOCK * ld));
        let o_ptr = s.o.as_mut_slice().as_mut_ptr();
        let steps = tiles::score_steps(BLOCK, cols, d, packed.parts);
        // SAFETY (every `unsafe` below): tiles are configured on this thread (`active`), and
        // AVX-512F/BW are present (an `Amx` exists); d is a multiple of 32; each block has 32
        // rows inside the scratch (blocks·32 ≤ s.rows), cols ≤ ld; the panels hold
        // [d/2][ld][2] and [ld/2][d][2] per part; score and probability slots hold 32 × ld.
        unsafe {
            let parts = packed.parts;
            tiles::scores(
                q_block(0),
                d,
                BLOCK,
                k_panel,
                parts,
                ld,
                cols,
                slot_scores(0),
                || {},
            );
            for b in 0..blocks {
                let (r0, nr) = (b * BLOCK, BLOCK.min(nq - b * BLOCK));
                let block_scores = std::slice::from_raw_parts_mut(slot_scores(b), nr * ld);
                if class == TileClass::Partial {
                    let (q_range, k_range) = ((qa + r0, nr), (ka, nk));
                    s.blanker
                        .blank(mask, q, kv, q_range, k_range, block_scores, ld);
                }
                let mut softmax = BlockSoftmax {
                    scores: slot_scores(b),
                    probs: slot_probs(b),
                    o: o_ptr.add(r0 * d),
                    m: &mut item.m[r0..r0 + nr],
                    l: &mut item.l[r0..r0 + nr],
                    done: 0,
                    nk,
                    cols,
                    ld,
                    d,
                    scale,
                };
                if b + 1 < blocks {
                    let mut step = 0;
                    let next = (q_block(b + 1), slot_scores(b + 1));
                    tiles::scores(next.0, d, BLOCK, k_panel, parts, ld, cols, next.1, || {
                        step += 1;
                        softmax.rows_until((step * nr).div_ceil(steps));
                    });
                }
                softmax.rows_until(nr);
                let o = o_ptr.add(r0 * d);
                let probs = slot_probs(b).map(|p| p.cast_const());
                tiles::accumulate(probs, ld, BLOCK, cols / 32, v_panel, parts, d, o);
            }
        }
    }
    if active.take().is_some() {
        item.acc.copy_from_slice(&s.o.as_slice()[..nq * d]);
    }
    counts
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
