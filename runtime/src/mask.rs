//! Masks as predicates on (query position, key position), and tile classification.
//!
//! The kernel never special-cases a layout: it asks [`Mask::classify`] about each (query tile,
//! key tile) pair from the tiles' min/max positions, skips Empty tiles, computes Full tiles with
//! no per-element mask, and masks only Partial tiles. Striped Attention's speedup, zigzag's
//! balance and DuoAttention's window savings all come from this one rule.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Which (query, key) pairs may attend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mask {
    /// Every query sees every key.
    None,
    /// A query sees keys at positions `k <= q`.
    Causal,
    /// DuoAttention streaming head: causal and (`k < sink` or `q - k < recent`).
    Streaming {
        /// Number of leading "attention sink" tokens every query sees.
        sink: usize,
        /// Size of the recent window (a query sees itself and `recent - 1` earlier tokens).
        recent: usize,
    },
}

/// What a (query tile, key tile) pair needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TileClass {
    /// No pair may attend: skip the tile entirely.
    Empty,
    /// Every pair may attend: compute with no per-element mask.
    Full,
    /// Some pairs may attend: compute and mask element by element.
    Partial,
}

impl Mask {
    /// True when query position `q` may attend key position `k`.
    #[inline]
    pub fn allows(&self, q: usize, k: usize) -> bool {
        match *self {
            Mask::None => true,
            Mask::Causal => k <= q,
            Mask::Streaming { sink, recent } => k <= q && (k < sink || q - k < recent),
        }
    }

    /// Classifies the tile whose query positions lie in `[q_lo, q_hi]` and key positions in
    /// `[k_lo, k_hi]`. Exact for dense ranges; for strided positions it is conservative (a tile
    /// is Full/Empty only if that holds for every pair in the bounding box), which is always
    /// correct because Partial tiles are masked element by element.
    #[inline]
    pub fn classify(&self, q_lo: usize, q_hi: usize, k_lo: usize, k_hi: usize) -> TileClass {
        debug_assert!(q_lo <= q_hi && k_lo <= k_hi);
        match *self {
            Mask::None => TileClass::Full,
            Mask::Causal => {
                if k_lo > q_hi {
                    TileClass::Empty
                } else if k_hi <= q_lo {
                    TileClass::Full
                } else {
                    TileClass::Partial
                }
            }
            Mask::Streaming { sink, recent } => {
                // Every key is after every query, or outside both the sink and every window.
                // Full: causal-full, and no key falls in the gap [sink, q_hi - recent].
                if k_lo > q_hi || (k_lo >= sink && q_lo >= k_hi + recent) {
                    TileClass::Empty
                } else if k_hi <= q_lo
                    && (k_hi < sink || q_hi < k_lo + recent || q_hi < sink + recent)
                {
                    TileClass::Full
                } else {
                    TileClass::Partial
                }
            }
        }
    }

    /// For query position `q` and increasing key positions `keys`, the (at most two) ranges of
    /// key indices the mask forbids. Partial tiles blank these ranges with −∞ instead of testing
    /// each element: every mask here allows a prefix (sink) plus one contiguous window.
    pub fn blocked_key_ranges(&self, q: usize, keys: &[usize]) -> [Range<usize>; 2] {
        let n = keys.len();
        let below = |bound: usize| keys.partition_point(|&k| k < bound);
        match *self {
            Mask::None => [0..0, 0..0],
            Mask::Causal => [below(q + 1)..n, 0..0],
            Mask::Streaming { sink, recent } => {
                let causal_end = below(q + 1);
                let sink_end = below(sink.min(q + 1));
                let window_start = below((q + 1).saturating_sub(recent)).max(sink_end);
                [sink_end..window_start, causal_end.max(window_start)..n]
            }
        }
    }

    /// Number of (query, key) pairs the mask allows over a whole sequence of `n` tokens: the
    /// work the mask actually requires (FLOPs = 4 · d · heads · pairs).
    pub fn allowed_pairs(&self, n: usize) -> u128 {
        let n = n as u128;
        match *self {
            Mask::None => n * n,
            Mask::Causal => n * (n + 1) / 2,
            Mask::Streaming { sink, recent } => {
                let (sink, recent) = (sink as u128, recent as u128);
                (0..n)
                    .map(|q| {
                        let window = recent.min(q + 1);
                        // Sink keys not already inside the window: k < sink and k <= q - recent.
                        let sink_extra = if q + 1 > recent {
                            sink.min(q + 1 - recent)
                        } else {
                            0
                        };
                        window + sink_extra
                    })
                    .sum()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(mask: &Mask, q: (usize, usize), k: (usize, usize)) -> TileClass {
        let mut any = false;
        let mut all = true;
        for qp in q.0..=q.1 {
            for kp in k.0..=k.1 {
                let a = mask.allows(qp, kp);
                any |= a;
                all &= a;
            }
        }
        match (any, all) {
            (false, _) => TileClass::Empty,
            (true, true) => TileClass::Full,
            _ => TileClass::Partial,
        }
    }

    #[test]
    fn classification_matches_brute_force_on_dense_tiles() {
        let masks = [
            Mask::None,
            Mask::Causal,
            Mask::Streaming { sink: 3, recent: 5 },
            Mask::Streaming { sink: 0, recent: 1 },
        ];
        for mask in masks {
            for ql in 0..12 {
                for qh in ql..12 {
                    for kl in 0..12 {
                        for kh in kl..12 {
                            assert_eq!(
                                mask.classify(ql, qh, kl, kh),
                                brute(&mask, (ql, qh), (kl, kh)),
                                "{mask:?} q=[{ql},{qh}] k=[{kl},{kh}]"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn blocked_ranges_are_exactly_the_forbidden_keys() {
        let masks = [
            Mask::None,
            Mask::Causal,
            Mask::Streaming { sink: 3, recent: 4 },
            Mask::Streaming { sink: 0, recent: 1 },
            Mask::Streaming { sink: 9, recent: 2 },
        ];
        let key_sets: [Vec<usize>; 3] = [
            (0..20).collect(),
            (1..20).step_by(3).collect(),
            vec![2, 3, 4, 15, 16],
        ];
        for mask in masks {
            for keys in &key_sets {
                for q in 0..22 {
                    let [a, b] = mask.blocked_key_ranges(q, keys);
                    for (j, &k) in keys.iter().enumerate() {
                        let blocked = a.contains(&j) || b.contains(&j);
                        assert_eq!(
                            blocked,
                            !mask.allows(q, k),
                            "{mask:?} q={q} k={k} ranges {a:?} {b:?}"
                        );
                    }
                    assert!(
                        a.end <= b.start || b.is_empty() || a.is_empty(),
                        "overlapping ranges"
                    );
                }
            }
        }
    }

    #[test]
    fn allowed_pairs_matches_brute_force() {
        for mask in [
            Mask::None,
            Mask::Causal,
            Mask::Streaming { sink: 2, recent: 4 },
        ] {
            for n in [0, 1, 3, 17] {
                let brute = (0..n)
                    .flat_map(|q| (0..n).map(move |k| (q, k)))
                    .filter(|&(q, k)| mask.allows(q, k))
                    .count() as u128;
                assert_eq!(mask.allowed_pairs(n), brute, "{mask:?} n={n}");
            }
        }
    }
}
