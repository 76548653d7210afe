//! The hybrid-core scheduler on real kernel calls: it learns a slowed core's speed (busy times
//! from an injected cost model, so no assertion depends on real timing or on the machine's
//! load; `bench sched` measures the real thing), and no scheduler changes a single bit of the
//! result.

use ringattn_runtime::sched::topology::allowed_cpus;
use ringattn_runtime::sched::SlowCore;
use std::sync::Arc;

use ringattn_runtime::{
    attend, AttnState, BusyClock, BusyModel, KvBlock, Mask, Positions, QShard, SchedConfig,
    SchedKind, Scheduler, Synthetic, TileShape,
};

/// Tests here time threads pinned to the same cores: they must not run at the same time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn inputs(seq: usize, heads: usize, dim: usize) -> (QShard, KvBlock) {
    let source = Synthetic { seed: 7 };
    let pos = Positions::contiguous(0, seq);
    (
        QShard::from_source(&source, heads, dim, pos.clone()).unwrap(),
        KvBlock::from_source(&source, 0, heads / 2, dim, pos).unwrap(),
    )
}

/// Two threads, pinned to the first two allowed CPUs when there are two (else unpinned, and
/// the slow core is addressed by thread index).
fn two_threads(kind: SchedKind, slow: Vec<SlowCore>) -> (Scheduler, usize) {
    let cpus = allowed_cpus();
    let cores = if cpus.len() >= 2 {
        cpus[..2].to_vec()
    } else {
        Vec::new()
    };
    let slow_cpu = cores.get(1).copied().unwrap_or(1);
    let slow = slow
        .into_iter()
        .map(|s| SlowCore { cpu: slow_cpu, ..s })
        .collect();
    let cfg = SchedConfig {
        slow,
        ..SchedConfig::new(kind, 2, cores)
    };
    (Scheduler::new(cfg).unwrap(), slow_cpu)
}

#[test]
fn every_scheduler_gives_bitwise_the_same_state() {
    let _serial = serial();
    let (q, kv) = inputs(700, 8, 48);
    for mask in [
        Mask::None,
        Mask::Causal,
        Mask::Streaming {
            sink: 4,
            recent: 50,
        },
    ] {
        let run = |sched: &Scheduler| {
            let mut state = AttnState::new(q.heads, q.rows(), q.dim);
            attend(
                &q,
                &kv,
                mask.clone(),
                TileShape::default(),
                &mut state,
                sched,
            );
            state
        };
        let reference = run(&two_threads(SchedKind::Static, Vec::new()).0);
        for kind in [SchedKind::Hybrid, SchedKind::Rayon] {
            let slow = vec![SlowCore {
                cpu: 0,
                factor: 1.5,
            }];
            let sched = two_threads(kind, slow).0;
            for _ in 0..3 {
                // Hybrid ratios move between calls: the split changes, the bits do not.
                assert_eq!(run(&sched), reference, "{kind:?} {mask:?}");
            }
        }
        let one = Scheduler::new(SchedConfig::new(SchedKind::Hybrid, 1, Vec::new())).unwrap();
        assert_eq!(run(&one), reference, "one thread, {mask:?}");
    }
}

/// A scheduler whose busy times come from a cost model: thread `t` takes `per_unit[t]` seconds
/// per unit of item cost. Nothing here depends on the real clock or on the machine's load.
fn modelled(kind: SchedKind, threads: usize, per_unit: Vec<f64>) -> Scheduler {
    let model: BusyModel = Arc::new(move |t, work| work * per_unit[t]);
    Scheduler::new(SchedConfig::new(kind, threads, Vec::new()))
        .unwrap()
        .with_clock(BusyClock::Model(model))
}

/// One unmasked call on 192 equal items (8 heads × 24 query tiles of 64 rows).
fn call(sched: &Scheduler, q: &QShard, kv: &KvBlock) {
    let mut state = AttnState::new(q.heads, q.rows(), q.dim);
    let tile = TileShape { q: 64, k: 128 };
    attend(q, kv, Mask::None, tile, &mut state, sched);
}

#[test]
fn hybrid_ratios_reach_two_to_one_within_five_calls_when_thread_1_reports_twice_the_time() {
    let (q, kv) = inputs(1536, 8, 16);
    let sched = modelled(SchedKind::Hybrid, 2, vec![1e-3, 2e-3]);
    // α = 0.3 keeps 0.3 of the old ratio: after k calls r₀/r₁ = (4/3 − 0.3ᵏ/3)/(2/3 + 0.3ᵏ/3).
    let expected = [1.609, 1.871, 1.959, 1.988, 1.996];
    for (k, want) in expected.iter().enumerate() {
        call(&sched, &q, &kv);
        let rec = sched.last_call();
        assert!(rec.updated, "call {k}: {rec:?}");
        let r = sched.ratios(&rec.class);
        assert!((r[0] / r[1] - want).abs() < 2e-3, "call {k}: ratios {r:?}");
    }
    // The fifth call already ran on ~2:1 ratios: a 2:1 split of the work (items are whole,
    // 192 of them) and busy times within 3% of each other.
    let rec = sched.last_call();
    let split = rec.work[0] / rec.work[1];
    assert!((split / 2.0 - 1.0).abs() < 0.03, "split {split} ({rec:?})");
    let spread = rec.busy_s[0].max(rec.busy_s[1]) / rec.busy_s[0].min(rec.busy_s[1]);
    assert!(spread < 1.03, "busy spread {spread} ({rec:?})");
}

#[test]
fn hybrid_learns_a_slow_core_flag_through_the_model_and_three_threads() {
    // Thread 2 slowed 3× by the testing aid (its modelled time is multiplied, nothing spins).
    let (q, kv) = inputs(1536, 8, 16);
    let cfg = SchedConfig {
        slow: vec![SlowCore {
            cpu: 2,
            factor: 3.0,
        }],
        ..SchedConfig::new(SchedKind::Hybrid, 3, Vec::new())
    };
    let model: BusyModel = Arc::new(|_, work| work * 1e-3);
    let sched = Scheduler::new(cfg)
        .unwrap()
        .with_clock(BusyClock::Model(model));
    for _ in 0..8 {
        call(&sched, &q, &kv);
    }
    let r = sched.ratios(&sched.last_call().class);
    // Speeds 1 : 1 : 1/3 → ratios 3/7 · (3, 3, 1).
    for (got, want) in r.iter().zip([9.0 / 7.0, 9.0 / 7.0, 3.0 / 7.0]) {
        assert!((got - want).abs() < 1e-3, "ratios {r:?}");
    }
}

#[test]
fn calls_the_model_times_below_the_floor_do_not_move_the_ratios() {
    let (q, kv) = inputs(256, 2, 16);
    // 1 ns per unit: every thread's busy time is far below MIN_BUSY_S.
    let sched = modelled(SchedKind::Hybrid, 2, vec![1e-9, 2e-9]);
    call(&sched, &q, &kv);
    let rec = sched.last_call();
    assert!(!rec.updated);
    assert_eq!(sched.ratios(&rec.class), vec![1.0, 1.0]);
}

#[test]
fn static_and_rayon_report_the_modelled_times_and_never_learn() {
    let (q, kv) = inputs(1536, 8, 16);
    for kind in [SchedKind::Static, SchedKind::Rayon] {
        let sched = modelled(kind, 2, vec![1e-3, 2e-3]);
        for _ in 0..3 {
            call(&sched, &q, &kv);
        }
        let rec = sched.last_call();
        assert!(!rec.updated, "{kind:?}");
        assert_eq!(sched.ratios(&rec.class), vec![1.0, 1.0]);
        // 192 items × (1 + 12 key tiles) cost units, each thread's share at its own rate.
        let total: f64 = rec.busy_s[0] / 1e-3 + rec.busy_s[1] / 2e-3;
        assert!((total - 192.0 * 13.0).abs() < 1e-6, "{kind:?} {rec:?}");
        if kind == SchedKind::Static {
            assert!(
                (rec.busy_s[1] / rec.busy_s[0] - 2.0).abs() < 1e-9,
                "{rec:?}"
            );
        }
    }
}

#[test]
fn static_and_rayon_keep_ratios_even() {
    let _serial = serial();
    let (q, kv) = inputs(512, 4, 32);
    for kind in [SchedKind::Static, SchedKind::Rayon] {
        let (sched, _) = two_threads(
            kind,
            vec![SlowCore {
                cpu: 0,
                factor: 2.0,
            }],
        );
        let mut state = AttnState::new(q.heads, q.rows(), q.dim);
        attend(
            &q,
            &kv,
            Mask::Causal,
            TileShape::default(),
            &mut state,
            &sched,
        );
        let call = sched.last_call();
        assert!(!call.updated);
        assert_eq!(sched.ratios(&call.class), vec![1.0, 1.0]);
        assert_eq!(call.busy_s.len(), 2);
    }
}
