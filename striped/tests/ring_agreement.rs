//! The full ring on local threads against itself ([`ring_cases::run_ring`]):
//!
//! - outputs agree across layouts and world sizes, and P = 1 equals one `attend` bitwise;
//! - causal balance of striped and zigzag (≤ 5 % spread of computed tiles) vs contiguous;
//! - an injected fault ends every rank within seconds, naming the failing rank.

mod ring_cases;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ring_cases::*;
use ringattn_ring::{ring_pass, FaultInjection, RingConfig};
use ringattn_runtime::local::local_world;
use ringattn_runtime::{
    attend, AttnState, Comm, Error, KvBlock, Mask, Positions, QShard, Synthetic, TileShape,
};
use ringattn_striped::LayoutKind;

#[test]
fn outputs_agree_across_layouts_and_world_sizes() {
    let problems = [
        (37usize, (8usize, 2usize), 16usize, true),
        (37, (4, 4), 80, false),
        (1000, (6, 1), 16, true),
        (1001, (4, 4), 64, false),
    ];
    for (n, (heads, kv_heads), dim, causal) in problems {
        let base_spec = Spec {
            layout: LayoutKind::Contiguous,
            p: 1,
            n,
            heads,
            kv_heads,
            dim,
            causal,
            seed: 11,
            tile: TileShape::default(),
        };
        let base = run_ring(&base_spec);
        check_reference(&base_spec, &base);
        for layout in LayoutKind::ALL {
            for p in WORLDS {
                let spec = Spec {
                    layout,
                    p,
                    tile: TileShape { q: 32, k: 16 },
                    ..base_spec
                };
                let run = run_ring(&spec);
                assert_runs_agree(&format!("{spec:?} vs contiguous P=1"), &run, &base);
            }
        }
    }
}

#[test]
fn single_rank_ring_equals_one_attend_bitwise() {
    for layout in LayoutKind::ALL {
        for (n, causal, tile) in [
            (37, true, TileShape { q: 7, k: 5 }),
            (300, false, TileShape::default()),
            (301, true, TileShape { q: 16, k: 32 }),
        ] {
            let spec = Spec {
                layout,
                p: 1,
                n,
                heads: 8,
                kv_heads: 2,
                dim: 64,
                causal,
                seed: 21,
                tile,
            };
            let run = run_ring(&spec);
            let src = Synthetic { seed: spec.seed };
            let q = QShard::from_source(&src, 8, 64, Positions::contiguous(0, n)).unwrap();
            let kv = KvBlock::from_source(&src, 0, 2, 64, Positions::contiguous(0, n)).unwrap();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            let mut state = AttnState::new(8, n, 64);
            let tiles = attend(&q, &kv, spec.mask(), tile, &mut state, &pool);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let ring_state = &run.states[0];
            assert!(
                bits(&ring_state.m) == bits(&state.m)
                    && bits(&ring_state.l) == bits(&state.l)
                    && bits(&ring_state.acc) == bits(&state.acc),
                "{spec:?}: P=1 ring state differs from one attend"
            );
            let fin = state.finalize();
            assert!(
                bits(&run.out) == bits(&fin.out) && bits(&run.lse) == bits(&fin.lse),
                "{spec:?}: outputs differ"
            );
            assert_eq!(run.stats[0].tiles, tiles, "{spec:?}: tile counts");
        }
    }
}

#[test]
fn causal_work_is_balanced_by_striped_and_zigzag() {
    let mut spreads = Vec::new();
    for layout in LayoutKind::ALL {
        let spec = Spec {
            layout,
            p: 4,
            n: 4096,
            heads: 1,
            kv_heads: 1,
            dim: 16,
            causal: true,
            seed: 8,
            tile: TileShape::default(),
        };
        let run = run_ring(&spec);
        check_reference(&spec, &run);
        let computed: Vec<u64> = run.stats.iter().map(|s| s.tiles.computed()).collect();
        let (max, min) = (
            *computed.iter().max().unwrap(),
            *computed.iter().min().unwrap(),
        );
        assert!(min > 0, "{layout}: a rank computed nothing: {computed:?}");
        let spread = max as f64 / min as f64 - 1.0;
        let compute_s: Vec<String> = run
            .stats
            .iter()
            .map(|s| format!("{:.4}", s.compute_s))
            .collect();
        println!(
            "balance {layout:>10}: computed tiles per rank {computed:?} (spread {:.2}%), compute_s {compute_s:?}",
            spread * 100.0
        );
        spreads.push((layout, computed, spread));
    }
    for (layout, computed, spread) in spreads {
        match layout {
            LayoutKind::Striped | LayoutKind::Zigzag | LayoutKind::Documents => {
                assert!(
                    spread <= 0.05,
                    "{layout}: computed tiles {computed:?} differ by {:.2}%",
                    spread * 100.0
                )
            }
            LayoutKind::Contiguous => {
                assert!(
                    spread > 1.0,
                    "contiguous should be unbalanced under causal: {computed:?}"
                )
            }
        }
    }
}

#[test]
fn injected_fault_ends_every_rank_naming_the_failed_rank() {
    const P: usize = 4;
    let fault = FaultInjection { rank: 1, step: 2 };
    let spec = Spec {
        layout: LayoutKind::Zigzag,
        p: P,
        n: 4099,
        heads: 4,
        kv_heads: 4,
        dim: 64,
        causal: true,
        seed: 5,
        tile: TileShape::default(),
    };
    let cfg = RingConfig {
        mask: spec.mask(),
        tile: spec.tile,
        fault: Some(fault),
    };
    let src = Synthetic { seed: spec.seed };
    let layout = spec.layout.build(&Mask::None);
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    for mut comm in local_world(P) {
        let tx = tx.clone();
        let cfg = cfg.clone();
        let layout = layout.clone();
        thread::spawn(move || {
            let rank = comm.rank();
            let positions = layout.positions(rank, P, spec.n);
            let q = QShard::from_source(&src, spec.heads, spec.dim, positions.clone()).unwrap();
            let kv = KvBlock::from_source(&src, rank, spec.kv_heads, spec.dim, positions).unwrap();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            // What a launcher worker does: the ring pass, then collect results on rank 0 (a
            // barrier stands in for the gather); on its own failure, abort the job.
            let ring = ring_pass(&mut comm, &q, kv, &cfg, &pool).map(|_| ());
            let ring_err = ring.as_ref().err().map(|e| e.to_string());
            let job = ring.and_then(|()| comm.barrier());
            if let Err(e) = &job {
                if !matches!(e, Error::Aborted { .. }) {
                    comm.abort(&e.to_string());
                }
            }
            tx.send((rank, ring_err, job, start.elapsed())).unwrap();
        });
    }
    drop(tx);
    let mut results = Vec::new();
    let deadline = start + Duration::from_secs(10);
    while results.len() < P {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(r) => results.push(r),
            Err(_) => panic!(
                "only {} of {P} ranks ended within 10 s: {:?}",
                results.len(),
                results
            ),
        }
    }
    results.sort_by_key(|r| r.0);
    for (rank, ring_err, job, took) in &results {
        println!("rank {rank}: ring {ring_err:?}, job {job:?} after {took:?}");
        assert!(*took < Duration::from_secs(10), "rank {rank} took {took:?}");
        match (rank, job) {
            (1, Err(Error::RankFailed { rank: 1, .. })) => {}
            (1, other) => panic!("rank 1 should report its own failure, got {other:?}"),
            (_, Err(Error::Aborted { rank: 1, reason })) => {
                assert!(
                    reason.contains("rank 1") && reason.contains("step 2"),
                    "rank {rank}: reason {reason:?}"
                )
            }
            (r, other) => panic!("rank {r} should be aborted by rank 1, got {other:?}"),
        }
    }
    // Rank 2 needs a block that only rank 1 would forward at step 2, so its ring pass itself
    // must end with the abort (ranks 0 and 3 may legitimately finish the ring first).
    let r2 = results[2].1.as_deref().unwrap_or("");
    assert!(
        r2.contains("aborted because rank 1 failed"),
        "rank 2's ring pass: {r2:?}"
    );
}
