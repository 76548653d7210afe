//! Which CPU cores each rank's kernel threads run on (`--threads T`, `--no-pin`).
//!
//! Every rank reads its affinity mask (the CPUs mpirun, SLURM or taskset allow it, from
//! `Cpus_allowed_list` in /proc/self/status). Ranks of one node that share the same mask
//! split it: the i-th of them takes the i-th slice of T cores, and each kernel thread is pinned
//! to one core of its slice. A mask a launcher already narrowed per rank (`srun
//! --cpu-bind=cores`, OpenMPI's `--bind-to core`) is one rank's alone, so that rank takes its
//! first T cores. When the ranks sharing a mask need more cores than it holds (ranks × threads
//! exceed the allowed cores), or two ranks' masks overlap, the job is *oversubscribed*: every
//! rank runs unpinned and rank 0 prints one warning.
//!
//! The planning is pure ([`plan`], over every rank's [`RankMask`]) so that all ranks of an MPI
//! job agree: rank 0 plans from the gathered masks and broadcasts the plan.

use std::collections::HashMap;

pub use ringattn_runtime::sched::topology::{allowed_cpus, format_cpu_list};
use serde::{Deserialize, Serialize};

/// One rank's place: the node it runs on and the CPUs its affinity mask allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankMask {
    /// Identifies the node (ranks with the same value share memory and cores).
    pub node: u64,
    /// Allowed CPU ids, ascending, no duplicates.
    pub cpus: Vec<usize>,
}

/// Where every rank's kernel threads run, as decided by [`plan`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorePlan {
    /// Kernel threads per rank (the `--threads` given, or the rank's share of its mask).
    pub threads: Vec<usize>,
    /// CPU ids per rank, one per kernel thread; empty when the rank runs unpinned.
    pub cores: Vec<Vec<usize>>,
    /// Why the job runs unpinned although pinning was asked (one line, no prefix), if it does.
    pub oversubscribed: Option<String>,
}

impl CorePlan {
    /// A plan that pins nothing.
    fn unpinned(threads: Vec<usize>, oversubscribed: Option<String>) -> CorePlan {
        let cores = vec![Vec::new(); threads.len()];
        CorePlan {
            threads,
            cores,
            oversubscribed,
        }
    }

    /// The warning line rank 0 prints, if the job is oversubscribed.
    pub fn warning(&self) -> Option<String> {
        self.oversubscribed
            .as_ref()
            .map(|why| format!("ringattn: warning: {why}"))
    }
}

/// The cores of the `index`-th of `sharers` ranks that share `mask`, `threads` each: the
/// index-th slice of `threads` cores. `None` when the slice does not fit in the mask.
pub fn slice_for(
    mask: &[usize],
    sharers: usize,
    index: usize,
    threads: usize,
) -> Option<Vec<usize>> {
    if threads == 0 || index >= sharers {
        return None;
    }
    let start = index.checked_mul(threads)?;
    let end = start.checked_add(threads)?;
    mask.get(start..end).map(<[usize]>::to_vec)
}

/// Default kernel threads of a rank whose mask of `mask_len` CPUs is shared by `sharers`
/// ranks: its share, at least 1.
pub fn default_threads(mask_len: usize, sharers: usize) -> usize {
    (mask_len / sharers.max(1)).max(1)
}

/// Plans every rank's cores. `masks[r]` is rank r's node and mask; `threads` is `--threads`
/// (`None`: each rank's share of its mask). With `pin` false nobody is pinned, but
/// oversubscription is still reported.
///
/// Ranks with the same node and the same mask form a group and split the mask in rank order;
/// a group needing more cores than its mask holds, or two groups of one node whose cores
/// overlap, make the whole job unpinned with a reason.
pub fn plan(masks: &[RankMask], threads: Option<usize>, pin: bool) -> CorePlan {
    // (node, mask) -> ranks sharing it, in rank order.
    let mut groups: HashMap<(u64, &[usize]), Vec<usize>> = HashMap::new();
    for (r, m) in masks.iter().enumerate() {
        groups
            .entry((m.node, m.cpus.as_slice()))
            .or_default()
            .push(r);
    }
    let mut per_rank = Vec::with_capacity(masks.len());
    let mut counts = Vec::with_capacity(masks.len());
    let mut oversubscribed: Option<String> = None;
    for (r, m) in masks.iter().enumerate() {
        let group = &groups[&(m.node, m.cpus.as_slice())];
        let index = group.iter().position(|&x| x == r).unwrap_or(0);
        let t = threads.unwrap_or_else(|| default_threads(m.cpus.len(), group.len()));
        counts.push(t);
        let slice = slice_for(&m.cpus, group.len(), index, t);
        if slice.is_none() && t > 0 && oversubscribed.is_none() {
            oversubscribed = Some(format!(
                "{} rank{} × {t} thread{} need {} cores but {} {} allowed ({}): oversubscribed, \
                 running unpinned",
                group.len(),
                plural(group.len()),
                plural(t),
                group.len() * t,
                m.cpus.len(),
                if m.cpus.len() == 1 { "is" } else { "are" },
                format_cpu_list(&m.cpus)
            ));
        }
        per_rank.push(slice.unwrap_or_default());
    }
    if oversubscribed.is_none() {
        oversubscribed = overlap(masks, &per_rank);
    }
    if oversubscribed.is_some() || !pin {
        return CorePlan::unpinned(counts, oversubscribed);
    }
    CorePlan {
        threads: counts,
        cores: per_rank,
        oversubscribed: None,
    }
}

/// A reason when two ranks of one node were given the same core (partly overlapping masks).
fn overlap(masks: &[RankMask], cores: &[Vec<usize>]) -> Option<String> {
    let mut owner: HashMap<(u64, usize), usize> = HashMap::new();
    for (r, (m, cs)) in masks.iter().zip(cores).enumerate() {
        for &c in cs {
            if let Some(other) = owner.insert((m.node, c), r) {
                return Some(format!(
                    "ranks {other} and {r} share CPU {c} (their affinity masks overlap): \
                     oversubscribed, running unpinned"
                ));
            }
        }
    }
    None
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The local backend's plan: all `world` workers are threads of this process and share its
/// mask. Prints the warning when oversubscribed, but only when `--threads` was given: more
/// workers than cores with one thread each is the usual way to try a ring on a small machine.
pub fn plan_local(world: usize, threads: usize, explicit_threads: bool, pin: bool) -> CorePlan {
    let mask = RankMask {
        node: 0,
        cpus: allowed_cpus(),
    };
    let plan = plan(&vec![mask; world], Some(threads), pin);
    if explicit_threads {
        if let Some(w) = plan.warning() {
            eprintln!("{w}");
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(node: u64, cpus: &[usize]) -> RankMask {
        RankMask {
            node,
            cpus: cpus.to_vec(),
        }
    }

    #[test]
    fn slices_are_consecutive_and_must_fit() {
        let mask = [0, 1, 2, 3, 4, 5, 6, 7];
        assert_eq!(slice_for(&mask, 4, 0, 2), Some(vec![0, 1]));
        assert_eq!(slice_for(&mask, 4, 3, 2), Some(vec![6, 7]));
        assert_eq!(slice_for(&mask, 2, 1, 3), Some(vec![3, 4, 5]));
        assert_eq!(slice_for(&mask, 3, 2, 3), None);
        assert_eq!(slice_for(&mask, 1, 0, 0), None);
        assert_eq!(slice_for(&[4, 9], 1, 0, 2), Some(vec![4, 9]));
        assert_eq!(default_threads(8, 3), 2);
        assert_eq!(default_threads(2, 4), 1);
    }

    #[test]
    fn ranks_sharing_a_mask_get_disjoint_slices() {
        // 2 nodes × 2 ranks, each node's ranks see the whole node (MPICH without binding).
        let masks = [
            on(0, &[0, 1, 2, 3]),
            on(0, &[0, 1, 2, 3]),
            on(4, &[0, 1, 2, 3]),
            on(4, &[0, 1, 2, 3]),
        ];
        let p = plan(&masks, Some(2), true);
        assert_eq!(p.oversubscribed, None);
        assert_eq!(
            p.cores,
            vec![vec![0, 1], vec![2, 3], vec![0, 1], vec![2, 3]]
        );
        assert_eq!(p.threads, vec![2; 4]);
        // Default threads: each rank's share of the mask.
        let p = plan(&masks, None, true);
        assert_eq!(p.threads, vec![2; 4]);
        assert_eq!(p.cores[1], vec![2, 3]);
        // Fewer threads than the share: still disjoint, the rest of the mask unused.
        let p = plan(&masks[..2], Some(1), true);
        assert_eq!(p.cores, vec![vec![0], vec![1]]);
    }

    #[test]
    fn a_mask_narrowed_per_rank_is_used_as_it_is() {
        // srun --cpu-bind=cores / OpenMPI --bind-to core: each rank its own T cores.
        let masks = [on(0, &[0, 1]), on(0, &[2, 3]), on(0, &[4, 5])];
        let p = plan(&masks, Some(2), true);
        assert_eq!(p.oversubscribed, None);
        assert_eq!(p.cores, vec![vec![0, 1], vec![2, 3], vec![4, 5]]);
        // More cores than threads in a private mask: its first T.
        let p = plan(&[on(0, &[8, 9, 10, 11])], Some(3), true);
        assert_eq!(p.cores, vec![vec![8, 9, 10]]);
        assert_eq!(plan(&masks, None, true).threads, vec![2, 2, 2]);
    }

    #[test]
    fn oversubscription_is_detected_and_runs_unpinned() {
        // 4 ranks × 1 thread on 2 shared cores.
        let masks = vec![on(0, &[0, 1]); 4];
        let p = plan(&masks, Some(1), true);
        assert!(p.cores.iter().all(Vec::is_empty));
        let w = p.warning().unwrap();
        assert!(w.starts_with("ringattn: warning: "), "{w}");
        assert!(
            w.contains("oversubscribed")
                && w.contains("4 ranks × 1 thread need 4 cores but 2 are allowed (0-1)"),
            "{w}"
        );
        assert_eq!(p.threads, vec![1; 4]);
        // Default threads never drop below 1, so the same holds without --threads.
        assert!(plan(&masks, None, true).oversubscribed.is_some());
        // 2 ranks × 2 threads on 2 cores.
        assert!(plan(&vec![on(0, &[0, 1]); 2], Some(2), true)
            .oversubscribed
            .is_some());
        // One rank's private mask too small for its threads.
        assert!(plan(&[on(0, &[3])], Some(2), true).oversubscribed.is_some());
        // Exactly full is fine; the same ranks on two nodes too.
        assert!(plan(&vec![on(0, &[0, 1]); 2], Some(1), true)
            .oversubscribed
            .is_none());
        assert!(plan(&[on(0, &[0, 1]), on(1, &[0, 1])], Some(2), true)
            .oversubscribed
            .is_none());
    }

    #[test]
    fn overlapping_masks_are_oversubscribed() {
        let masks = [on(0, &[0, 1, 2]), on(0, &[1, 2, 3])];
        let p = plan(&masks, Some(2), true);
        assert!(
            p.oversubscribed.as_deref().unwrap().contains("overlap"),
            "{p:?}"
        );
        assert!(p.cores.iter().all(Vec::is_empty));
    }

    #[test]
    fn no_pin_pins_nothing_but_still_reports_oversubscription() {
        let p = plan(&vec![on(0, &[0, 1]); 2], Some(1), false);
        assert_eq!(p.cores, vec![Vec::<usize>::new(); 2]);
        assert_eq!(p.oversubscribed, None);
        assert!(plan(&vec![on(0, &[0, 1]); 3], Some(1), false)
            .oversubscribed
            .is_some());
        // Zero threads (rejected later by the job's validation) pins nothing, silently.
        let p = plan(&[on(0, &[0])], Some(0), true);
        assert_eq!(p.cores, vec![Vec::<usize>::new()]);
        assert_eq!(p.oversubscribed, None);
    }
}
