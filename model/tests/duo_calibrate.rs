//! `duo calibrate` on the real model at tiny sizes: deterministic for a seed, scores in
//! [0, 1], and the written pattern reads back through the DuoAttention pattern loader and
//! `duo inspect` with its sink / recent sizes.

mod common;

use ringattn_model::calibrate::{calibrate, write_pattern, CalibrateSpec, Method};
use ringattn_ring::{DuoPattern, Selection};

fn spec(method: Method, seed: u64) -> CalibrateSpec {
    CalibrateSpec {
        context: 160,
        samples: 1,
        seed,
        method,
        sink: 4,
        recent: 16,
        threads: 1,
    }
}

#[test]
fn mass_calibration_is_deterministic_for_a_seed_and_depends_on_it() {
    let Some(model) = common::model() else { return };
    let a = calibrate(model, &spec(Method::Mass, 3), &mut |_| {}).unwrap();
    let b = calibrate(model, &spec(Method::Mass, 3), &mut |_| {}).unwrap();
    let c = calibrate(model, &spec(Method::Mass, 4), &mut |_| {}).unwrap();
    assert_eq!((a.layers, a.kv_heads), (30, 3));
    assert_eq!(a.scores, b.scores, "same seed, same scores (bitwise)");
    assert_ne!(a.scores, c.scores, "another seed, other documents");
    assert!(a.scores.iter().all(|s| (0.0..=1.0).contains(s)));
    assert!(a.scores.iter().any(|&s| s > 0.0));
}

#[test]
fn ablation_scores_are_normalised_to_the_largest_kl() {
    let Some(model) = common::model() else { return };
    let mut s = spec(Method::Ablation, 3);
    s.context = 128;
    let a = calibrate(model, &s, &mut |_| {}).unwrap();
    assert!(a.scores.iter().all(|s| (0.0..=1.0).contains(s)));
    assert!(a.raw.iter().all(|&k| k >= 0.0));
    let max = a.scores.iter().fold(0.0f64, |m, &x| m.max(x));
    assert_eq!(max, 1.0, "{:?}", a.raw);
}

#[test]
fn the_written_pattern_round_trips_through_the_loader_and_inspect() {
    let Some(model) = common::model() else { return };
    let cal = calibrate(model, &spec(Method::Mass, 1), &mut |_| {}).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_pattern(dir.path(), &cal, "SmolLM2", "test").unwrap();
    let pat = DuoPattern::load(dir.path()).unwrap();
    assert_eq!((pat.layers(), pat.kv_heads()), (30, 3));
    assert_eq!(
        (pat.config_sink(), pat.config_recent()),
        (Some(4), Some(16))
    );
    for (g, s) in pat.gates().iter().zip(&cal.scores) {
        assert!((g - s).abs() <= 5e-7, "{g} vs {s}");
    }
    let inspection = ringattn::duo_inspect::inspect(&ringattn::duo_inspect::InspectSpec {
        pattern: dir.path().to_path_buf(),
        selection: Selection::Sparsity(0.5),
        sink: None,
        recent: None,
        context: 8192,
        head_dim: 64,
        dtype: ringattn_runtime::Dtype::F32,
    })
    .unwrap();
    let json = inspection.json();
    assert_eq!(json["retrieval_kv_heads"], 45, "{json}");
    assert_eq!(json["sink"], 4, "{json}");
}

#[test]
fn bad_calibration_specs_are_typed_errors_naming_the_field() {
    let Some(model) = common::model() else { return };
    let field = |s: CalibrateSpec| match calibrate(model, &s, &mut |_| {}) {
        Err(ringattn_model::ModelError::Invalid { field, .. }) => field,
        other => panic!("{:?}", other.map(|c| c.layers)),
    };
    let mut s = spec(Method::Mass, 0);
    s.samples = 0;
    assert_eq!(field(s), "samples");
    let mut s = spec(Method::Mass, 0);
    s.context = 30;
    assert_eq!(field(s), "context");
    let mut s = spec(Method::Mass, 0);
    s.context = 100_000;
    assert_eq!(field(s), "context");
}
