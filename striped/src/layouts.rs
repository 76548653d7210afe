//! Causal-balanced layouts: Striped Attention's round robin and Megatron/Llama-3 zigzag.

use ringattn_ring::Layout;
use ringattn_runtime::{Positions, Run};

/// Striped Attention: token i goes to rank i mod P (one run of stride P). Under a causal mask
/// every step gives every rank a near-triangle, so work is balanced and the ideal speedup over
/// contiguous tends to 2.
#[derive(Clone, Copy, Debug, Default)]
pub struct Striped;

impl Layout for Striped {
    fn name(&self) -> &'static str {
        "striped"
    }

    fn positions(&self, rank: usize, world: usize, seq: usize) -> Positions {
        let count = if rank < seq {
            (seq - rank).div_ceil(world)
        } else {
            0
        };
        Positions::strided(rank, count, world)
    }

    /// Round robin continues through decoding: position `pos` goes to rank `pos mod P`, so the
    /// KV cache stays balanced.
    fn decode_owner(&self, pos: usize, world: usize, _seq: usize) -> usize {
        pos % world.max(1)
    }
}

/// Zigzag (Megatron-LM / Llama 3 context parallel): the sequence is cut into 2P near-equal
/// chunks and rank r owns chunks r and 2P−1−r (two stride-1 runs), balanced under a causal mask
/// while keeping contiguous chunks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Zigzag;

impl Layout for Zigzag {
    fn name(&self) -> &'static str {
        "zigzag"
    }

    fn positions(&self, rank: usize, world: usize, seq: usize) -> Positions {
        // 2P chunks, in u128: 2P may pass usize::MAX (then most chunks are empty).
        let chunk = |i: u128| {
            let (n, parts) = (seq as u128, 2 * world as u128);
            let (base, extra) = (n / parts, n % parts);
            // Both fit in usize: start <= n and len <= n.
            (
                (i * base + i.min(extra)) as usize,
                (base + u128::from(i < extra)) as usize,
            )
        };
        let (a_start, a_len) = chunk(rank as u128);
        let (b_start, b_len) = chunk(2 * world as u128 - 1 - rank as u128);
        Positions::new([
            Run {
                start: a_start,
                len: a_len,
                stride: 1,
            },
            Run {
                start: b_start,
                len: b_len,
                stride: 1,
            },
        ])
        .expect("zigzag chunks are disjoint and increasing")
    }

    /// The owner of the last prefill token, in O(1): it lies in the last non-empty of the 2P
    /// chunks, `c = min(seq, 2P) − 1`, owned by rank `c` (first half) or `2P − 1 − c`.
    fn decode_owner(&self, _pos: usize, world: usize, seq: usize) -> usize {
        let parts = 2 * world as u128;
        let c = (seq as u128).min(parts).saturating_sub(1);
        let rank = if c < world as u128 { c } else { parts - 1 - c };
        rank as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringattn_ring::Contiguous;

    #[test]
    fn every_layout_covers_each_token_exactly_once() {
        let layouts: [&dyn Layout; 3] = [&Contiguous, &Striped, &Zigzag];
        for layout in layouts {
            for world in 1..=8 {
                for seq in [world, world + 1, 37, 1000, 4099] {
                    let mut seen = vec![0u8; seq];
                    for rank in 0..world {
                        let p = layout.positions(rank, world, seq);
                        assert!(
                            !p.is_empty(),
                            "{} P={world} N={seq} rank {rank} empty",
                            layout.name()
                        );
                        p.iter().for_each(|i| seen[i] += 1);
                    }
                    assert!(
                        seen.iter().all(|&c| c == 1),
                        "{} P={world} N={seq}",
                        layout.name()
                    );
                }
            }
        }
    }

    #[test]
    fn zigzag_owns_mirrored_chunks() {
        let p = Zigzag.positions(1, 4, 16);
        assert_eq!(p.iter().collect::<Vec<_>>(), vec![2, 3, 12, 13]);
        let s = Striped.positions(2, 4, 10);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![2, 6]);
    }

    #[test]
    fn decode_owners_follow_each_layout() {
        // Striped continues the round robin; zigzag appends to rank 0, which owns the last chunk.
        assert_eq!(
            (10..14)
                .map(|p| Striped.decode_owner(p, 4, 10))
                .collect::<Vec<_>>(),
            [2, 3, 0, 1]
        );
        assert_eq!(Zigzag.decode_owner(16, 4, 16), 0);
        assert!(Zigzag.positions(0, 4, 16).local_index(15).is_some());
        assert_eq!(Zigzag.decode_owner(37, 3, 37), 0);
        assert_eq!(Contiguous.decode_owner(37, 3, 37), 2);
    }
}
