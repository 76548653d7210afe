//! A DuoAttention run through `Job` (the CLI flags are wired by `duo_args`): local backend,
//! `--check` with per-head masks, report fields and FLOPs.

use clap::Parser;
use ringattn_ring::{DuoPlan, HeadKind};
use ringattn_runtime::Mask;

use crate::run::RunArgs;
use ringattn::job::Job;
use ringattn::local::run_local;
use ringattn::report::{DuoReport, Report};

#[derive(Parser)]
struct Wrap {
    #[command(flatten)]
    args: RunArgs,
}

fn args(words: &[&str]) -> RunArgs {
    Wrap::try_parse_from(std::iter::once("run").chain(words.iter().copied()))
        .unwrap()
        .args
}

fn job(words: &[&str]) -> Job {
    Job::from_spec(&args(words).spec().unwrap(), 2).unwrap()
}

const WORDS: [&str; 14] = [
    "--workers",
    "3",
    "--seq",
    "301",
    "--heads",
    "8",
    "--kv-heads",
    "4",
    "--head-dim",
    "16",
    "--causal",
    "--check",
    "--layout",
    "contiguous",
];

#[test]
fn duo_job_checks_with_per_head_masks_and_reports_bytes_per_kind() {
    use HeadKind::{Retrieval as R, Streaming as S};
    let mut job = job(&WORDS);
    let plan = DuoPlan {
        kinds: vec![S, R, S, S],
        sink: 4,
        recent: 16,
    };
    job.set_duo(plan, args(&WORDS).job.layout).unwrap();
    assert_eq!(job.plan.kind.name(), "contiguous");
    let g = run_local(&job).unwrap();
    let report = Report::new(&job, "local", &g);
    let check = report.check.as_ref().unwrap();
    assert!(check.passed, "{check:?}");
    assert_eq!(check.rows_checked, 301 * 8);
    assert_eq!(
        report.duo,
        Some(DuoReport {
            retrieval_kv_heads: 1,
            streaming_kv_heads: 3,
            sink: 4,
            recent: 16
        })
    );
    for r in &report.ranks {
        assert_eq!(
            r.bytes_sent,
            r.bytes_sent_retrieval + r.bytes_sent_streaming
        );
        assert!(r.bytes_sent_retrieval > 0);
    }
    assert!(report.ranks[0].bytes_sent_streaming > 0);
    assert_eq!(report.ranks[2].bytes_sent_streaming, 0);
    // FLOPs: 2 query heads per KV head; 1 causal KV head, 3 streaming ones.
    let stream = Mask::Streaming {
        sink: 4,
        recent: 16,
    };
    let pairs = Mask::Causal.allowed_pairs(301) + 3 * stream.allowed_pairs(301);
    assert_eq!(report.flops, 4.0 * 16.0 * 2.0 * pairs as f64);
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["duo"]["streaming_kv_heads"], 3);
    assert!(json["ranks"][0]["bytes_sent_streaming"].as_u64().unwrap() > 0);
    assert!(report.summary().contains("duo: 1 retrieval + 3 streaming"));

    // The same job without the plan: every byte is a retrieval byte, duo is null.
    let plain = job_plain();
    let g = run_local(&plain).unwrap();
    let report = Report::new(&plain, "local", &g);
    assert!(report.check.as_ref().unwrap().passed);
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert!(json["duo"].is_null());
    for r in &report.ranks {
        assert_eq!(
            (r.bytes_sent_retrieval, r.bytes_sent_streaming),
            (r.bytes_sent, 0)
        );
    }
    assert_eq!(
        report.flops,
        4.0 * 16.0 * 8.0 * Mask::Causal.allowed_pairs(301) as f64
    );
}

fn job_plain() -> Job {
    job(&WORDS)
}

#[test]
fn a_plan_for_other_kv_heads_fails_the_run_with_a_config_error() {
    let mut job = job(&WORDS);
    job.duo = Some(DuoPlan::all_retrieval(3, 4, 16));
    let err = run_local(&job).unwrap_err();
    assert!(err.is_user_error(), "{err}");
}

#[test]
fn set_duo_rejects_a_plan_for_other_kv_heads_and_replans_auto() {
    let mut small = job(&WORDS);
    let err = small
        .set_duo(DuoPlan::all_retrieval(3, 4, 16), args(&WORDS).job.layout)
        .unwrap_err();
    assert!(err.is_user_error() && err.to_string().contains("3 KV heads"));
    // 64 × 64 tiles: the windows (sink 64 + recent 256) span few tiles, so an all-streaming
    // plan must cost well under a fifth of full causal attention.
    let auto = [
        "--workers",
        "4",
        "--seq",
        "4096",
        "--heads",
        "8",
        "--causal",
        "--tile-q",
        "64",
        "--tile-k",
        "64",
    ];
    let mut auto_job = job(&auto);
    let causal_makespan = auto_job.plan.estimates[0].makespan;
    let plan = DuoPlan {
        kinds: vec![HeadKind::Streaming; 8],
        sink: 64,
        recent: 256,
    };
    auto_job.set_duo(plan, args(&auto).job.layout).unwrap();
    assert!(auto_job.plan.reason.starts_with("auto:"));
    assert!(auto_job.plan.estimates[0].makespan < 0.2 * causal_makespan);
}
