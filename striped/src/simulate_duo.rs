//! The simulator for a DuoAttention run: the retrieval heads' ring pass with the run's mask,
//! then the streaming heads' pass with the streaming mask, one after the other (as
//! `ringattn_ring::duo_ring_pass` runs them), each simulated by [`simulate`] and summed.
//!
//! Compute is exact (the streaming heads' windows come from the same tile classification as the
//! kernel's). Transfers of the streaming pass carry only the rows later ranks attend, by the
//! ring pass's own rule (`ringattn_ring::still_needed`): one hop plus the sink with contiguous.

use ringattn_ring::{metrics, DuoPlan};
use ringattn_runtime::{Mask, Result};

use crate::simulate::{simulate, SimConfig, Simulation, StepSim};

/// Simulates `cfg` (whose `heads`/`kv_heads` are the whole model's) with the head kinds of
/// `plan`. Without streaming heads it is exactly [`simulate`].
pub fn simulate_duo(cfg: &SimConfig, plan: &DuoPlan) -> Result<Simulation> {
    let (retrieval, streaming) = (plan.retrieval_count(), plan.streaming_count());
    if streaming == 0 {
        return simulate(cfg);
    }
    let group = cfg.heads / cfg.kv_heads.max(1);
    let part = |kv_heads: usize, mask: Mask| SimConfig {
        heads: kv_heads * group,
        kv_heads,
        mask,
        ..cfg.clone()
    };
    let window = Mask::Streaming {
        sink: plan.sink,
        recent: plan.recent,
    };
    let s = simulate(&part(streaming, window))?;
    if retrieval == 0 {
        return Ok(s);
    }
    let r = simulate(&part(retrieval, cfg.mask.clone()))?;
    Ok(combine(r, s))
}

/// Two passes run one after the other: times, bytes, tiles and FLOPs add up.
fn combine(a: Simulation, b: Simulation) -> Simulation {
    let wall = a.predicted_wall_s + b.predicted_wall_s;
    let ranks: Vec<_> = a
        .ranks
        .iter()
        .zip(&b.ranks)
        .map(|(x, y)| {
            let mut r = x.clone();
            r.compute_s += y.compute_s;
            r.comm_wait_s += y.comm_wait_s;
            r.idle_s += y.idle_s;
            r.bytes_sent += y.bytes_sent;
            r.tiles_computed += y.tiles_computed;
            r
        })
        .collect();
    let flops = a.flops + b.flops;
    // Each rank's wait over its own wall (both passes, less its idle time at their ends).
    let overlap = metrics::overlap(ranks.iter().map(|r| (r.comm_wait_s, wall - r.idle_s)));
    let per_step = a
        .per_step
        .iter()
        .zip(&b.per_step)
        .map(|(x, y)| StepSim {
            step: x.step,
            start_s: x.start_s,
            end_s: a.predicted_wall_s + y.end_s,
            compute_max_s: x.compute_max_s + y.compute_max_s,
            compute_mean_s: x.compute_mean_s + y.compute_mean_s,
            compute_s: x
                .compute_s
                .as_ref()
                .zip(y.compute_s.as_ref())
                .map(|(p, q)| p.iter().zip(q).map(|(u, v)| u + v).collect()),
        })
        .collect();
    Simulation {
        predicted_wall_s: wall,
        predicted_imbalance: metrics::imbalance(ranks.iter().map(|r| r.compute_s)),
        bytes_per_rank: metrics::max_bytes(ranks.iter().map(|r| r.bytes_sent)),
        flops,
        predicted_gflops: metrics::gflops(flops, wall),
        predicted_overlap: overlap,
        full_block_s: a.full_block_s + b.full_block_s,
        hop_s: a.hop_s.max(b.hop_s),
        shared_cores: a.shared_cores,
        tile_count_calls: a.tile_count_calls + b.tile_count_calls,
        ranks,
        per_step,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partitioner::LayoutKind;
    use ringattn_ring::HeadKind;
    use ringattn_runtime::{Dtype, TileShape};

    fn cfg(layout: LayoutKind) -> SimConfig {
        SimConfig {
            world: 4,
            seq: 8192,
            heads: 8,
            kv_heads: 4,
            head_dim: 64,
            dtype: Dtype::F32,
            mask: Mask::Causal,
            layout,
            // Tiles small against the windows (320 keys), so they are costed at that grain.
            tile: TileShape { q: 64, k: 64 },
            gflops_per_rank: 100.0,
            partial_cost: 1.0,
            threads_per_rank: 1,
            cores: None,
            all_busy_speed: 1.0,
            link_gbps: f64::INFINITY,
            latency_us: 0.0,
        }
    }

    #[test]
    fn streaming_heads_cost_their_windows_and_all_retrieval_is_plain() {
        use HeadKind::{Retrieval as R, Streaming as S};
        for layout in LayoutKind::ALL {
            let c = cfg(layout);
            let plain = simulate(&c).unwrap();
            let all_r = DuoPlan::all_retrieval(4, 64, 256);
            let same = simulate_duo(&c, &all_r).unwrap();
            assert_eq!(same.predicted_wall_s, plain.predicted_wall_s);
            let half = DuoPlan {
                kinds: vec![R, S, R, S],
                sink: 64,
                recent: 256,
            };
            let duo = simulate_duo(&c, &half).unwrap();
            // Half the heads attend windows of 320 keys instead of up to 8192.
            assert!(duo.flops < 0.6 * plain.flops, "{layout}");
            assert!(
                duo.predicted_wall_s < 0.7 * plain.predicted_wall_s,
                "{layout}"
            );
            let tiles = |s: &Simulation| s.ranks.iter().map(|r| r.tiles_computed).sum::<u64>();
            assert!(tiles(&duo) < tiles(&plain));
            // Retrieval pass alone + streaming pass alone = the combined figures.
            let r = simulate(&SimConfig {
                heads: 4,
                kv_heads: 2,
                ..c.clone()
            })
            .unwrap();
            let s = simulate(&SimConfig {
                heads: 4,
                kv_heads: 2,
                mask: Mask::Streaming {
                    sink: 64,
                    recent: 256,
                },
                ..c.clone()
            })
            .unwrap();
            let sum = r.predicted_wall_s + s.predicted_wall_s;
            assert!((duo.predicted_wall_s - sum).abs() < 1e-12);
            assert_eq!(duo.flops, r.flops + s.flops);
        }
    }
}
