//! A document-aware layout for packed documents: per-document zigzag (ring-flash-attention's
//! varlen zigzag, Llama 3 context parallelism with documents).
//!
//! Striped and zigzag balance ONE causal triangle; with many short documents the work is a set
//! of small triangles, and cutting the whole sequence in 2P chunks leaves a rank with whole
//! documents (contiguous) or splits documents without regard to their triangles. Here every
//! document is cut in 2P near-equal chunks and rank r owns chunks r and 2P − 1 − r of EVERY
//! document: each rank gets an equal share of each triangle (and of each window), so the
//! computed tiles even out whatever the length distribution, and KV blocks are pruned by the
//! ring pass per document.

use ringattn_ring::Layout;
use ringattn_runtime::{Documents, Positions, Run};

/// Per-document zigzag over `docs` (their packed lengths must add up to the sequence).
#[derive(Clone, Debug)]
pub struct DocZigzag {
    docs: Documents,
}

impl DocZigzag {
    /// The layout of these documents.
    pub fn new(docs: Documents) -> Self {
        DocZigzag { docs }
    }
}

/// Start and length of chunk `i` of `parts` near-equal chunks of `[start, start + len)`.
pub(crate) fn chunk(start: usize, len: usize, parts: usize, i: usize) -> (usize, usize) {
    let (base, extra) = (len / parts, len % parts);
    (
        start + i * base + i.min(extra),
        base + usize::from(i < extra),
    )
}

impl Layout for DocZigzag {
    fn name(&self) -> &'static str {
        "doc-zigzag"
    }

    /// Chunks r and 2P − 1 − r of every document (documents past `seq` are cut at `seq`).
    fn positions(&self, rank: usize, world: usize, seq: usize) -> Positions {
        let parts = 2 * world.max(1);
        let starts = self.docs.starts();
        let mut runs = Vec::with_capacity(2 * starts.len());
        for (i, &s) in starts.iter().enumerate() {
            if s >= seq {
                break;
            }
            let e = starts.get(i + 1).map_or(seq, |&e| e.min(seq));
            for c in [rank, parts - 1 - rank] {
                let (start, len) = chunk(s, e - s, parts, c);
                runs.push(Run {
                    start,
                    len,
                    stride: 1,
                });
            }
        }
        Positions::new(runs).expect("document chunks are disjoint and increasing")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_once_and_each_document_shared() {
        let docs = Documents::from_lengths(&[1, 9, 16, 3, 40]).unwrap();
        let layout = DocZigzag::new(docs);
        for world in 1..=5 {
            let mut seen = [0u8; 69];
            for rank in 0..world {
                layout
                    .positions(rank, world, 69)
                    .iter()
                    .for_each(|p| seen[p] += 1);
            }
            assert!(seen.iter().all(|&c| c == 1), "P={world}");
        }
        let p = DocZigzag::new(Documents::from_lengths(&[8, 8]).unwrap()).positions(1, 2, 16);
        assert_eq!(
            p.iter().collect::<Vec<_>>(),
            vec![2, 3, 4, 5, 10, 11, 12, 13]
        );
    }
}
