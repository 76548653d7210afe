//! Global token positions of a shard, described as a few arithmetic runs.
//!
//! Contiguous = one run of stride 1, striped = one run of stride P, zigzag = two runs of stride 1.
//! Positions are strictly increasing across the whole shard, so the min/max position of any
//! contiguous range of local rows is just its first/last element: tile classification
//! ([`crate::mask::Mask::classify`]) needs nothing more.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One arithmetic run of global positions: `start, start + stride, ...` (`len` of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// First global position of the run.
    pub start: usize,
    /// Number of positions in the run.
    pub len: usize,
    /// Distance between consecutive positions (>= 1).
    pub stride: usize,
}

impl Run {
    /// Last position of a non-empty run.
    fn last(&self) -> usize {
        self.start + (self.len - 1) * self.stride
    }
}

/// The global positions owned by one shard, in local row order (strictly increasing).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Positions {
    runs: Vec<Run>,
    len: usize,
}

impl Positions {
    /// Build from runs; empty runs are dropped. Fails unless positions strictly increase.
    pub fn new(runs: impl IntoIterator<Item = Run>) -> Result<Self> {
        let runs: Vec<Run> = runs.into_iter().filter(|r| r.len > 0).collect();
        let mut prev: Option<usize> = None;
        for r in &runs {
            if r.stride == 0 && r.len > 1 {
                return Err(Error::config("position run with stride 0"));
            }
            if (r.len - 1)
                .checked_mul(r.stride)
                .and_then(|x| r.start.checked_add(x))
                .is_none()
            {
                return Err(Error::config(format!(
                    "position run of {} from {} with stride {} passes usize::MAX",
                    r.len, r.start, r.stride
                )));
            }
            if let Some(p) = prev {
                if r.start <= p {
                    return Err(Error::config(format!(
                        "position runs must strictly increase: run at {} follows {}",
                        r.start, p
                    )));
                }
            }
            prev = Some(r.last());
        }
        let len = runs.iter().map(|r| r.len).sum();
        Ok(Positions { runs, len })
    }

    /// One stride-1 run `[start, start + len)`.
    pub fn contiguous(start: usize, len: usize) -> Self {
        Self::strided(start, len, 1)
    }

    /// One run `start, start + stride, ...` of `len` positions.
    pub fn strided(start: usize, len: usize, stride: usize) -> Self {
        Self::new([Run {
            start,
            len,
            stride: stride.max(1),
        }])
        .expect("a single run is always valid")
    }

    /// Number of positions (local rows).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the shard owns no tokens.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The runs describing these positions.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Global position of local row `i` (panics if out of range, like slice indexing).
    #[inline]
    pub fn get(&self, mut i: usize) -> usize {
        for r in &self.runs {
            if i < r.len {
                return r.start + i * r.stride;
            }
            i -= r.len;
        }
        panic!("position index {i} out of range (len {})", self.len)
    }

    /// Writes the global positions of local rows `[from, from + out.len())` into `out`.
    pub fn fill(&self, from: usize, out: &mut [usize]) {
        for (k, slot) in out.iter_mut().enumerate() {
            *slot = self.get(from + k);
        }
    }

    /// Iterator over all global positions in local order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.runs
            .iter()
            .flat_map(|r| (0..r.len).map(move |i| r.start + i * r.stride))
    }

    /// Local row holding global position `pos`, if this shard owns it.
    pub fn local_index(&self, pos: usize) -> Option<usize> {
        let mut base = 0;
        for r in &self.runs {
            if pos >= r.start && pos <= r.last() && (pos - r.start).is_multiple_of(r.stride) {
                return Some(base + (pos - r.start) / r.stride);
            }
            base += r.len;
        }
        None
    }

    /// The positions that fall in the union of the global position `ranges` (any order, may
    /// overlap), with the local row ranges (ascending, disjoint) they occupy in `self`. Each
    /// kept stretch of a run stays one run of the same stride, so the result is valid
    /// [`Positions`] in the same local order.
    pub fn intersect_ranges(&self, ranges: &[Range<usize>]) -> (Positions, Vec<Range<usize>>) {
        let mut merged: Vec<Range<usize>> =
            ranges.iter().filter(|r| r.start < r.end).cloned().collect();
        merged.sort_by_key(|r| r.start);
        let mut union: Vec<Range<usize>> = Vec::with_capacity(merged.len());
        for r in merged {
            match union.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => union.push(r),
            }
        }
        let (mut runs, mut rows) = (Vec::new(), Vec::<Range<usize>>::new());
        let mut base = 0;
        for run in &self.runs {
            let stride = run.stride.max(1);
            for r in &union {
                // Indices i with start + i·stride in [r.start, r.end), clipped to the run.
                let lo = r
                    .start
                    .saturating_sub(run.start)
                    .div_ceil(stride)
                    .min(run.len);
                let hi = r
                    .end
                    .saturating_sub(run.start)
                    .div_ceil(stride)
                    .min(run.len);
                if lo < hi {
                    runs.push(Run {
                        start: run.start + lo * stride,
                        len: hi - lo,
                        stride: run.stride,
                    });
                    match rows.last_mut() {
                        Some(last) if last.end == base + lo => last.end = base + hi,
                        _ => rows.push(base + lo..base + hi),
                    }
                }
            }
            base += run.len;
        }
        let positions = Positions::new(runs).expect("sub-runs of increasing runs still increase");
        (positions, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_map_local_rows_to_positions() {
        let p = Positions::new([
            Run {
                start: 2,
                len: 3,
                stride: 1,
            },
            Run {
                start: 10,
                len: 2,
                stride: 4,
            },
        ])
        .unwrap();
        assert_eq!(p.iter().collect::<Vec<_>>(), vec![2, 3, 4, 10, 14]);
        assert_eq!(p.len(), 5);
        assert_eq!(p.get(4), 14);
        assert_eq!(p.local_index(10), Some(3));
        assert_eq!(p.local_index(12), None);
        let mut buf = [0; 2];
        p.fill(2, &mut buf);
        assert_eq!(buf, [4, 10]);
    }

    #[test]
    fn intersect_ranges_keeps_exactly_the_positions_in_the_ranges() {
        let shards = [
            Positions::contiguous(10, 50),
            Positions::strided(3, 40, 4),
            Positions::new([
                Run {
                    start: 0,
                    len: 7,
                    stride: 1,
                },
                Run {
                    start: 30,
                    len: 9,
                    stride: 1,
                },
            ])
            .unwrap(),
            Positions::default(),
        ];
        let range_sets: [Vec<Range<usize>>; 4] = [
            vec![0..4, 20..36],
            vec![33..40, 0..12, 5..8, 50..50],
            vec![0..1000, 2000..2000],
            vec![],
        ];
        for p in &shards {
            for ranges in &range_sets {
                let (sub, rows) = p.intersect_ranges(ranges);
                let want: Vec<usize> = p
                    .iter()
                    .filter(|x| ranges.iter().any(|r| r.contains(x)))
                    .collect();
                assert_eq!(sub.iter().collect::<Vec<_>>(), want, "{p:?} {ranges:?}");
                let from_rows: Vec<usize> = rows
                    .iter()
                    .flat_map(|r| r.clone().map(|i| p.get(i)))
                    .collect();
                assert_eq!(from_rows, want, "{p:?} {ranges:?} rows {rows:?}");
                assert!(rows.windows(2).all(|w| w[0].end < w[1].start), "{rows:?}");
            }
        }
    }

    #[test]
    fn rejects_non_increasing_runs() {
        let r = Positions::new([
            Run {
                start: 5,
                len: 2,
                stride: 1,
            },
            Run {
                start: 6,
                len: 1,
                stride: 1,
            },
        ]);
        assert!(r.is_err());
    }
}
