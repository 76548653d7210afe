//! Unit tests of pattern parsing and head selection.

use super::*;

fn parse(text: &str) -> Result<DuoPattern> {
    DuoPattern::parse(text, Path::new("p.tsv"))
}

fn reason(e: Error) -> String {
    match e {
        Error::BadInput { reason, .. } => reason,
        other => panic!("expected BadInput, got {other:?}"),
    }
}

/// 2 layers × 4 heads with ties at 1.0 and 0.0.
const SMALL: &str = "1.0\t0.0\t5.0e-01\t1.000000000000000000e+00\n0.0 0.25  -1.3e-04 0.9\n";

#[test]
fn parses_savetxt_clips_and_skips_blank_and_comment_lines() {
    let p = parse(&format!("# header\n\n{SMALL}\n")).unwrap();
    assert_eq!((p.layers(), p.kv_heads()), (2, 4));
    assert_eq!(p.gate(0, 2), 0.5);
    assert_eq!(p.gate(1, 2), 0.0, "tiny negatives clip to 0");
    assert_eq!(p.gate(0, 3), 1.0);
    assert_eq!(parse("1.5 -2").unwrap().gates(), &[1.0, 0.0]);
}

#[test]
fn threshold_keeps_gates_at_or_above() {
    let p = parse(SMALL).unwrap();
    assert_eq!(
        p.retrieval_per_layer(Selection::Threshold(0.5)).unwrap(),
        vec![3, 1]
    );
    assert_eq!(p.threshold(Selection::Threshold(0.5)).unwrap(), 0.5);
    assert_eq!(
        p.retrieval_per_layer(Selection::Threshold(0.0)).unwrap(),
        vec![4, 4]
    );
    assert!(p.select(Selection::Threshold(f64::NAN)).is_err());
}

#[test]
fn sparsity_breaks_ties_by_the_fixed_key() {
    // Gates row-major: l0 = [1, 0, .5, 1], l1 = [0, .25, 0, .9]; ties at 0.0 (entries 1, 4, 6)
    // and at 1.0 (entries 0, 3) are ordered by tie_key.
    let p = parse(SMALL).unwrap();
    let by_key = |mut v: Vec<usize>| {
        v.sort_by_key(|&i| tie_key(i));
        v
    };
    let zeros = by_key(vec![1, 4, 6]);
    let ones = by_key(vec![0, 3]);
    // 2 of 8 streaming: the first two zeros in key order.
    let (kinds, t) = p.select(Selection::Sparsity(0.25)).unwrap();
    let streaming: Vec<usize> = (0..8).filter(|&i| !kinds[i]).collect();
    let mut expected = zeros[..2].to_vec();
    expected.sort();
    assert_eq!(streaming, expected);
    assert_eq!(t, 0.0);
    assert_eq!(
        p.retrieval_per_layer(Selection::Sparsity(0.5)).unwrap(),
        vec![3, 1]
    );
    assert_eq!(p.threshold(Selection::Sparsity(0.5)).unwrap(), 0.5);
    // 7 of 8 streaming: the tie at 1.0 keeps the one with the larger key.
    let (kinds, _) = p.select(Selection::Sparsity(0.875)).unwrap();
    assert_eq!(
        (0..8).filter(|&i| kinds[i]).collect::<Vec<_>>(),
        vec![ones[1]]
    );
    assert_eq!(
        p.retrieval_per_layer(Selection::Sparsity(0.0)).unwrap(),
        vec![4, 4]
    );
    assert_eq!(
        p.retrieval_per_layer(Selection::Sparsity(1.0)).unwrap(),
        vec![0, 0]
    );
    assert_eq!(
        p.threshold(Selection::Sparsity(1.0)).unwrap(),
        NO_RETRIEVAL_THRESHOLD
    );
    for bad in [-0.1, 1.1, f64::NAN] {
        assert!(p.select(Selection::Sparsity(bad)).is_err(), "{bad}");
    }
}

#[test]
fn tie_key_is_a_fixed_permutation_of_small_indices() {
    // SplitMix64's published first output for state 0 (seed + golden gamma).
    assert_eq!(tie_key(0), 0xE220_A839_7B1D_CDAF);
    let mut keys: Vec<u64> = (0..1024).map(tie_key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 1024);
}

#[test]
fn plan_checks_layer_window_and_columns() {
    let p = parse(SMALL).unwrap();
    let plan = p.plan(0, Selection::Threshold(0.5), 64, 256).unwrap();
    assert_eq!(
        (plan.sink, plan.recent, plan.retrieval_count()),
        (64, 256, 3)
    );
    let e = p.plan(2, Selection::Threshold(0.5), 64, 256).unwrap_err();
    assert!(e.to_string().contains("--layer 2 out of range"), "{e}");
    assert!(p.plan(0, Selection::Threshold(0.5), 64, 0).is_err());
    assert!(p.check_kv_heads(4).is_ok());
    let e = reason(p.check_kv_heads(8).unwrap_err());
    assert!(
        e.contains("4 KV heads") && e.contains("--kv-heads 8"),
        "{e}"
    );
}

#[test]
fn malformed_text_is_a_typed_error_with_position() {
    let e = reason(parse("0.1 0.2\n0.3 abc\n").unwrap_err());
    assert!(e.contains("line 2, column 2") && e.contains("`abc`"), "{e}");
    let e = reason(parse("0.1 nan\n").unwrap_err());
    assert!(e.contains("line 1, column 2") && e.contains("NaN"), "{e}");
    let e = reason(parse("0.1 0.2\ninf 0.2\n").unwrap_err());
    assert!(
        e.contains("line 2, column 1") && e.contains("finite"),
        "{e}"
    );
    let e = reason(parse("0.1 0.2\n0.3\n").unwrap_err());
    assert!(e.contains("ragged") && e.contains("line 2 has 1"), "{e}");
    let e = reason(parse("").unwrap_err());
    assert!(e.contains("empty"), "{e}");
    let e = reason(parse("\n  \n# only a comment\n").unwrap_err());
    assert!(e.contains("empty"), "{e}");
}

#[test]
fn load_reads_directory_config_and_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(PATTERN_FILE), SMALL).unwrap();
    let alone = DuoPattern::load(&dir.path().join(PATTERN_FILE)).unwrap();
    assert_eq!((alone.sink_or(None), alone.recent_or(None)), (64, 256));
    // A directory without config.json: defaults.
    let p = DuoPattern::load(dir.path()).unwrap();
    assert_eq!(p.config_sink(), None);
    std::fs::write(
        dir.path().join(CONFIG_FILE),
        r#"{"sink_size": 128, "recent_size": 512, "deploy_sink_size": null}"#,
    )
    .unwrap();
    let p = DuoPattern::load(dir.path()).unwrap();
    assert_eq!((p.sink_or(None), p.recent_or(None)), (128, 512));
    assert_eq!((p.sink_or(Some(4)), p.recent_or(Some(16))), (4, 16));
    std::fs::write(dir.path().join(CONFIG_FILE), r#"{"sink_size": -1}"#).unwrap();
    let e = reason(DuoPattern::load(dir.path()).unwrap_err());
    assert!(e.contains("sink_size"), "{e}");
    std::fs::write(dir.path().join(CONFIG_FILE), "{").unwrap();
    assert!(DuoPattern::load(dir.path()).is_err());
    let e = reason(DuoPattern::load(&dir.path().join("missing")).unwrap_err());
    assert!(e.contains(PATTERN_FILE), "{e}");
    let empty = tempfile::tempdir().unwrap();
    assert!(
        DuoPattern::load(empty.path()).is_err(),
        "directory without the TSV"
    );
}

#[test]
fn synthetic_ratio_spreads_heads_evenly() {
    let heads = |n: usize, r: f64| {
        DuoPlan::with_retrieval_ratio(n, r, 4, 8)
            .unwrap()
            .kv_heads_of(HeadKind::Retrieval)
    };
    assert_eq!(heads(8, 0.5), vec![1, 3, 5, 7]);
    assert_eq!(heads(8, 0.25), vec![2, 6]);
    assert_eq!(heads(8, 1.0), (0..8).collect::<Vec<_>>());
    assert_eq!(heads(8, 0.0), Vec::<usize>::new());
    assert_eq!(heads(32, 0.25).len(), 8);
    assert_eq!(heads(3, 0.5), vec![0, 2], "round(1.5) = 2");
    for n in 1..40 {
        for i in 0..=20 {
            let r = i as f64 / 20.0;
            assert_eq!(heads(n, r).len(), (r * n as f64).round() as usize);
        }
    }
    assert!(DuoPlan::with_retrieval_ratio(8, 1.5, 4, 8).is_err());
    assert!(DuoPlan::with_retrieval_ratio(8, 0.5, 4, 0).is_err());
}
