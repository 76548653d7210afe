//! `ringattn duo inspect`: counts and KV memory on the shared official DuoAttention patterns
//! (vendored in `data/duo-patterns`), and one-line errors with exit code 2 on bad pattern files.

use std::path::{Path, PathBuf};

mod common;
use common::*;

const RUN: &str = "lr=0.02-reg=0.05-ctx=1000_32000-multi_passkey10";

/// An official pattern, vendored in the repository's `data/duo-patterns` (MIT licence).
fn shared_pattern(model: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/duo-patterns")
        .join(model)
        .join(RUN)
}

fn inspect_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["duo", "inspect"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", "-"]);
    let run = ringattn(&all);
    assert_success(&run);
    json(&run.stdout)
}

#[test]
fn llama3_gqa_at_sparsity_half() {
    let dir = shared_pattern("Llama-3-8B-Instruct-Gradient-1048k");
    let r = inspect_json(&[p(&dir), "--sparsity", "0.5"]);
    assert_eq!(r["layers"], 32);
    assert_eq!(r["kv_heads"], 8);
    assert_eq!(r["retrieval_kv_heads"], 128);
    assert_eq!(r["streaming_kv_heads"], 128);
    assert_eq!(r["sparsity"], 0.5);
    assert_eq!(r["threshold"], 0.9609375);
    assert_eq!(
        (r["sink"].as_u64(), r["recent"].as_u64()),
        (Some(128), Some(256))
    );
    assert_eq!(r["context"], 32768);
    let per_layer: Vec<u64> = r["per_layer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(per_layer.len(), 32);
    assert_eq!(per_layer.iter().sum::<u64>(), 128);
    // f32, D = 128: 1 KiB of K+V per token and head.
    let full = 32 * 8 * 32768 * 1024u64;
    assert_eq!(r["kv_bytes_full"], full);
    let duo = (128 * 32768 + 128 * 384) * 1024u64;
    assert_eq!(r["kv_bytes_duo"], duo);
    assert_eq!(r["kv_ratio"].as_f64().unwrap(), duo as f64 / full as f64);

    // Threshold instead: sparsity is null; bf16 halves the bytes.
    let r = inspect_json(&[p(&dir), "--threshold", "0.5", "--dtype", "bf16"]);
    assert_eq!(r["retrieval_kv_heads"], 208);
    assert!(r["sparsity"].is_null());
    assert_eq!(r["threshold"], 0.5);
    assert_eq!(r["kv_bytes_full"], full / 2);
}

#[test]
fn llama2_mha_at_sparsity_three_quarters() {
    let dir = shared_pattern("Llama-2-7B-32K-Instruct");
    let r = inspect_json(&[
        p(&dir),
        "--sparsity",
        "0.75",
        "--context",
        "1000",
        "--sink",
        "64",
        "--recent",
        "256",
        "--head-dim",
        "64",
    ]);
    assert_eq!(
        (r["layers"].as_u64(), r["kv_heads"].as_u64()),
        (Some(32), Some(32))
    );
    assert_eq!(r["retrieval_kv_heads"], 256);
    assert_eq!(r["streaming_kv_heads"], 768);
    assert_eq!(r["sink"], 64);
    assert_eq!(r["recent"], 256);
    let per_token = 2 * 64 * 4u64;
    assert_eq!(r["kv_bytes_full"], 1024 * 1000 * per_token);
    assert_eq!(r["kv_bytes_duo"], (256 * 1000 + 768 * 320) * per_token);

    // The human table: a row per layer and the totals.
    let run = ringattn(&["duo", "inspect", p(&dir), "--sparsity", "0.75"]);
    assert_success(&run);
    assert!(
        run.stdout.contains("total        256        768"),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.lines().count(), 3 + 32 + 2, "{}", run.stdout);
}

#[test]
fn json_to_a_file_keeps_the_table_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("gates.tsv");
    std::fs::write(&tsv, "1.0\t0.0\n2.5e-01\t9.0e-01\n").unwrap();
    let out = dir.path().join("duo.json");
    let run = ringattn(&["duo", "inspect", p(&tsv), "--json", p(&out)]);
    assert_success(&run);
    assert!(run.stdout.contains("retrieval"), "{}", run.stdout);
    let r = json(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(r["retrieval_kv_heads"], 2);
    assert_eq!(
        (r["sink"].as_u64(), r["recent"].as_u64()),
        (Some(64), Some(256))
    );
}

#[test]
fn bad_patterns_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("gates.tsv");
    std::fs::write(&tsv, "1.0\t0.0\n0.5\tabc\n").unwrap();
    assert_user_error(
        &["duo", "inspect", p(&tsv)],
        &["gates.tsv", "line 2, column 2", "abc"],
    );
    std::fs::write(&tsv, "1.0\t0.0\n0.5\n").unwrap();
    assert_user_error(&["duo", "inspect", p(&tsv)], &["ragged"]);
    std::fs::write(&tsv, "1.0\tNaN\n").unwrap();
    assert_user_error(&["duo", "inspect", p(&tsv)], &["NaN"]);
    std::fs::write(&tsv, "").unwrap();
    assert_user_error(&["duo", "inspect", p(&tsv)], &["empty"]);
    assert_user_error(
        &["duo", "inspect", p(&dir.path().join("missing"))],
        &["missing"],
    );
    std::fs::write(&tsv, "1.0\t0.0\n").unwrap();
    assert_user_error(
        &["duo", "inspect", p(&tsv), "--sparsity", "1.5"],
        &["--sparsity"],
    );
    assert_user_error(&["duo", "inspect", p(&tsv), "--recent", "0"], &["--recent"]);
    assert_user_error(
        &[
            "duo",
            "inspect",
            p(&tsv),
            "--sparsity",
            "0.5",
            "--threshold",
            "0.5",
        ],
        &["--threshold"],
    );
}

#[test]
fn simulate_and_bench_scaling_take_a_plan() {
    let sim = |extra: &[&str]| {
        let mut args = vec![
            "simulate",
            "--workers",
            "4",
            "--seq",
            "16384",
            "--heads",
            "8",
            "--kv-heads",
            "4",
            "--causal",
            "--layout",
            "contiguous",
            "--json",
            "-",
        ];
        args.extend_from_slice(extra);
        let run = ringattn(&args);
        assert_success(&run);
        json(&run.stdout)
    };
    let plain = sim(&[]);
    let duo = sim(&[
        "--retrieval-ratio",
        "0.5",
        "--sink",
        "64",
        "--recent",
        "256",
    ]);
    assert!(plain["duo"].is_null());
    assert_eq!(duo["duo"]["retrieval_kv_heads"], 2);
    assert_eq!(duo["duo"]["streaming_kv_heads"], 2);
    let wall = |v: &serde_json::Value| v["predicted_wall_s"].as_f64().unwrap();
    assert!(
        wall(&duo) < 0.6 * wall(&plain),
        "{} vs {}",
        wall(&duo),
        wall(&plain)
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let args = [
        "bench",
        "scaling",
        "--workers",
        "1,2",
        "--seq",
        "1024",
        "--heads",
        "4",
        "--kv-heads",
        "2",
        "--head-dim",
        "32",
        "--causal",
        "--layout",
        "contiguous",
        "--retrieval-ratio",
        "0.5",
        "--sink",
        "8",
        "--recent",
        "64",
        "--out",
        out.to_str().unwrap(),
    ];
    assert_success(&ringattn(&args));
    let lines = || std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    let first = lines();
    assert_eq!(first.lines().count(), 2);
    for line in first.lines() {
        let r = json(line);
        assert_eq!(r["duo"]["streaming_kv_heads"], 1, "{r}");
    }
    // Resuming skips both runs; a different plan is a different run.
    assert_success(&ringattn(&args));
    assert_eq!(lines(), first);
    let mut other = args.to_vec();
    let at = other.iter().position(|a| *a == "0.5").unwrap();
    other[at] = "1.0";
    assert_success(&ringattn(&other));
    assert_eq!(lines().lines().count(), 4);
}
