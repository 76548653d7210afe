//! The `docs` layout: whole documents per rank, balanced by their causal cost (Llama 3 /
//! ring-flash-attention's varlen idea), and only the documents too long to balance split.
//!
//! With many short documents the work is a set of small triangles. Per-document zigzag
//! ([`crate::DocZigzag`]) cuts every document in 2P chunks, so every tile of a short document
//! is a thin slice that still costs a whole tile. Here short documents stay whole: cut, in
//! position order, into P consecutive groups of near-equal predicted cost (∝ len² plus the
//! diagonal band of partial tiles), so a rank's tiles are its own documents' triangles and never
//! span another rank's documents (a tile's work is decided by the span of its positions). A
//! document longer than N / P, or costing more than a rank's fair share (when its 2P chunks are
//! at least [`MIN_CHUNK`] tokens), cannot be balanced whole: it is split per-document zigzag over
//! all ranks, an equal share of its triangle each.
//! Rank token counts may differ.
//!
//! On heavy-tailed lengths that assignment can still compute more tiles than plain blocks (a
//! split document's chunks share tiles with a rank's whole documents), so the layout counts the
//! tiles of its assignment, of contiguous and of zigzag under the mask and uses the one whose
//! busiest rank computes least (see [`crate::doc_pick`]): never worse than either.

use crate::doc_layout::chunk;
use crate::doc_pick::{choose, Pick, PickCache};
use crate::Zigzag;
use ringattn_ring::{Contiguous, Layout};
use ringattn_runtime::{Documents, Mask, Positions, Run, TileShape};

/// Whole documents in cost-balanced consecutive groups, long ones split per-document zigzag,
/// or contiguous / zigzag blocks when those compute fewer tiles (see the module).
#[derive(Clone, Debug)]
pub struct DocBalance {
    docs: Option<Documents>,
    /// The mask the candidates are costed under (documents, causality, window).
    mask: Mask,
    pick: PickCache,
}

impl DocBalance {
    /// The layout of these documents under a causal mask within each document (their packed
    /// lengths should add up to the sequence; documents past it are cut at it). `None`: the
    /// whole sequence is one document.
    pub fn new(docs: Option<Documents>) -> Self {
        let mask = Mask::span(true, None, docs.clone());
        DocBalance {
            docs,
            mask,
            pick: PickCache::default(),
        }
    }

    /// The layout for a run under `mask`: its documents, and its causality and window for
    /// choosing between the candidates (what `--layout docs` builds).
    pub fn for_mask(mask: &Mask) -> Self {
        DocBalance {
            docs: mask.docs().cloned(),
            mask: mask.clone(),
            pick: PickCache::default(),
        }
    }

    /// The candidate used at this world and sequence, costed at the default tiles.
    fn pick(&self, world: usize, seq: usize) -> Pick {
        self.pick.get(world, seq, || {
            let balanced = |r| self.balanced(r, world, seq);
            choose(world, seq, &self.mask, TileShape::default(), balanced)
        })
    }

    /// The documents as `(start, len)` cut at `seq`.
    fn spans(&self, seq: usize) -> Vec<(usize, usize)> {
        let Some(docs) = &self.docs else {
            return vec![(0, seq)];
        };
        let starts = docs.starts();
        starts
            .iter()
            .enumerate()
            .take_while(|&(_, &s)| s < seq)
            .map(|(i, &s)| {
                let e = starts.get(i + 1).map_or(seq, |&e| e.min(seq));
                (s, e - s)
            })
            .collect()
    }

    /// The owner of every document: `Some(rank)` for a whole one, `None` for a split one.
    /// Whole documents are cut, in position order, into P consecutive groups of near-equal
    /// cost (a document goes to the rank its cost's midpoint falls in), so each rank's
    /// documents are adjacent and its tiles never span another rank's documents.
    /// Deterministic, so every rank computes the same assignment.
    fn owners(&self, world: usize, seq: usize) -> Vec<Option<usize>> {
        let world = world.max(1);
        let spans = self.spans(seq);
        let fair = spans.iter().map(|&(_, l)| cost(l)).sum::<f64>() / world as f64;
        let block = seq.div_ceil(world);
        // Chunks thinner than a tile would cost whole tiles anyway: such a document stays
        // whole unless it is longer than a rank's block.
        let thick = |len: usize| len >= 2 * world * MIN_CHUNK;
        let split = |len: usize| world > 1 && (len > block || (cost(len) > fair && thick(len)));
        let whole: f64 = spans
            .iter()
            .filter(|&&(_, l)| !split(l))
            .map(|&(_, l)| cost(l))
            .sum();
        let mut before = 0.0;
        spans
            .iter()
            .map(|&(_, len)| {
                if split(len) {
                    return None;
                }
                let mid = before + cost(len) / 2.0;
                before += cost(len);
                let rank = (mid / whole.max(f64::MIN_POSITIVE) * world as f64) as usize;
                Some(rank.min(world - 1))
            })
            .collect()
    }
}

/// Fewest tokens per chunk of a split document (the default tile's query rows): a document
/// costing more than a rank's fair share is split only if its 2P chunks are this long.
pub const MIN_CHUNK: usize = 256;

/// Predicted causal cost of a document of `len` tokens, in (query, key) pairs: its triangle
/// (len² / 2) plus the band of partially masked tiles along its diagonal, about 384 keys per
/// query at the default 256 × 128 tiles — so many tiny documents are not free.
fn cost(len: usize) -> f64 {
    let len = len as f64;
    len * (len / 2.0 + 384.0)
}

impl Layout for DocBalance {
    fn name(&self) -> &'static str {
        "docs"
    }

    /// The chosen candidate's positions (see the module).
    fn positions(&self, rank: usize, world: usize, seq: usize) -> Positions {
        match self.pick(world, seq) {
            Pick::Balanced => self.balanced(rank, world, seq),
            Pick::Contiguous => Contiguous.positions(rank, world, seq),
            Pick::Zigzag => Zigzag.positions(rank, world, seq),
        }
    }

    /// Decoded tokens belong to the last document: its owner when it is whole, else the owner
    /// of its last chunk (rank 0, as in zigzag); the chosen block layout's owner otherwise.
    /// One assignment, not a search over the ranks.
    fn decode_owner(&self, pos: usize, world: usize, seq: usize) -> usize {
        match self.pick(world, seq) {
            Pick::Balanced => match self.owners(world, seq).last() {
                Some(Some(rank)) => *rank,
                _ => 0,
            },
            Pick::Contiguous => Contiguous.decode_owner(pos, world, seq),
            Pick::Zigzag => Zigzag.decode_owner(pos, world, seq),
        }
    }
}

impl DocBalance {
    /// The balanced assignment: the rank's whole documents and its chunks r and 2P − 1 − r of
    /// every split document, in position order.
    fn balanced(&self, rank: usize, world: usize, seq: usize) -> Positions {
        let parts = 2 * world.max(1);
        let owners = self.owners(world, seq);
        let mut runs = Vec::new();
        for ((start, len), owner) in self.spans(seq).into_iter().zip(owners) {
            let pieces = match owner {
                Some(r) if r == rank => vec![(start, len)],
                Some(_) => Vec::new(),
                None => vec![
                    chunk(start, len, parts, rank),
                    chunk(start, len, parts, parts - 1 - rank),
                ],
            };
            runs.extend(pieces.into_iter().map(|(start, len)| Run {
                start,
                len,
                stride: 1,
            }));
        }
        Positions::new(runs).expect("document pieces are disjoint and increasing")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The balanced assignment of every rank (what the candidate choice may replace).
    fn all(layout: &DocBalance, world: usize, seq: usize) -> Vec<Vec<usize>> {
        (0..world)
            .map(|r| layout.balanced(r, world, seq).iter().collect())
            .collect()
    }

    #[test]
    fn every_token_once_with_whole_short_documents() {
        let lens: Vec<usize> = [1, 9, 16, 3, 40, 2, 2, 7].iter().map(|l| l * 64).collect();
        let seq: usize = lens.iter().sum();
        let layout = DocBalance::new(Some(Documents::from_lengths(&lens).unwrap()));
        for world in 1..=6 {
            let mut seen = vec![0u8; seq];
            for p in all(&layout, world, seq).into_iter().flatten() {
                seen[p] += 1;
            }
            assert!(seen.iter().all(|&c| c == 1), "P={world}");
            // The chosen candidate covers every token once too.
            let mut seen = vec![0u8; seq];
            for r in 0..world {
                layout
                    .positions(r, world, seq)
                    .iter()
                    .for_each(|p| seen[p] += 1);
            }
            assert!(seen.iter().all(|&c| c == 1), "P={world}");
            let last = layout.decode_owner(seq, world, seq);
            assert!(layout
                .positions(last, world, seq)
                .local_index(seq - 1)
                .is_some());
        }
        // P = 2: the 2560-token document [1856, 4416) is not longer than N / P = 2560, but its
        // cost exceeds the fair share and its chunks are thick: split, 1280 tokens each. The
        // rest go whole in two consecutive groups of near-equal cost.
        let ranks = all(&layout, 2, seq);
        let long = 1856..4416;
        assert_eq!(
            ranks[0].iter().filter(|&&p| long.contains(&p)).count(),
            1280
        );
        let whole = |r: usize| -> Vec<usize> {
            ranks[r]
                .iter()
                .copied()
                .filter(|p| !long.contains(p))
                .collect()
        };
        assert_eq!(whole(0), (0..1664).collect::<Vec<_>>());
        assert_eq!(whole(1), (1664..1856).chain(4416..5120).collect::<Vec<_>>());
        // Scaled down 64×, the long document's chunks would be thinner than a tile: it stays
        // whole (on one rank).
        let small = [1, 9, 16, 3, 40, 2, 2, 7];
        let layout = DocBalance::new(Some(Documents::from_lengths(&small).unwrap()));
        let owners: Vec<usize> = all(&layout, 2, 80)
            .iter()
            .map(|pos| pos.iter().filter(|&&p| (29..69).contains(&p)).count())
            .collect();
        assert!(owners == [40, 0] || owners == [0, 40], "{owners:?}");
    }

    #[test]
    fn equal_documents_go_whole_and_evenly() {
        let layout = DocBalance::new(Some(Documents::from_lengths(&[8; 8]).unwrap()));
        let ranks = all(&layout, 4, 64);
        for (r, pos) in ranks.iter().enumerate() {
            assert_eq!(pos.len(), 16, "rank {r}");
            // Two whole documents, each 8 adjacent tokens starting on a document boundary.
            assert!(pos.chunks(8).all(|d| d[0] % 8 == 0 && d[7] == d[0] + 7));
        }
    }
}
