//! Masks as predicates on (query position, key position), and tile classification.
//!
//! The kernel never special-cases a layout: it asks [`Mask::classify`] about each (query tile,
//! key tile) pair from the tiles' min/max positions, skips Empty tiles, computes Full tiles with
//! no per-element mask, and masks only Partial tiles. Striped Attention's speedup, zigzag's
//! balance and DuoAttention's window savings all come from this one rule.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::positions::Positions;

pub mod docs;
pub mod span;

pub use docs::{DocsError, DocsSummary, Documents};
pub use span::Span;

/// Which (query, key) pairs may attend.
///
/// Every mask here lets a query see itself except `Streaming` with `recent = 0` (refused by
/// every plan), so no row is left without keys; should one be (a custom key set), its output is
/// 0 and its log-sum-exp −∞, in the kernel and in the f64 reference alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Packed documents and / or a sliding window (one interval of keys per query).
    Span(Span),
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
    /// The mask for a causal flag, an optional sliding window and optional packed documents:
    /// the plain `Causal` / `None` when there is neither window nor documents (so plain runs are
    /// unchanged), else a [`Span`].
    pub fn span(causal: bool, window: Option<usize>, docs: Option<Documents>) -> Mask {
        match (window, docs) {
            (None, None) if causal => Mask::Causal,
            (None, None) => Mask::None,
            (window, docs) => Mask::Span(Span {
                causal,
                window,
                docs,
            }),
        }
    }

    /// The packed documents of this mask, if any.
    pub fn docs(&self) -> Option<&Documents> {
        match self {
            Mask::Span(s) => s.docs.as_ref(),
            _ => None,
        }
    }

    /// The sliding window of this mask, if any.
    pub fn window(&self) -> Option<usize> {
        match self {
            Mask::Span(s) => s.window,
            _ => None,
        }
    }

    /// The first key position query `q` (or any later query) may see, for masks whose visible
    /// keys only move forward (windows, documents): a decode cache may drop every key below it.
    /// 0 for the others (streaming heads keep their sink).
    pub fn first_needed_key(&self, q: usize) -> usize {
        match self {
            Mask::Span(s) => s.keys_of(q).0,
            _ => 0,
        }
    }

    /// True when some key blocks are useless to some ranks, so the ring pass forwards only the
    /// rows ranks ahead can see ([`Mask::visible_keys`]): windows, documents, streaming heads.
    pub fn prunes_traffic(&self) -> bool {
        matches!(self, Mask::Streaming { .. } | Mask::Span(_))
    }

    /// The key positions some query at `queries` may attend, as global ranges (a superset,
    /// exact for stride-1 runs). The ring pass forwards a block only with the rows that the
    /// ranks which have not seen it yet can use: one rule for streaming heads, windows and
    /// documents.
    pub fn visible_keys(&self, queries: &Positions) -> Vec<Range<usize>> {
        let runs = queries.runs();
        let last_of = |r: &crate::positions::Run| r.start + (r.len - 1) * r.stride;
        let Some(last_query) = runs.last().map(last_of) else {
            return Vec::new();
        };
        match self {
            Mask::None => std::iter::once(0..usize::MAX).collect(),
            Mask::Causal => std::iter::once(0..last_query.saturating_add(1)).collect(),
            Mask::Streaming { sink, recent } => {
                let mut ranges = Vec::with_capacity(1 + runs.len());
                ranges.push(0..(*sink).min(last_query.saturating_add(1)));
                if *recent > 0 {
                    ranges.extend(runs.iter().map(|r| {
                        (r.start + 1).saturating_sub(*recent)..last_of(r).saturating_add(1)
                    }));
                }
                ranges
            }
            Mask::Span(s) => runs
                .iter()
                .map(|r| s.keys_of_run(r.start, last_of(r)))
                .collect(),
        }
    }

    /// True when query position `q` may attend key position `k`.
    #[inline]
    pub fn allows(&self, q: usize, k: usize) -> bool {
        match *self {
            Mask::None => true,
            Mask::Causal => k <= q,
            Mask::Streaming { sink, recent } => k <= q && (k < sink || q - k < recent),
            Mask::Span(ref s) => s.allows(q, k),
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
            Mask::Span(ref s) => s.classify(q_lo, q_hi, k_lo, k_hi),
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
            Mask::Span(ref s) => s.blocked_key_ranges(q, keys),
        }
    }

    /// Number of (query, key) pairs the mask allows over a whole sequence of `n` tokens: the
    /// work the mask actually requires (FLOPs = 4 · d · heads · pairs). Closed form, exact for
    /// every `n`, `sink` and `recent` up to `usize::MAX` (the count fits in u128).
    pub fn allowed_pairs(&self, n: usize) -> u128 {
        let n_tokens = n;
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
            Mask::Span(ref s) => s.allowed_pairs(n_tokens),
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
pub(crate) fn sum_min(m: u128, c: u128) -> u128 {
    if m <= c {
        m * (m + 1) / 2
    } else {
        c * (c + 1) / 2 + (m - c) * c
    }
}

#[cfg(test)]
mod span_tests;
#[cfg(test)]
mod tests;
