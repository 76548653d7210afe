//! The ring simulator against closed forms, its two engines against each other, and its speed
//! on thousands of ranks.

use std::time::Instant;

use ringattn_runtime::{Dtype, Mask, TileShape};
use ringattn_striped::{simulate, LayoutKind, SimConfig, PARTIAL_TILE_COST};

fn config(layout: LayoutKind, world: usize, seq: usize, mask: Mask) -> SimConfig {
    SimConfig {
        world,
        seq,
        heads: 4,
        kv_heads: 2,
        head_dim: 64,
        dtype: Dtype::F32,
        mask,
        layout,
        // Tiles small against the blocks (≥ 2048 rows), so the closed forms below (exact in the
        // limit of fine tiles) hold to within the stated tolerances.
        tile: TileShape { q: 64, k: 64 },
        gflops_per_rank: 50.0,
        partial_cost: PARTIAL_TILE_COST,
        threads_per_rank: 1,
        cores: None,
        all_busy_speed: 1.0,
        link_gbps: f64::INFINITY,
        latency_us: 0.0,
    }
}

#[test]
fn causal_makespans_match_the_closed_forms() {
    for world in [2usize, 4, 8] {
        let seq = world * 4096;
        let c = simulate(&config(LayoutKind::Contiguous, world, seq, Mask::Causal)).unwrap();
        let s = simulate(&config(LayoutKind::Striped, world, seq, Mask::Causal)).unwrap();
        let z = simulate(&config(LayoutKind::Zigzag, world, seq, Mask::Causal)).unwrap();
        let p = world as f64;
        let blocks = |w: f64| w / c.full_block_s;
        // Contiguous: rank P−1 works every step, half a block at step 0: P − ½ blocks.
        let cb = blocks(c.predicted_wall_s);
        assert!(
            (cb / (p - 0.5) - 1.0).abs() < 0.02,
            "P={world}: contiguous {cb:.3} blocks"
        );
        // Striped: a near-triangle per rank per step: ≈ P/2 blocks (a little more: the masked
        // diagonal tiles cost PARTIAL_TILE_COST).
        let sb = blocks(s.predicted_wall_s);
        assert!(
            (sb / (p / 2.0) - 1.0).abs() < 0.03,
            "P={world}: striped {sb:.3} blocks"
        );
        let zb = blocks(z.predicted_wall_s);
        assert!(
            (zb / (p / 2.0) - 1.0).abs() < 0.03,
            "P={world}: zigzag {zb:.3} blocks"
        );
        // Imbalance: contiguous (P − ½)/(P/2) in compute per rank; striped ≈ 1.
        let want = (p - 0.5) / (p / 2.0);
        assert!(
            (c.predicted_imbalance / want - 1.0).abs() < 0.02,
            "{}",
            c.predicted_imbalance
        );
        assert!(s.predicted_imbalance < 1.01, "{}", s.predicted_imbalance);
        // Non-causal: every layout takes P blocks.
        let n = simulate(&config(LayoutKind::Striped, world, seq, Mask::None)).unwrap();
        assert!((n.predicted_wall_s / c.full_block_s / p - 1.0).abs() < 1e-9);
    }
}

#[test]
fn bytes_and_slow_links_are_accounted() {
    let mut cfg = config(LayoutKind::Contiguous, 4, 4 * 1024, Mask::None);
    let fast = simulate(&cfg).unwrap();
    // 2 · rows · Hkv · D · 4 bytes per hop, P − 1 hops.
    assert_eq!(fast.bytes_per_rank, 3 * 2 * 1024 * 2 * 64 * 4);
    assert!(fast.predicted_overlap > 0.999);
    // A link so slow that a hop (1 MiB at 0.1 Gbit/s ≈ 84 ms) dwarfs a block (≈ 21 ms).
    cfg.link_gbps = 0.1;
    cfg.latency_us = 1000.0;
    let slow = simulate(&cfg).unwrap();
    let hop = 1e-3 + (2 * 1024 * 2 * 64 * 4) as f64 * 8.0 / 0.1e9;
    assert!((slow.hop_s - hop).abs() < 1e-12);
    // Step 0 computes, then every later step waits for its block: wall ≈ 3 hops + 1 block.
    let want = 3.0 * hop + fast.full_block_s;
    assert!(
        (slow.predicted_wall_s / want - 1.0).abs() < 1e-6,
        "{} vs {want}",
        slow.predicted_wall_s
    );
    assert!(slow.predicted_overlap < 0.5);
}

#[test]
fn oversubscribed_cores_are_shared_among_the_busy_ranks() {
    let seq = 4 * 2048;
    let mut c = config(LayoutKind::Contiguous, 4, seq, Mask::Causal);
    let dedicated = simulate(&c).unwrap();
    c.cores = Some(2);
    let shared = simulate(&c).unwrap();
    assert!(shared.shared_cores && !dedicated.shared_cores);
    let b = shared.full_block_s;
    // Step 0: 4 diagonals on 2 cores (1 block); step 1: 3 full blocks on 2 cores (1.5);
    // step 2: 2 blocks (1); step 3: rank 3 alone (1): 4.5 blocks (diagonals cost a bit more).
    let blocks = shared.predicted_wall_s / b;
    assert!((blocks / 4.5 - 1.0).abs() < 0.03, "{blocks:.3} blocks");
    assert!(blocks > dedicated.predicted_wall_s / b);
    // Striped on 2 cores: every rank busy every step, half speed: P/2 · 2 = 4 blocks.
    let mut s = config(LayoutKind::Striped, 4, seq, Mask::Causal);
    s.cores = Some(2);
    let striped = simulate(&s).unwrap();
    let sb = striped.predicted_wall_s / b;
    // (+4%: the diagonal tiles of 2048-row shards cost PARTIAL_TILE_COST.)
    assert!((sb / 4.0 - 1.0).abs() < 0.06, "{sb:.3} blocks");
    // Busy neighbours slow each other: at P = 2 on 2 cores with 0.8 speed when both compute,
    // step 0 (both busy) takes 1/0.8 as long, step 1 (rank 1 alone) does not.
    let mut two = config(LayoutKind::Contiguous, 2, 2 * 2048, Mask::Causal);
    let plain = simulate(&two).unwrap();
    two.cores = Some(2);
    two.all_busy_speed = 0.8;
    let slowed = simulate(&two).unwrap();
    assert!(slowed.shared_cores);
    let (r0, r1) = (&plain.ranks[0], &plain.ranks[1]);
    let step0 = plain.per_step[0].compute_max_s;
    assert!((slowed.ranks[0].compute_s - r0.compute_s / 0.8).abs() < 1e-9);
    assert!((slowed.ranks[1].compute_s - (r1.compute_s - step0 + step0 / 0.8)).abs() < 1e-9);
    // Enough cores: the shared engine is not used and nothing changes.
    c.cores = Some(4);
    let roomy = simulate(&c).unwrap();
    assert!(!roomy.shared_cores);
    assert_eq!(roomy.predicted_wall_s, dedicated.predicted_wall_s);
}

#[test]
fn thousands_of_ranks_and_millions_of_tokens_take_well_under_a_second() {
    for layout in LayoutKind::ALL {
        let mut cfg = config(layout, 4096, 16 << 20, Mask::Causal);
        cfg.heads = 32;
        cfg.kv_heads = 8;
        cfg.head_dim = 128;
        let t = Instant::now();
        let sim = simulate(&cfg).unwrap();
        let secs = t.elapsed().as_secs_f64();
        // Budget for a test build on a loaded 2-core machine; release takes a fraction.
        assert!(secs < 3.0, "{layout}: {secs:.2} s");
        assert_eq!(sim.per_step.len(), 4096);
        assert!(sim.per_step[0].compute_s.is_none());
        assert!(sim.predicted_wall_s > 0.0);
        if layout != LayoutKind::Contiguous {
            assert!(
                sim.predicted_imbalance < 1.01,
                "{layout}: {}",
                sim.predicted_imbalance
            );
        }
    }
}

#[test]
fn bad_input_is_a_user_error() {
    let mut cfg = config(LayoutKind::Striped, 4, 3, Mask::Causal);
    assert!(simulate(&cfg).unwrap_err().is_user_error());
    cfg.seq = 64;
    cfg.kv_heads = 3;
    assert!(simulate(&cfg)
        .unwrap_err()
        .to_string()
        .contains("--kv-heads 3"));
    cfg.kv_heads = 2;
    cfg.gflops_per_rank = 0.0;
    assert!(simulate(&cfg).is_err());
}
