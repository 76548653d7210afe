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
                if k_lo > q_hi || (k_lo >= sink && !below_sum(q_lo, k_hi, recent)) {
                    TileClass::Empty
                } else if k_hi <= q_lo
                    && (k_hi < sink
                        || below_sum(q_hi, k_lo, recent)
                        || below_sum(q_hi, sink, recent))
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
        // Keys `<= q`, without forming `q + 1` (q may be usize::MAX).
        let causal_end = keys.partition_point(|&k| k <= q);
        match *self {
            Mask::None => [0..0, 0..0],
            Mask::Causal => [causal_end..n, 0..0],
            Mask::Streaming { sink, recent } => {
                let sink_end = if sink > q { causal_end } else { below(sink) };
                // The window is (q − recent, q]: keys `> q − recent`, none excluded when
                // recent > q.
                let window_start = match q.checked_sub(recent) {
                    Some(edge) => keys.partition_point(|&k| k <= edge),
                    None => 0,
                }
                .max(sink_end);
                [sink_end..window_start, causal_end.max(window_start)..n]
            }
        }
    }

    /// Number of (query, key) pairs the mask allows over a whole sequence of `n` tokens: the
    /// work the mask actually requires (FLOPs = 4 · d · heads · pairs). Closed form, exact for
    /// every `n`, `sink` and `recent` up to `usize::MAX` (the count fits in u128).
    pub fn allowed_pairs(&self, n: usize) -> u128 {
        let n = n as u128;
        match *self {
            Mask::None => n * n,
            Mask::Causal => n * (n + 1) / 2,
            Mask::Streaming { sink, recent } => {
                let (sink, recent) = (sink as u128, recent as u128);
                // Query q sees min(recent, q + 1) window keys, plus the sink keys not already
                // inside the window: min(sink, q + 1 − recent) when q + 1 > recent.
                let window = sum_min(n, recent);
                let sink_extra = if n > recent {
                    sum_min(n - recent, sink)
                } else {
                    0
                };
                window + sink_extra
            }
        }
    }
}

/// `x < a + b` in exact arithmetic: true when `a + b` exceeds usize (so a window longer than
/// the sequence is full attention, never a wrapped-around one).
#[inline]
fn below_sum(x: usize, a: usize, b: usize) -> bool {
    match a.checked_add(b) {
        Some(s) => x < s,
        None => true,
    }
}

/// Σ_{x=1..=m} min(c, x) in closed form; exact for m, c < 2^64.
fn sum_min(m: u128, c: u128) -> u128 {
    if m <= c {
        m * (m + 1) / 2
    } else {
        c * (c + 1) / 2 + (m - c) * c
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

    /// Brute-force pair count with the predicate, for masks whose sizes may be near 2^64.
    fn brute_pairs(mask: &Mask, n: usize) -> u128 {
        (0..n)
            .flat_map(|q| (0..n).map(move |k| (q, k)))
            .filter(|&(q, k)| mask.allows(q, k))
            .count() as u128
    }

    #[test]
    fn huge_windows_saturate_to_full_attention() {
        let big = [usize::MAX, usize::MAX - 1, usize::MAX / 2 + 1, 1 << 63];
        for &recent in &big {
            for sink in [0, 3, usize::MAX] {
                let mask = Mask::Streaming { sink, recent };
                for n in [0, 1, 5, 13] {
                    assert_eq!(mask.allowed_pairs(n), Mask::Causal.allowed_pairs(n));
                    assert_eq!(mask.allowed_pairs(n), brute_pairs(&mask, n));
                }
                for ql in 0..10 {
                    for qh in ql..10 {
                        for kl in 0..10 {
                            for kh in kl..10 {
                                assert_eq!(
                                    mask.classify(ql, qh, kl, kh),
                                    Mask::Causal.classify(ql, qh, kl, kh),
                                    "{mask:?} q=[{ql},{qh}] k=[{kl},{kh}]"
                                );
                            }
                        }
                    }
                }
                let keys: Vec<usize> = (0..12).collect();
                for q in [0, 5, 11, usize::MAX] {
                    let [a, b] = mask.blocked_key_ranges(q, &keys);
                    for (j, &k) in keys.iter().enumerate() {
                        let blocked = a.contains(&j) || b.contains(&j);
                        assert_eq!(blocked, !mask.allows(q, k), "{mask:?} q={q} k={k}");
                        if q < usize::MAX / 2 {
                            assert_eq!(blocked, k > q, "{mask:?} q={q} k={k}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn classification_is_exact_near_the_top_of_usize() {
        let m = usize::MAX;
        let masks = [
            Mask::Causal,
            Mask::Streaming { sink: 0, recent: 3 },
            Mask::Streaming {
                sink: m - 2,
                recent: 2,
            },
            Mask::Streaming {
                sink: 1,
                recent: m - 3,
            },
        ];
        let lo = m - 7;
        for mask in masks {
            for ql in lo..=m {
                for qh in ql..=m {
                    for kl in lo..=m {
                        for kh in kl..=m {
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
    fn allowed_pairs_closed_form_matches_brute_force_on_many_windows() {
        for sink in 0..6 {
            for recent in 0..9 {
                let mask = Mask::Streaming { sink, recent };
                for n in 0..15 {
                    assert_eq!(
                        mask.allowed_pairs(n),
                        brute_pairs(&mask, n),
                        "{mask:?} n={n}"
                    );
                }
            }
        }
        let n = usize::MAX;
        let whole = Mask::Streaming { sink: 0, recent: n };
        assert_eq!(whole.allowed_pairs(n), Mask::Causal.allowed_pairs(n));
        assert_eq!(Mask::None.allowed_pairs(n), (n as u128) * (n as u128));
    }

    fn any_size() -> impl proptest::strategy::Strategy<Value = usize> {
        use proptest::prelude::*;
        prop_oneof![
            0usize..40,
            (0usize..40).prop_map(|x| usize::MAX - x),
            any::<usize>(),
        ]
    }

    proptest::proptest! {
        /// Tile classes and blocked ranges agree exactly with the predicate for windows (≥ 1)
        /// and sinks anywhere in usize, on tiles anywhere in usize (near 0, near 2^64, in between).
        #[test]
        fn huge_windows_classify_exactly(
            sink in any_size(),
            recent in any_size(),
            base in any_size(),
            offs in proptest::array::uniform4(0usize..12),
        ) {
            // recent = 0 is refused by every plan (a query must see itself); for it the
            // classes are conservative (Partial where Empty), which the kernel masks correctly.
            let mask = Mask::Streaming { sink, recent: recent.max(1) };
            let base = base.min(usize::MAX - 24);
            let (ql, qh) = (base + offs[0].min(offs[1]), base + offs[0].max(offs[1]));
            let (kl, kh) = (base + offs[2].min(offs[3]), base + offs[2].max(offs[3]));
            proptest::prop_assert_eq!(mask.classify(ql, qh, kl, kh), brute(&mask, (ql, qh), (kl, kh)));
            let keys: Vec<usize> = (kl..=kh).collect();
            for q in ql..=qh {
                let [a, b] = mask.blocked_key_ranges(q, &keys);
                for (j, &k) in keys.iter().enumerate() {
                    proptest::prop_assert_eq!(a.contains(&j) || b.contains(&j), !mask.allows(q, k));
                }
            }
        }
    }
}
