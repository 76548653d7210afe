//! The candidate the `docs` layout ([`crate::DocBalance`]) uses for a given world and sequence:
//! its own assignment (whole documents, long ones split), or plain contiguous or zigzag
//! blocks, whichever gives the busiest rank the fewest computed tiles under the mask.
//!
//! Whole-document groups are balanced by a predicted cost, but a tile's work is decided by the
//! span of its positions: on heavy-tailed lengths a split document's chunks sit among a rank's
//! whole documents and its tiles span the gap, so the assignment can compute more than plain
//! blocks. Counting the tiles of each candidate (the partitioner's `count_tiles`, the same rule
//! the kernel classifies by) and keeping the smallest busiest rank makes the `docs` layout
//! never worse than contiguous or zigzag, by the same measure `auto` and the benches use.

use std::sync::{Arc, Mutex};

use ringattn_ring::{Contiguous, Layout};
use ringattn_runtime::{count_tiles, Mask, Positions, TileShape};

use crate::Zigzag;

/// Which assignment the `docs` layout uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Whole documents in cost-balanced groups, long ones split per-document zigzag.
    Balanced,
    /// Contiguous blocks of N / P.
    Contiguous,
    /// Zigzag chunks r and 2P − 1 − r.
    Zigzag,
}

/// Most tile classifications spent choosing (three candidates, P² block pairs each); above it
/// the balanced assignment is kept without counting.
pub const MAX_PICK_TILE_WORK: u128 = 1 << 24;

/// The choice, computed once per (world, seq) and shared by clones (every rank of a local
/// run asks with the same sizes; the choice is deterministic, so MPI ranks agree).
#[derive(Clone, Debug, Default)]
pub(crate) struct PickCache(Arc<Mutex<Option<(usize, usize, Pick)>>>);

impl PickCache {
    /// The cached pick for `(world, seq)`, else `choose()` (then cached).
    pub(crate) fn get(&self, world: usize, seq: usize, choose: impl FnOnce() -> Pick) -> Pick {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match *slot {
            Some((w, s, pick)) if (w, s) == (world, seq) => pick,
            _ => {
                let pick = choose();
                *slot = Some((world, seq, pick));
                pick
            }
        }
    }
}

/// True when counting every candidate's tiles stays under [`MAX_PICK_TILE_WORK`].
pub(crate) fn affordable(world: usize, seq: usize, tile: TileShape) -> bool {
    let p = world as u128;
    let rows = (seq as u128).div_ceil(p.max(1)) + 1;
    let (qt, kt) = (
        rows.div_ceil(tile.q.max(1) as u128),
        rows.div_ceil(tile.k.max(1) as u128),
    );
    3 * p * p * qt * kt <= MAX_PICK_TILE_WORK
}

/// The busiest rank's computed (Full + Partial) tiles over the whole ring, per query head.
pub fn busiest_rank_tiles(pos: &[Positions], mask: &Mask, tile: TileShape) -> u64 {
    pos.iter()
        .map(|q| {
            pos.iter()
                .map(|k| count_tiles(q, k, mask.clone(), tile).computed())
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0)
}

/// The candidate with the fewest busiest-rank tiles (ties: balanced, then contiguous, then
/// zigzag); `balanced(rank)` gives the balanced assignment's positions.
pub(crate) fn choose(
    world: usize,
    seq: usize,
    mask: &Mask,
    tile: TileShape,
    balanced: impl Fn(usize) -> Positions,
) -> Pick {
    if world <= 1 || !affordable(world, seq, tile) {
        return Pick::Balanced;
    }
    let all = |f: &dyn Fn(usize) -> Positions| (0..world).map(f).collect::<Vec<_>>();
    let cands = [
        (Pick::Balanced, all(&balanced)),
        (
            Pick::Contiguous,
            all(&|r| Contiguous.positions(r, world, seq)),
        ),
        (Pick::Zigzag, all(&|r| Zigzag.positions(r, world, seq))),
    ];
    let mut best = (Pick::Balanced, u64::MAX);
    for (pick, pos) in &cands {
        let cost = busiest_rank_tiles(pos, mask, tile);
        if cost < best.1 {
            best = (*pick, cost);
        }
    }
    best.0
}
