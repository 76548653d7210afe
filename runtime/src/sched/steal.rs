//! The hybrid split's tail: each thread takes the items of its own contiguous range from the
//! front and, once that is empty, steals single items from the back of the range with the most
//! cost left.
//!
//! The learned ratios give every core a share that should end at the same time; a core whose
//! speed changes within a call (a neighbour process taking turns on it, frequency steps) would
//! otherwise leave the others waiting until the next call's update. Stealing from the back
//! keeps each thread's own items contiguous (the Q tiles it started on, in order) and moves
//! only the last ones. The ratios still learn from what each thread ran and how long it took.

use std::ops::Range;
use std::sync::Mutex;

/// The items of a split, handed out one at a time (see the module docs).
pub(crate) struct SplitQueue {
    /// Per thread: the unclaimed items of its range, `front..back`.
    ranges: Vec<Mutex<Range<usize>>>,
    /// `prefix[i]` = cost of items `0..i`.
    prefix: Vec<f64>,
    steal: bool,
}

impl SplitQueue {
    /// A queue over the contiguous `ranges` (one per thread) of items with costs `costs`;
    /// with `steal` false a thread only runs its own range (a static split).
    pub(crate) fn new(ranges: &[Range<usize>], costs: &[f64], steal: bool) -> Self {
        let mut prefix = Vec::with_capacity(costs.len() + 1);
        prefix.push(0.0);
        for c in costs {
            prefix.push(prefix.last().copied().unwrap_or(0.0) + c);
        }
        SplitQueue {
            ranges: ranges.iter().cloned().map(Mutex::new).collect(),
            prefix,
            steal,
        }
    }

    /// The next item for thread `t`: the front of its own range, else (stealing) the back of
    /// the range with the most cost left; `None` when no item is left for it.
    pub(crate) fn next(&self, t: usize) -> Option<usize> {
        if let Some(i) = self.ranges.get(t).and_then(|r| lock(r).next()) {
            return Some(i);
        }
        if !self.steal {
            return None;
        }
        loop {
            // The richest range may be emptied by its owner meanwhile: look again.
            let victim = self.richest()?;
            if let Some(i) = lock(&self.ranges[victim]).next_back() {
                return Some(i);
            }
        }
    }

    /// The thread whose unclaimed items cost the most (`None` when all are claimed).
    fn richest(&self) -> Option<usize> {
        let left = |r: &Range<usize>| self.prefix[r.end] - self.prefix[r.start];
        self.ranges
            .iter()
            .enumerate()
            .map(|(v, r)| {
                let r = lock(r);
                (v, if r.is_empty() { None } else { Some(left(&r)) })
            })
            .filter_map(|(v, cost)| cost.map(|c| (v, c)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(v, _)| v)
    }
}

fn lock(r: &Mutex<Range<usize>>) -> std::sync::MutexGuard<'_, Range<usize>> {
    // A thread that panicked while holding a range left it consistent (claims are single
    // index moves), so a poisoned lock is still usable.
    r.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_stealing_each_thread_runs_exactly_its_range_in_order() {
        let q = SplitQueue::new(&[0..3, 3..5], &[1.0; 5], false);
        let take = |t| std::iter::from_fn(|| q.next(t)).collect::<Vec<_>>();
        assert_eq!(take(1), vec![3, 4]);
        assert_eq!(take(1), Vec::<usize>::new());
        assert_eq!(take(0), vec![0, 1, 2]);
    }

    #[test]
    fn an_idle_thread_steals_from_the_back_of_the_costliest_range() {
        // Thread 1's range is empty; thread 0 holds 0..4 (cost 10), thread 2 holds 4..6 (2.5).
        let q = SplitQueue::new(&[0..4, 4..4, 4..6], &[1.0, 2.0, 3.0, 4.0, 1.0, 1.5], true);
        assert_eq!(q.next(1), Some(3), "the back of the costliest range");
        assert_eq!(q.next(0), Some(0), "the owner keeps taking its front");
        assert_eq!(q.next(1), Some(2));
        assert_eq!(
            q.next(1),
            Some(5),
            "now thread 2's range costs more (2.5 vs 2)"
        );
        let mut rest: Vec<usize> = std::iter::from_fn(|| q.next(0)).collect();
        rest.extend(std::iter::from_fn(|| q.next(2)));
        assert_eq!(rest, vec![1, 4]);
        assert_eq!(q.next(1), None);
    }

    #[test]
    fn every_item_is_claimed_exactly_once_under_contention() {
        let n = 10_000;
        let ranges = [0..6000, 6000..9000, 9000..9500, 9500..n];
        let q = SplitQueue::new(&ranges, &vec![1.0; n], true);
        let claimed: Vec<Vec<usize>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let q = &q;
                    s.spawn(move || std::iter::from_fn(|| q.next(t)).collect::<Vec<_>>())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<usize> = claimed.concat();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>());
    }
}
