//! Whole jobs through the library: `run_local` and `run_rank` on the same spec give bitwise the
//! same tensors, the check passes, and `validate` names fields.

use ringattn::{
    run_local, run_rank, run_threads, CheckRows, DocsSpec, DuoSpec, LayoutChoice, RunSpec,
};

fn spec() -> RunSpec {
    RunSpec {
        world: Some(3),
        seq: Some(301),
        heads: Some(4),
        kv_heads: Some(2),
        head_dim: Some(16),
        causal: true,
        layout: LayoutChoice::Zigzag,
        threads: Some(1),
        pin: false,
        check: Some(CheckRows::Auto),
        want_output: true,
        ..RunSpec::default()
    }
}

#[test]
fn run_local_and_run_rank_agree_bitwise_and_pass_the_check() {
    for duo in [
        None,
        Some(DuoSpec::RetrievalRatio {
            ratio: 0.5,
            sink: Some(4),
            recent: Some(32),
        }),
    ] {
        let spec = RunSpec { duo, ..spec() };
        spec.validate().unwrap();
        let local = run_local(&spec).unwrap();
        let check = local.report.check.as_ref().expect("a check");
        assert!(check.passed && check.rows_checked > 0);
        assert_eq!(
            (local.report.world, local.report.layout.as_str()),
            (3, "zigzag")
        );
        let out = local.out.expect("out");
        assert_eq!(out.len(), 4 * 301 * 16);
        let ranks = run_threads(3, |comm| run_rank(&spec, comm)).unwrap();
        let root = ranks.into_iter().find_map(|r| r.root).expect("root output");
        assert_eq!(
            root.out.expect("out"),
            out,
            "run_rank differs from run_local"
        );
        assert_eq!(root.lse, local.lse);
    }
}

#[test]
fn validate_names_fields_not_flags() {
    let bad = |s: RunSpec| s.validate().unwrap_err();
    let e = bad(RunSpec {
        seq: Some(0),
        ..spec()
    });
    assert_eq!(
        (e.field(), e.to_string()),
        (Some("seq"), "seq must be at least 1".into())
    );
    let e = bad(RunSpec {
        kv_heads: Some(3),
        ..spec()
    });
    assert_eq!(e.field(), Some("kv_heads"));
    let e = bad(RunSpec {
        world: Some(400),
        ..spec()
    });
    assert_eq!(e.field(), Some("world"));
    let e = bad(RunSpec {
        check: Some(CheckRows::Rows(0)),
        ..spec()
    });
    assert_eq!(e.field(), Some("check_rows"));
    let e = bad(RunSpec {
        causal: false,
        duo: Some(DuoSpec::RetrievalRatio {
            ratio: 0.5,
            sink: None,
            recent: None,
        }),
        ..spec()
    });
    assert!(!e.to_string().contains("--"), "{e}");
    let e = bad(RunSpec {
        layout: LayoutChoice::Docs,
        ..spec()
    });
    assert_eq!(e.field(), Some("layout"));
    assert!(!e.to_string().contains("--"), "{e}");
    // run_rank refuses a world other than the communicator's.
    let e = run_threads(2, |comm| run_rank(&spec(), comm).map(|_| ())).unwrap_err();
    assert!(e.to_string().contains("world"), "{e}");
}

/// The documents layout through whole jobs: uneven ranks (a long document split, short ones
/// whole), the check passes, run_rank gathers the same tensors, and `auto` weighs it.
#[test]
fn the_documents_layout_runs_uneven_ranks_exactly() {
    let lengths = vec![1, 150, 7, 3, 90, 50];
    for world in 1..=4 {
        let spec = RunSpec {
            world: Some(world),
            docs: Some(DocsSpec::Lengths(lengths.clone())),
            layout: LayoutChoice::Docs,
            ..spec()
        };
        spec.validate().unwrap();
        let local = run_local(&spec).unwrap();
        let check = local.report.check.as_ref().expect("a check");
        assert!(check.passed, "P={world}");
        assert_eq!(local.report.layout, "docs");
        let ranks = run_threads(world, |comm| run_rank(&spec, comm)).unwrap();
        let root = ranks.into_iter().find_map(|r| r.root).expect("root output");
        assert_eq!(root.out, local.out, "P={world}: run_rank differs");
        let auto = run_local(&RunSpec {
            layout: LayoutChoice::Auto,
            ..spec.clone()
        })
        .unwrap();
        if world > 1 {
            assert!(
                auto.report.layout_reason.contains("docs "),
                "{}",
                auto.report.layout_reason
            );
        }
    }
}
