//! The ring pass beside its code: every rank's rows against the exact f64 attention, on the
//! contiguous layout and a round-robin one defined here (any `Layout` works), P = 1..4, uneven
//! N, GQA, causal or not, small tiles; and an injected fault ends the pass with an error.

use ringattn_ring::{ring_pass, Contiguous, FaultInjection, Layout, RingConfig};
use ringattn_runtime::{
    Comm, Error, KvBlock, Mask, Positions, QShard, Synthetic, TensorKind, TileShape,
};
use ringattn_testutil::{max_abs_diff, on_ranks, one_thread, reference_attention, whole};

/// Token i on rank i mod P (as striped, which lives in a crate above this one).
#[derive(Debug)]
struct RoundRobin;

impl Layout for RoundRobin {
    fn name(&self) -> &'static str {
        "round-robin"
    }
    fn positions(&self, rank: usize, world: usize, seq: usize) -> Positions {
        Positions::strided(rank, (seq - rank.min(seq)).div_ceil(world), world)
    }
}

struct Case {
    world: usize,
    seq: usize,
    heads: usize,
    kv_heads: usize,
    dim: usize,
    mask: Mask,
}

/// One rank's positions, out and lse.
type RankRows = (Vec<usize>, Vec<f32>, Vec<f32>);

/// Every rank's rows of one ring pass.
fn run(
    layout: &dyn Layout,
    c: &Case,
    fault: Option<FaultInjection>,
) -> Vec<Result<RankRows, Error>> {
    let src = Synthetic { seed: 5 };
    let cfg = RingConfig {
        mask: c.mask.clone(),
        tile: TileShape { q: 8, k: 8 },
        fault,
    };
    on_ranks(c.world, |comm: &mut dyn Comm| {
        let pos = layout.positions(comm.rank(), c.world, c.seq);
        let q = QShard::from_source(&src, c.heads, c.dim, pos.clone())?;
        let kv = KvBlock::from_source(&src, comm.rank(), c.kv_heads, c.dim, pos.clone())?;
        let result = ring_pass(comm, &q, kv, &cfg, &one_thread());
        if let Err(e) = &result {
            comm.abort(&e.to_string());
        }
        let fin = result?.0.finalize();
        Ok((pos.iter().collect(), fin.out, fin.lse))
    })
}

#[test]
fn every_rank_matches_the_reference() {
    let layouts: [&dyn Layout; 2] = [&Contiguous, &RoundRobin];
    for layout in layouts {
        for world in 1..=4 {
            for (seq, mask) in [(37, Mask::Causal), (29, Mask::None)] {
                let c = Case {
                    world,
                    seq,
                    heads: 4,
                    kv_heads: 2,
                    dim: 12,
                    mask: mask.clone(),
                };
                let src = Synthetic { seed: 5 };
                let (q, k, v) = (
                    whole(&src, TensorKind::Q, c.heads, seq, c.dim),
                    whole(&src, TensorKind::K, c.kv_heads, seq, c.dim),
                    whole(&src, TensorKind::V, c.kv_heads, seq, c.dim),
                );
                let (r_out, r_lse) =
                    reference_attention(&q, &k, &v, (c.heads, c.kv_heads, seq, c.dim), |_| {
                        mask.clone()
                    });
                for rank in run(layout, &c, None) {
                    let (pos, out, lse) = rank.unwrap();
                    for h in 0..c.heads {
                        for (i, &p) in pos.iter().enumerate() {
                            let row = h * pos.len() + i;
                            let want = h * seq + p;
                            let d = c.dim;
                            let e = max_abs_diff(
                                &out[row * d..(row + 1) * d],
                                &r_out[want * d..(want + 1) * d],
                            );
                            assert!(
                                e <= 2e-5,
                                "{} P={world} N={seq} h{h} p{p}: out err {e}",
                                layout.name()
                            );
                            let e = max_abs_diff(&lse[row..row + 1], &r_lse[want..want + 1]);
                            assert!(
                                e <= 1e-5,
                                "{} P={world} N={seq} h{h} p{p}: lse err {e}",
                                layout.name()
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn an_injected_fault_ends_every_rank_with_an_error() {
    let c = Case {
        world: 3,
        seq: 30,
        heads: 2,
        kv_heads: 1,
        dim: 8,
        mask: Mask::Causal,
    };
    // At step 0 rank 1 sends nothing, so every other rank waits on a block that depends on it
    // (rank 2 at step 0, rank 0 at step 1): all of them must end with an error, none hang.
    let results = run(&Contiguous, &c, Some(FaultInjection { rank: 1, step: 0 }));
    for (rank, r) in results.iter().enumerate() {
        assert!(r.is_err(), "rank {rank} finished despite the fault");
    }
    let own = results[1].as_ref().unwrap_err().to_string();
    assert!(own.contains("injected fault"), "{own}");
}

#[test]
fn a_fault_mid_pass_ends_the_failed_rank_and_the_ranks_waiting_on_it() {
    let c = Case {
        world: 3,
        seq: 30,
        heads: 2,
        kv_heads: 1,
        dim: 8,
        mask: Mask::Causal,
    };
    // At step 1 rank 1 fails before forwarding; rank 2 waits on it and must fail. Rank 0 has
    // already received everything its last step needs, so it may finish or see the abort:
    // both are right (a launcher's gather after the pass then fails), hanging is not.
    let results = run(&Contiguous, &c, Some(FaultInjection { rank: 1, step: 1 }));
    let own = results[1].as_ref().unwrap_err().to_string();
    assert!(own.contains("injected fault at ring step 1"), "{own}");
    assert!(
        results[2].is_err(),
        "rank 2 finished without rank 1's block"
    );
}
