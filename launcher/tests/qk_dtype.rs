//! `--qk-dtype` and `RINGATTN_QK_DTYPE` from the command line: bf16 Q·Kᵀ runs, passes `--check`
//! (the 2e-2 bound of bf16 K/V) and is named in the reports where the CPU has AVX512-BF16; every
//! combination it cannot run in is exit 2 with one line naming what is wrong. Every invocation
//! runs under the shared deadline (`common::run`).

use std::process::Command;

use serde_json::Value;

mod common;
use common::*;

/// `ringattn ARGS` with `RINGATTN_ISA` unset and `RINGATTN_QK_DTYPE` set to `env` (or unset).
fn ringattn_qk(args: &[&str], env: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringattn"));
    cmd.args(args)
        .env_remove("RINGATTN_ISA")
        .env_remove("RINGATTN_QK_DTYPE");
    if let Some(value) = env {
        cmd.env("RINGATTN_QK_DTYPE", value);
    }
    run(cmd)
}

const RUN: [&str; 12] = [
    "run",
    "--workers",
    "2",
    "--threads",
    "1",
    "--seq",
    "600",
    "--heads",
    "2",
    "--head-dim",
    "64",
    "--causal",
];

/// A small causal `bench kernel` grid of one row per dtype.
const BENCH: [&str; 11] = [
    "bench",
    "kernel",
    "--seq",
    "256",
    "--head-dim",
    "32",
    "--threads",
    "1",
    "--repeats",
    "1",
    "--causal",
];

fn with(base: &[&'static str], extra: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(extra).copied().collect()
}

fn has_bf16_dot() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bf16")
}

/// The JSON rows of a `bench kernel ... --json -` that must succeed.
fn bench_rows(extra: &[&'static str]) -> Vec<Value> {
    let run = ringattn_qk(&with(&with(&BENCH, extra), &["--json", "-"]), None);
    assert_success(&run);
    run.stdout.lines().map(json).collect()
}

#[test]
fn bf16_q_k_runs_checks_and_is_reported_or_is_refused_with_exit_2() {
    let base = with(
        &RUN,
        &[
            "--dtype", "bf16", "--isa", "avx512", "--check", "--json", "-",
        ],
    );
    let flag = with(&base, &["--qk-dtype", "bf16"]);
    // The flag, or the environment alone.
    for (args, env) in [(flag, None), (base, Some("bf16"))] {
        let run = ringattn_qk(&args, env);
        if !has_bf16_dot() {
            assert_eq!(run.code, Some(2), "{}", run.describe());
            assert_one_line_error(&run, &[]);
            continue;
        }
        assert_success(&run);
        let v = json(&run.stdout);
        assert_eq!(v["dtype"], "bf16", "{}", run.stdout);
        assert_eq!(v["qk_dtype"], "bf16", "{}", run.stdout);
        assert_eq!(v["check"]["passed"], true, "{}", run.stdout);
    }
    // Without the request Q stays f32, and the report says so.
    let run = ringattn_qk(&with(&RUN, &["--dtype", "bf16", "--json", "-"]), None);
    assert_success(&run);
    assert_eq!(json(&run.stdout)["qk_dtype"], "f32", "{}", run.stdout);
}

#[test]
fn combinations_bf16_q_k_cannot_run_in_are_exit_2_naming_why() {
    let cases: [(Vec<&str>, Option<&str>, &str); 5] = [
        (with(&RUN, &["--qk-dtype", "bf16"]), None, "--dtype bf16"),
        (
            with(
                &RUN,
                &["--dtype", "bf16", "--qk-dtype", "bf16", "--isa", "portable"],
            ),
            None,
            "--isa avx512",
        ),
        (
            with(&RUN, &["--dtype", "bf16"]),
            Some("fp8"),
            "RINGATTN_QK_DTYPE",
        ),
        (with(&RUN, &["--qk-dtype", "fp16"]), None, "fp16"),
        (with(&BENCH, &["--qk-dtype", "bf16"]), None, "--dtype bf16"),
    ];
    for (args, env, names) in cases {
        let run = ringattn_qk(&args, env);
        assert_eq!(run.code, Some(2), "{args:?}\n{}", run.describe());
        assert_one_line_error(&run, &[names]);
    }
}

#[test]
fn bench_kernel_names_the_q_k_precision_of_each_row() {
    let mut extra = vec!["--dtype", "f32,bf16"];
    if has_bf16_dot() {
        extra.extend(["--isa", "avx512", "--qk-dtype", "bf16"]);
    }
    let rows = bench_rows(&extra);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in rows {
        let want = if r["dtype"] == "bf16" && has_bf16_dot() {
            "bf16"
        } else {
            "f32"
        };
        assert_eq!(r["qk_dtype"], want, "{r}");
    }
}

#[test]
fn info_says_whether_the_bf16_dot_product_is_there() {
    let run = ringattn_qk(&["info", "--json", "-"], None);
    assert_success(&run);
    assert_eq!(
        json(&run.stdout)["bf16_dot"],
        has_bf16_dot(),
        "{}",
        run.stdout
    );
}

#[test]
fn an_odd_key_tile_runs_the_f32_path_and_the_row_says_so() {
    if !has_bf16_dot() {
        return; // bf16 Q·Kᵀ is refused here (the exit-2 table covers it)
    }
    let rows = bench_rows(&[
        "--dtype",
        "bf16",
        "--isa",
        "avx512",
        "--qk-dtype",
        "bf16",
        "--tile-k",
        "63",
    ]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["qk_dtype"], "f32", "{}", rows[0]);
}
