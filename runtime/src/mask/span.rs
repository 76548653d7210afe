//! [`Span`]: packed documents and sliding windows, the masks under which every query sees one
//! contiguous interval of keys `[lo(q), hi(q)]`.
//!
//! Both ends are non-decreasing in `q` and every query sees itself (`lo(q) ≤ q ≤ hi(q)`), so
//! over a dense range of queries `[q_lo, q_hi]` the union of the intervals is exactly
//! `[lo(q_lo), hi(q_hi)]` and their intersection `[lo(q_hi), hi(q_lo)]`: tile classification is
//! exact with four evaluations of the ends (two binary searches each for documents).

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::docs::Documents;
use super::{sum_min, TileClass};

/// Packed documents and / or a sliding window, with or without causality.
///
/// Query `q` sees key `k` when they are in the same document (if `docs`), `k ≤ q` (if
/// `causal`), and within the window (if `window = Some(W)`): `q − W < k ≤ q` when causal,
/// `|q − k| < W` otherwise. A window of 0 is taken as 1 (plans refuse it before). Window
/// arithmetic saturates: a window longer than the sequence is no window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Keys after the query are hidden.
    pub causal: bool,
    /// Sliding window W (keys less than W positions away).
    pub window: Option<usize>,
    /// Packed documents.
    pub docs: Option<Documents>,
}

impl Span {
    /// Largest allowed distance `W − 1` (`usize::MAX` without a window).
    #[inline]
    fn reach(&self) -> usize {
        self.window.map_or(usize::MAX, |w| w.max(1) - 1)
    }

    /// The interval `[lo, hi]` (inclusive) of keys query `q` sees.
    #[inline]
    pub fn keys_of(&self, q: usize) -> (usize, usize) {
        let (d_lo, d_hi) = self.docs.as_ref().map_or((0, usize::MAX), |d| d.bounds(q));
        let reach = self.reach();
        let lo = d_lo.max(q.saturating_sub(reach));
        let hi = if self.causal {
            q
        } else {
            d_hi.min(q.saturating_add(reach))
        };
        (lo, hi)
    }

    /// True when query `q` may attend key `k`.
    #[inline]
    pub fn allows(&self, q: usize, k: usize) -> bool {
        let (lo, hi) = self.keys_of(q);
        lo <= k && k <= hi
    }

    /// Exact class of the dense box `[q_lo, q_hi] × [k_lo, k_hi]`.
    #[inline]
    pub fn classify(&self, q_lo: usize, q_hi: usize, k_lo: usize, k_hi: usize) -> TileClass {
        let (first_lo, first_hi) = self.keys_of(q_lo);
        let (last_lo, last_hi) = self.keys_of(q_hi);
        if k_hi < first_lo || k_lo > last_hi {
            TileClass::Empty
        } else if k_lo >= last_lo && k_hi <= first_hi {
            TileClass::Full
        } else {
            TileClass::Partial
        }
    }

    /// Key indices (into increasing `keys`) that query `q` may not attend: before and after its
    /// interval.
    pub fn blocked_key_ranges(&self, q: usize, keys: &[usize]) -> [Range<usize>; 2] {
        let (lo, hi) = self.keys_of(q);
        let a = keys.partition_point(|&k| k < lo);
        let b = keys.partition_point(|&k| k <= hi).max(a);
        [0..a, b..keys.len()]
    }

    /// Allowed (query, key) pairs over positions `0..n`, in O(documents).
    pub fn allowed_pairs(&self, n: usize) -> u128 {
        let reach = self.reach() as u128;
        let segment = |len: u128| -> u128 {
            if self.causal {
                sum_min(len, reach.saturating_add(1))
            } else {
                // Pairs |i − j| ≤ reach in a segment of `len`: the diagonal plus twice the
                // off-diagonals d = 1..=m, each of len − d pairs.
                let m = reach.min(len.saturating_sub(1));
                len + 2 * (m * len - m * (m + 1) / 2)
            }
        };
        let Some(docs) = &self.docs else {
            return segment(n as u128);
        };
        let starts = docs.starts();
        let mut total = 0u128;
        for (i, &s) in starts.iter().enumerate() {
            if s >= n {
                break;
            }
            let e = starts.get(i + 1).map_or(n, |&e| e.min(n));
            total += segment((e - s) as u128);
        }
        total
    }

    /// The key positions that queries at the dense-or-strided run `[first, last]` may see: a
    /// superset, exact for stride 1.
    pub fn keys_of_run(&self, first: usize, last: usize) -> Range<usize> {
        self.keys_of(first).0..self.keys_of(last).1.saturating_add(1)
    }
}
