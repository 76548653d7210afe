//! Absurd sizes (up to `usize::MAX` tokens, ranks, heads, tiles, steps) are typed errors or
//! cheap, never an overflow panic, an allocation abort or a hang — across layouts, the
//! partitioner, the simulator, the memory estimators and the runtime's buffers.

use ringattn_ring::duo::DuoPlan;
use ringattn_runtime::memory::{self, DecodeShape, RunShape};
use ringattn_runtime::{
    AttnState, Dtype, KvBlock, KvCache, Mask, Positions, QShard, Run, Synthetic, TileShape,
};
use ringattn_striped::partitioner::{plan, plan_mixed, HeadMix, LayoutChoice};
use ringattn_striped::simulate_duo;
use ringattn_striped::{simulate, LayoutKind, SimConfig};

const M: usize = usize::MAX;

fn sim(world: usize, seq: usize, mask: Mask, layout: LayoutKind) -> SimConfig {
    SimConfig {
        world,
        seq,
        heads: 4,
        kv_heads: 2,
        head_dim: 64,
        dtype: Dtype::F32,
        mask,
        layout,
        tile: TileShape { q: 128, k: 128 },
        gflops_per_rank: 50.0,
        partial_cost: 1.5,
        threads_per_rank: 1,
        cores: None,
        all_busy_speed: 1.0,
        link_gbps: 100.0,
        latency_us: 1.0,
    }
}

#[test]
fn layouts_cover_huge_sequences_without_overflow() {
    for kind in LayoutKind::ALL {
        let built = kind.build(&Mask::None);
        let layout = &*built;
        for (world, seq) in [(1, M), (2, M), (M, M), (M - 1, M), (3, M - 5), (1 << 63, M)] {
            let mut total: u128 = 0;
            // The first and last ranks (all ranks is 2^64 of them).
            for rank in [0, 1, world / 2, world.saturating_sub(2), world - 1] {
                if rank < world {
                    let p = layout.positions(rank, world, seq);
                    assert!(p.len() <= seq);
                    total += p.len() as u128;
                }
            }
            assert!(total <= 5 * seq as u128, "{kind} P={world}");
            let _ = layout.decode_owner(seq, world, seq);
        }
    }
}

#[test]
fn positions_refuse_runs_past_the_top() {
    let run = |start, len, stride| Run { start, len, stride };
    assert!(Positions::new([run(M - 3, 4, 1)]).is_ok());
    assert!(Positions::new([run(M - 3, 5, 1)]).is_err());
    assert!(Positions::new([run(1, 3, M / 2)]).is_ok());
    assert!(Positions::new([run(2, 3, M / 2)]).is_err());
    assert!(Positions::new([run(0, 2, M)]).is_ok());
}

#[test]
fn simulator_refuses_or_handles_absurd_sizes_quickly() {
    let streaming = Mask::Streaming { sink: 4, recent: M };
    let refused = [
        sim(
            1_000_000_000,
            2_000_000_000,
            Mask::Causal,
            LayoutKind::Striped,
        ),
        sim(M, M, Mask::Causal, LayoutKind::Contiguous),
        sim(1, M, Mask::Causal, LayoutKind::Contiguous),
        sim(8, M, Mask::None, LayoutKind::Zigzag),
        sim(64, 1 << 40, streaming.clone(), LayoutKind::Contiguous),
        SimConfig {
            heads: M,
            kv_heads: M,
            head_dim: M,
            ..sim(4, 1 << 20, Mask::Causal, LayoutKind::Striped)
        },
    ];
    for cfg in refused {
        let err = simulate(&cfg).unwrap_err();
        assert!(err.is_user_error(), "{err}");
    }
    // Huge tiles, windows and core counts are fine: they only make the tiles few.
    let ok = [
        SimConfig {
            tile: TileShape { q: M, k: M },
            ..sim(4, 1 << 20, Mask::Causal, LayoutKind::Striped)
        },
        SimConfig {
            threads_per_rank: M,
            cores: Some(M),
            ..sim(4, 4096, Mask::Causal, LayoutKind::Zigzag)
        },
        sim(4, 4096, streaming, LayoutKind::Contiguous),
    ];
    for cfg in ok {
        let s = simulate(&cfg).unwrap();
        assert!(s.predicted_wall_s.is_finite(), "{cfg:?}");
    }
    // A tile larger than the shards costs what the shard holds.
    let huge_tiles = SimConfig {
        tile: TileShape { q: M, k: M },
        ..sim(4, 1 << 20, Mask::Causal, LayoutKind::Striped)
    };
    let shard_tiles = SimConfig {
        tile: TileShape {
            q: 1 << 18,
            k: 1 << 18,
        },
        ..huge_tiles.clone()
    };
    assert_eq!(
        simulate(&huge_tiles).unwrap().predicted_wall_s,
        simulate(&shard_tiles).unwrap().predicted_wall_s
    );
    let plan = DuoPlan {
        kinds: vec![ringattn_ring::HeadKind::Streaming; 2],
        sink: M,
        recent: M,
    };
    assert!(simulate_duo(&sim(4, 4096, Mask::Causal, LayoutKind::Striped), &plan).is_ok());
    assert!(simulate_duo(&sim(M, M, Mask::Causal, LayoutKind::Striped), &plan).is_err());
}

#[test]
fn partitioner_skips_its_model_when_it_would_be_huge() {
    let tile = TileShape::default();
    for (world, seq) in [(100_000, 200_000), (1 << 20, M), (4, M), (1, M)] {
        let p = plan(LayoutChoice::Auto, world, seq, Mask::Causal, tile);
        assert!(
            p.estimates.is_empty() && p.reason.contains("skipped"),
            "{}",
            p.reason
        );
        let fixed = plan(
            LayoutChoice::Fixed(LayoutKind::Zigzag),
            world,
            seq,
            Mask::None,
            tile,
        );
        assert_eq!(fixed.kind, LayoutKind::Zigzag);
    }
    let mix = HeadMix {
        retrieval: 1,
        streaming: 1,
        streaming_mask: Mask::Streaming { sink: M, recent: M },
    };
    let p = plan_mixed(LayoutChoice::Auto, 4, 4096, Mask::Causal, tile, Some(&mix));
    assert_eq!(p.estimates.len(), 3, "{}", p.reason);
}

#[test]
fn buffers_of_absurd_size_are_errors_not_aborts() {
    let src = Synthetic { seed: 1 };
    let pos = Positions::contiguous(0, 4);
    assert!(QShard::from_source(&src, M, 8, pos.clone()).is_err_and(|e| e.is_user_error()));
    assert!(QShard::from_source(&src, 2, M / 2, pos.clone()).is_err());
    assert!(KvBlock::from_source(&src, 0, 1 << 62, 8, pos).is_err());
    assert!(AttnState::try_new(M, 2, 2).is_err_and(|e| e.is_user_error()));
    assert!(AttnState::try_new(1 << 40, 1 << 20, 1).is_err());
    assert!(AttnState::try_new(2, 3, 4).is_ok());
    assert!(KvCache::try_new(M / 2, Dtype::F32, &[4]).is_err_and(|e| e.is_user_error()));
    assert!(KvCache::try_new(8, Dtype::Bf16, &[1 << 62, 1 << 62]).is_err());
    assert!(KvCache::try_new(8, Dtype::Bf16, &[16, 0]).is_ok());
}

#[test]
fn memory_estimates_of_the_issue_cases_are_refused_or_errors() {
    let base = RunShape {
        seq: 4096,
        world: 1,
        heads: 8,
        kv_heads: 8,
        head_dim: 64,
        kv_elem_bytes: 4,
        tile_q: 256,
        tile_k: 128,
        threads: 1,
    };
    let huge_machine = memory::Available {
        bytes: 1 << 40,
        limit: "test".into(),
    };
    let cases = [
        RunShape {
            seq: 10_000_000_000,
            ..base
        },
        RunShape {
            heads: 1_000_000_000,
            kv_heads: 1_000_000_000,
            ..base
        },
        RunShape {
            head_dim: 100_000_000,
            ..base
        },
        RunShape {
            tile_q: 1_000_000_000,
            tile_k: 1_000_000_000,
            ..base
        },
        RunShape { seq: M, ..base },
        RunShape {
            seq: M,
            world: M,
            ..base
        },
        RunShape {
            seq: 200_000,
            world: 100_000,
            heads: 1,
            kv_heads: 1,
            head_dim: 16,
            ..base
        },
    ];
    for (i, s) in cases.iter().enumerate() {
        let ranks = s.world;
        let refused = memory::run_bytes(s, ranks).and_then(|n| {
            memory::check_fits_in(n.per_process.max(n.per_rank), "the run", &huge_machine)
        });
        // The last case is small per rank, but 100,000 local ranks' kernel scratch is not.
        if i + 1 < cases.len() {
            assert!(refused.is_err_and(|e| e.is_user_error()), "case {i}: {s:?}");
        }
    }
    for (prefill, steps) in [(10_000_000_000, 1), (4096, 1_000_000_000_000), (M, M)] {
        let d = DecodeShape {
            prefill: RunShape {
                seq: prefill,
                ..base
            },
            steps,
        };
        let refused = memory::decode_bytes(&d, 1)
            .and_then(|n| memory::check_fits_in(n.per_process, "the decode", &huge_machine));
        assert!(refused.is_err_and(|e| e.is_user_error()), "{d:?}");
    }
}

#[test]
fn decode_owner_is_the_owner_of_the_last_prefill_token() {
    for kind in LayoutKind::ALL {
        let built = kind.build(&Mask::None);
        let layout = &*built;
        for world in 1..9 {
            for seq in 1..40 {
                let last = seq - 1;
                let brute = (0..world)
                    .find(|&r| layout.positions(r, world, seq).local_index(last).is_some())
                    .unwrap();
                assert_eq!(
                    layout.decode_owner(last, world, seq),
                    brute,
                    "{kind} P={world} N={seq}"
                );
            }
        }
        // O(1) at the top of usize.
        let _ = layout.decode_owner(M, M, M);
    }
}
