//! Tile counts of every (rank, ring step) pair, fast enough for thousands of ranks.
//!
//! The single source of truth is [`count_tiles`], the kernel's own classification. This module
//! only avoids calling it P² times:
//! - causal shortcuts: when every key position is ≤ every query position all tiles are Full,
//!   when every key is after every query all are Empty (exactly what `count_tiles` returns);
//! - translation invariance: for the causal and unmasked masks the classification compares only
//!   position differences, so the counts of (queries, keys) equal those of (queries − c,
//!   keys − c). Each shard is cut into groups of whole tiles lying in one run (plus single
//!   tiles straddling two runs); pairs of groups are memoised by (shape, shape, offset), so a
//!   striped or zigzag ring of P ranks needs a handful of `count_tiles` calls per step, not P.
//!
//! Streaming (DuoAttention) masks are not translation invariant (the sink is absolute), nor are
//! packed documents; both, and sliding windows, are always counted directly.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use ringattn_runtime::{count_tiles, Mask, Positions, TileCounts, TileShape};

use crate::partitioner::LayoutKind;

/// A pair of groups up to translation: (query group shape, key group shape, key group's first
/// position − query group's first position). Shapes are the groups' runs relative to their own
/// first position, interned once per ring.
type Key = (u32, u32, i64);

/// A run of whole tiles of a shard: either a stretch lying inside one position run, or a
/// single tile straddling two runs. Counting per pair of groups gives exactly the per-tile
/// classes of the whole shards, because the groups keep the shard's own tiling.
#[derive(Clone, Debug)]
struct Group {
    positions: Positions,
    lo: usize,
    hi: usize,
    tiles: u64,
    /// Interned shape (runs relative to `lo`).
    shape: u32,
}

/// Tile counts of `layout` over `world` ranks and `seq` tokens, memoised.
#[derive(Debug)]
pub struct TileWork {
    positions: Vec<Positions>,
    /// Each rank's shard cut in groups of query tiles / key tiles.
    q_groups: Vec<Vec<Group>>,
    k_groups: Vec<Vec<Group>>,
    /// (lo, hi, tiles) of each group, kept apart for the hot loop.
    q_bounds: Vec<Vec<(usize, usize, u64)>>,
    k_bounds: Vec<Vec<(usize, usize, u64)>>,
    mask: Mask,
    tile: TileShape,
    memo: HashMap<Key, TileCounts, BuildHasherDefault<FxHasher>>,
    last: Option<(Key, TileCounts)>,
    /// Number of `count_tiles` calls made so far (for tests and diagnostics).
    pub direct_calls: u64,
}

impl TileWork {
    /// Prepares the shards of `kind` with `world` ranks over `seq` tokens.
    pub fn new(kind: LayoutKind, world: usize, seq: usize, mask: Mask, tile: TileShape) -> Self {
        let layout = kind.build(&mask);
        let positions: Vec<Positions> = (0..world)
            .map(|r| layout.positions(r, world, seq))
            .collect();
        let (tq, tk) = (tile.q.max(1), tile.k.max(1));
        let mut shapes = HashMap::new();
        let mut q_groups: Vec<Vec<Group>> = positions.iter().map(|p| groups(p, tq)).collect();
        let mut k_groups: Vec<Vec<Group>> = positions.iter().map(|p| groups(p, tk)).collect();
        for g in q_groups.iter_mut().chain(k_groups.iter_mut()).flatten() {
            let shape: Vec<(usize, usize, usize)> = g
                .positions
                .runs()
                .iter()
                .map(|r| (r.start - g.lo, r.len, r.stride))
                .collect();
            let next = shapes.len() as u32;
            g.shape = *shapes.entry(shape).or_insert(next);
        }
        let bounds = |g: &Vec<Vec<Group>>| -> Vec<Vec<(usize, usize, u64)>> {
            g.iter()
                .map(|v| v.iter().map(|g| (g.lo, g.hi, g.tiles)).collect())
                .collect()
        };
        TileWork {
            q_bounds: bounds(&q_groups),
            k_bounds: bounds(&k_groups),
            positions,
            q_groups,
            k_groups,
            mask,
            tile,
            memo: HashMap::default(),
            last: None,
            direct_calls: 0,
        }
    }

    /// The positions of `rank`'s shard.
    pub fn positions(&self, rank: usize) -> &Positions {
        &self.positions[rank]
    }

    /// Tile counts of `rank`'s queries against `source`'s keys (one query head): always equal
    /// to `count_tiles(positions(rank), positions(source), mask, tile)`.
    pub fn counts(&mut self, rank: usize, source: usize) -> TileCounts {
        let (q, k) = (&self.positions[rank], &self.positions[source]);
        let (tq, tk) = (self.tile.q.max(1), self.tile.k.max(1));
        match self.mask {
            Mask::None => TileCounts {
                full: (q.len().div_ceil(tq) * k.len().div_ceil(tk)) as u64,
                ..TileCounts::default()
            },
            Mask::Streaming { .. } | Mask::Span(_) => {
                self.direct_calls += 1;
                count_tiles(q, k, self.mask.clone(), self.tile)
            }
            Mask::Causal => {
                let mut total = TileCounts::default();
                let (nq, nk) = (self.q_groups[rank].len(), self.k_groups[source].len());
                for gi in 0..nq {
                    let (q_lo, q_hi, q_tiles) = self.q_bounds[rank][gi];
                    for gj in 0..nk {
                        let (k_lo, k_hi, k_tiles) = self.k_bounds[source][gj];
                        // The causal shortcuts inline; only overlapping groups are counted.
                        if k_hi <= q_lo {
                            total.full += q_tiles * k_tiles;
                        } else if k_lo > q_hi {
                            total.empty += q_tiles * k_tiles;
                        } else {
                            total += self.group_counts(rank, gi, source, gj);
                        }
                    }
                }
                total
            }
        }
    }

    /// Causal counts of query group `gi` of `rank` against key group `gj` of `source`.
    fn group_counts(&mut self, rank: usize, gi: usize, source: usize, gj: usize) -> TileCounts {
        let (gq, gk) = (&self.q_groups[rank][gi], &self.k_groups[source][gj]);
        let tiles = gq.tiles * gk.tiles;
        if gk.hi <= gq.lo {
            return TileCounts {
                full: tiles,
                ..TileCounts::default()
            };
        }
        if gk.lo > gq.hi {
            return TileCounts {
                empty: tiles,
                ..TileCounts::default()
            };
        }
        let key = (gq.shape, gk.shape, gk.lo as i64 - gq.lo as i64);
        if let Some((last_key, counts)) = &self.last {
            if *last_key == key {
                return *counts;
            }
        }
        let counts = match self.memo.get(&key) {
            Some(c) => *c,
            None => {
                self.direct_calls += 1;
                let c = count_tiles(&gq.positions, &gk.positions, self.mask.clone(), self.tile);
                self.memo.insert(key, c);
                c
            }
        };
        self.last = Some((key, counts));
        counts
    }
}

/// Cuts `p` (tiled every `t` rows from row 0) into [`Group`]s.
fn groups(p: &Positions, t: usize) -> Vec<Group> {
    let n = p.len();
    let mut out = Vec::new();
    // Row ranges of the runs.
    let mut bounds = Vec::with_capacity(p.runs().len());
    let mut row = 0;
    for r in p.runs() {
        bounds.push((row, row + r.len));
        row += r.len;
    }
    let run_of = |i: usize| {
        bounds
            .iter()
            .position(|&(a, b)| i >= a && i < b)
            .unwrap_or(0)
    };
    let mut a = 0;
    while a < n {
        let ri = run_of(a);
        let run_end = bounds[ri].1;
        let tile_end = (a + t).min(n);
        let end = if tile_end > run_end {
            tile_end // one tile straddling runs
        } else {
            // Whole tiles inside this run; the shard's last tile may be short.
            let whole = a + (run_end - a) / t * t;
            if run_end == n {
                n
            } else {
                whole.max(a + t)
            }
        };
        out.push(Group {
            positions: sub_positions(p, a, end),
            lo: p.get(a),
            hi: p.get(end - 1),
            tiles: (end - a).div_ceil(t) as u64,
            shape: 0,
        });
        a = end;
    }
    out
}

/// Positions of local rows `[a, b)` of `p`.
fn sub_positions(p: &Positions, a: usize, b: usize) -> Positions {
    let mut runs = Vec::new();
    let mut row = 0;
    for r in p.runs() {
        let (lo, hi) = (a.max(row), b.min(row + r.len));
        if lo < hi {
            runs.push(ringattn_runtime::Run {
                start: r.start + (lo - row) * r.stride,
                len: hi - lo,
                stride: r.stride,
            });
        }
        row += r.len;
    }
    Positions::new(runs).expect("a slice of increasing runs is increasing")
}

/// A small multiplicative hasher (the rustc "Fx" hash): the memo keys are a few integers and
/// hashing them with SipHash would dominate the simulation of large rings.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memoised_counts_equal_count_tiles_for_every_pair() {
        let tiles = [TileShape { q: 64, k: 64 }, TileShape { q: 5, k: 3 }];
        for kind in LayoutKind::ALL {
            for mask in [
                Mask::Causal,
                Mask::None,
                Mask::Streaming {
                    sink: 4,
                    recent: 40,
                },
            ] {
                for tile in tiles {
                    for (world, seq) in [(1, 100), (3, 1000), (4, 4096), (5, 4099), (8, 777)] {
                        let mut work = TileWork::new(kind, world, seq, mask.clone(), tile);
                        let layout = kind.build(&mask);
                        for step in 0..world {
                            for rank in 0..world {
                                let source = (rank + world - step) % world;
                                let want = count_tiles(
                                    &layout.positions(rank, world, seq),
                                    &layout.positions(source, world, seq),
                                    mask.clone(),
                                    tile,
                                );
                                assert_eq!(
                                    work.counts(rank, source),
                                    want,
                                    "{kind} {mask:?} {tile:?} P={world} N={seq} r={rank} s={source}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn large_striped_ring_needs_few_direct_counts() {
        let mut work = TileWork::new(
            LayoutKind::Striped,
            256,
            1 << 20,
            Mask::Causal,
            TileShape::default(),
        );
        for step in 0..256 {
            for rank in 0..256 {
                work.counts(rank, (rank + 256 - step) % 256);
            }
        }
        assert!(
            work.direct_calls <= 2 * 256,
            "{} direct calls",
            work.direct_calls
        );
    }
}
