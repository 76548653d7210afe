//! Which tokens each rank owns, and the contiguous layout of Ring Attention.

use ringattn_runtime::Positions;

/// A partition of a sequence of `seq` tokens over `world` ranks, as global positions per rank.
///
/// Every layout must give each position to exactly one rank and describe each rank's positions
/// in increasing order; the ring pass and the kernel need nothing else.
pub trait Layout: Send + Sync + std::fmt::Debug {
    /// Name as written in reports (`contiguous`, `striped`, `zigzag`).
    fn name(&self) -> &'static str;
    /// Global positions owned by `rank`.
    fn positions(&self, rank: usize, world: usize, seq: usize) -> Positions;

    /// The rank that owns decode position `pos` (≥ `seq`) after a prefill of `seq` tokens: its
    /// K/V row is appended to that rank's cache. By default the owner of the last prefill token
    /// (`seq − 1`), so decoded tokens extend the sequence's last block: the last rank for
    /// contiguous, rank 0 for zigzag (it owns the last of the 2P chunks). Round-robin layouts
    /// override this to keep the cache balanced.
    fn decode_owner(&self, pos: usize, world: usize, seq: usize) -> usize {
        let _ = pos;
        let last = seq.saturating_sub(1);
        (0..world)
            .find(|&r| self.positions(r, world, seq).local_index(last).is_some())
            .unwrap_or(world.saturating_sub(1))
    }
}

/// Ring Attention's layout: rank r owns one contiguous block. With `seq` not divisible by
/// `world`, the first `seq % world` ranks own one token more.
#[derive(Clone, Copy, Debug, Default)]
pub struct Contiguous;

impl Layout for Contiguous {
    fn name(&self) -> &'static str {
        "contiguous"
    }

    fn positions(&self, rank: usize, world: usize, seq: usize) -> Positions {
        let (start, len) = split_range(seq, world, rank);
        Positions::contiguous(start, len)
    }

    /// The owner of the last prefill token, in O(1) (the default searches every rank): the
    /// last rank when every rank has a token, else the last one that has any.
    fn decode_owner(&self, _pos: usize, world: usize, seq: usize) -> usize {
        seq.min(world).saturating_sub(1)
    }
}

/// Splits `n` items into `parts` near-equal contiguous pieces; returns piece `i` as
/// `(start, len)`. The first `n % parts` pieces get one extra item.
pub fn split_range(n: usize, parts: usize, i: usize) -> (usize, usize) {
    let base = n / parts;
    let extra = n % parts;
    (i * base + i.min(extra), base + usize::from(i < extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_covers_every_token_once_with_uneven_shards() {
        for (seq, world) in [(10, 3), (1, 1), (37, 8), (8, 8)] {
            let all: Vec<usize> = (0..world)
                .flat_map(|r| {
                    Contiguous
                        .positions(r, world, seq)
                        .iter()
                        .collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(all, (0..seq).collect::<Vec<_>>());
            let lens: Vec<usize> = (0..world)
                .map(|r| Contiguous.positions(r, world, seq).len())
                .collect();
            assert!(
                lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1,
                "{lens:?}"
            );
        }
    }

    #[test]
    fn contiguous_decodes_on_the_last_rank() {
        assert_eq!(Contiguous.decode_owner(10, 3, 10), 2);
        assert_eq!(Contiguous.decode_owner(11, 3, 10), 2);
        assert_eq!(Contiguous.decode_owner(1, 1, 1), 0);
    }
}
