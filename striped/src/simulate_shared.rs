//! The processor-sharing engine of the simulator: ranks sharing one node's cores.
//!
//! When P ranks of T threads share C cores, the ranks computing at a moment share the cores
//! fairly: each progresses at `min(1, C / (T · active))` of its full speed, times the slowdown
//! that busy neighbours cause ([`SimConfig::shared_speed`]). A contiguous causal ring on an
//! oversubscribed node thus runs its busy ranks faster while the others idle, which a fixed
//! `C / (P·T)` slowdown would miss.
//!
//! Classic virtual-time formulation: `v` is the work (full-speed seconds) every active rank has
//! done since the start; a rank starting `w` seconds of work at virtual time `v0` ends when `v`
//! reaches `v0 + w`. Events (a rank becomes ready, a rank's compute ends) come from two heaps,
//! so the whole pass costs O(P² log P).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

use crate::simulate::{SimConfig, StepCosts, Trace};

/// A totally ordered f64 for the heaps (no NaN occurs: all times are finite sums).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Time(f64);

impl Eq for Time {}

impl PartialOrd for Time {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Time {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Per-rank progress.
#[derive(Clone, Debug, Default)]
struct RankState {
    /// Step it is on (or will start next).
    step: usize,
    /// Wall time its current compute started.
    started: f64,
    /// Wall time it finished its previous step (None while computing).
    finished: Option<f64>,
    /// Arrival times of blocks sent to it and not yet used, in step order.
    inbox: VecDeque<f64>,
    /// When its outgoing link is free again.
    send_free: f64,
    /// Tiles of the current step.
    tiles: u64,
    /// Whether it finished every step.
    done: bool,
    /// Whether a ready event for it is in the heap.
    queued: bool,
}

/// Runs the ring with shared cores, recording into `trace`.
pub(crate) fn run(cfg: &SimConfig, costs: &mut StepCosts<'_>, trace: &mut Trace) {
    let p = cfg.world;
    let rate = |active: usize| cfg.shared_speed(active);
    let mut ranks = vec![
        RankState {
            queued: true,
            ..RankState::default()
        };
        p
    ];
    // (ready time, rank) and (virtual end, rank).
    let mut ready: BinaryHeap<Reverse<(Time, usize)>> =
        (0..p).map(|r| Reverse((Time(0.0), r))).collect();
    let mut active: BinaryHeap<Reverse<(Time, usize)>> = BinaryHeap::new();
    let (mut now, mut virt) = (0.0f64, 0.0f64);
    loop {
        let f = rate(active.len());
        let next_end = active
            .peek()
            .map(|Reverse((Time(v), _))| now + (v - virt).max(0.0) / f);
        let next_ready = ready.peek().map(|Reverse((Time(t), _))| *t);
        let take_end = match (next_end, next_ready) {
            (None, None) => break,
            (Some(e), Some(r)) => e <= r,
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        if take_end {
            let Reverse((Time(v_end), r)) = active.pop().expect("peeked");
            let t = next_end.expect("peeked");
            virt = virt.max(v_end);
            now = t;
            finish_step(cfg, trace, &mut ranks, &mut ready, r, now);
        } else {
            let Reverse((Time(t), r)) = ready.pop().expect("peeked");
            virt += f * (t - now).max(0.0);
            now = now.max(t);
            ranks[r].queued = false;
            let step = ranks[r].step;
            if let Some(prev) = ranks[r].finished.take() {
                trace.wait(r, now - prev);
            }
            if step > 0 {
                ranks[r].inbox.pop_front();
            }
            if step + 1 < p {
                let source = costs.source(r, step);
                let (bytes, busy, latency) = costs.hop(r, step, source);
                let send_start = now.max(ranks[r].send_free);
                ranks[r].send_free = send_start + busy;
                trace.sent(r, bytes);
                let next = (r + 1) % p;
                ranks[next].inbox.push_back(send_start + busy + latency);
                // The next rank may be waiting for exactly this block.
                let n = &mut ranks[next];
                if let (Some(fin), false, false) = (n.finished, n.done, n.queued) {
                    n.queued = true;
                    ready.push(Reverse((Time(fin.max(n.inbox[0])), next)));
                }
            }
            let (work, tiles) = costs.compute(r, costs.source(r, step));
            ranks[r].started = now;
            ranks[r].tiles = tiles;
            active.push(Reverse((Time(virt + work), r)));
        }
    }
    for (r, s) in ranks.iter().enumerate() {
        debug_assert!(s.done, "rank {r} did not finish");
        trace.done(r, s.finished.unwrap_or(now));
    }
}

/// Rank `r` ended its compute at `now`: record it and queue its next step when its block is in.
fn finish_step(
    cfg: &SimConfig,
    trace: &mut Trace,
    ranks: &mut [RankState],
    ready: &mut BinaryHeap<Reverse<(Time, usize)>>,
    r: usize,
    now: f64,
) {
    let s = &mut ranks[r];
    trace.step(r, s.step, s.started, now - s.started, s.tiles);
    s.finished = Some(now);
    s.step += 1;
    if s.step == cfg.world {
        s.done = true;
        return;
    }
    if let Some(&arrival) = s.inbox.front() {
        s.queued = true;
        ready.push(Reverse((Time(now.max(arrival)), r)));
    }
}

#[cfg(test)]
mod tests {
    use ringattn_runtime::{Dtype, Mask, TileShape};

    use crate::partitioner::{LayoutKind, PARTIAL_TILE_COST};
    use crate::simulate::{run_dedicated, SimConfig, StepCosts, Trace};

    /// The processor-sharing engine with enough cores is the plain recurrence.
    #[test]
    fn both_engines_agree_when_no_core_is_shared() {
        for layout in LayoutKind::ALL {
            for (world, seq, link) in [(1, 100, 1.0), (3, 1000, 0.01), (5, 4099, f64::INFINITY)] {
                let cfg = SimConfig {
                    world,
                    seq,
                    heads: 2,
                    kv_heads: 1,
                    head_dim: 32,
                    dtype: Dtype::F32,
                    mask: Mask::Causal,
                    layout,
                    tile: TileShape { q: 16, k: 16 },
                    gflops_per_rank: 1.0,
                    partial_cost: PARTIAL_TILE_COST,
                    threads_per_rank: 1,
                    cores: Some(world),
                    all_busy_speed: 1.0,
                    link_gbps: link,
                    latency_us: 3.0,
                };
                let run = |shared: bool| {
                    let mut costs = StepCosts::new(&cfg);
                    let mut trace = Trace::new(world, true);
                    if shared {
                        super::run(&cfg, &mut costs, &mut trace);
                    } else {
                        run_dedicated(&cfg, &mut costs, &mut trace);
                    }
                    trace.finish(&cfg, &costs)
                };
                let (a, b) = (run(false), run(true));
                let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(1e-9);
                assert!(
                    close(a.predicted_wall_s, b.predicted_wall_s),
                    "{layout} P={world}"
                );
                for (ra, rb) in a.ranks.iter().zip(&b.ranks) {
                    assert!(close(ra.compute_s, rb.compute_s));
                    assert!(close(ra.comm_wait_s, rb.comm_wait_s), "{ra:?} {rb:?}");
                    assert_eq!(ra.bytes_sent, rb.bytes_sent);
                }
            }
        }
    }
}
