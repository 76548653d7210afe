//! Integration tests of the `ringattn` binary: the JSON report contract, fault handling,
//! `--help`, the human summary and backends (the `--output` file: cli_output.rs; bad inputs:
//! cli_errors.rs).
//!
//! Every invocation runs under a deadline so that a hang fails the test instead of the suite.

use std::time::Duration;

use serde_json::Value;

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// 2. The JSON report contract.
// ---------------------------------------------------------------------------------------------

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key)
        .unwrap_or_else(|| panic!("report lacks `{key}`:\n{v:#}"))
}

fn uint(v: &Value, key: &str) -> u64 {
    field(v, key)
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` must be a non-negative integer, got {}", v[key]))
}

fn num(v: &Value, key: &str) -> f64 {
    let x = field(v, key)
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` must be a number, got {}", v[key]));
    assert!(x.is_finite(), "`{key}` must be finite, got {x}");
    x
}

fn string<'a>(v: &'a Value, key: &str) -> &'a str {
    field(v, key)
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` must be a string, got {}", v[key]))
}

fn boolean(v: &Value, key: &str) -> bool {
    field(v, key)
        .as_bool()
        .unwrap_or_else(|| panic!("`{key}` must be a boolean, got {}", v[key]))
}

const JSON_ARGS: [&str; 16] = [
    "run",
    "--workers",
    "3",
    "--seq",
    "1000",
    "--heads",
    "4",
    "--kv-heads",
    "2",
    "--head-dim",
    "16",
    "--causal",
    "--layout",
    "striped",
    "--check",
    "--json",
];

/// Asserts every field of the report contract for [`JSON_ARGS`].
fn assert_contract(r: &Value) {
    assert!(r.is_object(), "report must be a JSON object");
    assert!(uint(r, "version") >= 1);
    assert_eq!(string(r, "backend"), "local");
    assert_eq!(uint(r, "world"), 3);
    assert_eq!(string(r, "layout"), "striped");
    assert!(!string(r, "layout_reason").is_empty());
    assert_eq!(uint(r, "seq"), 1000);
    assert_eq!(uint(r, "heads"), 4);
    assert_eq!(uint(r, "kv_heads"), 2);
    assert_eq!(uint(r, "head_dim"), 16);
    assert!(boolean(r, "causal"));
    assert_eq!(string(r, "dtype"), "f32");
    assert!(field(r, "duo").is_null(), "`duo` must be null");
    let wall = num(r, "wall_s");
    assert!(wall > 0.0, "wall_s {wall}");
    // 4 · D · H · N(N+1)/2
    let flops = num(r, "flops");
    assert_eq!(flops, (4u64 * 16 * 4 * 1000 * 1001 / 2) as f64);
    let gflops = num(r, "gflops");
    assert!(gflops > 0.0);
    assert!(
        (gflops - flops / wall / 1e9).abs() <= 1e-9 * gflops.max(1.0),
        "gflops {gflops} != flops / wall_s / 1e9"
    );
    let imbalance = num(r, "imbalance");
    assert!(imbalance >= 1.0 - 1e-12, "imbalance {imbalance} < 1");
    let overlap = num(r, "overlap");
    assert!(
        (-1e-12..=1.0 + 1e-12).contains(&overlap),
        "overlap {overlap} outside [0, 1]"
    );

    let ranks = field(r, "ranks")
        .as_array()
        .expect("`ranks` must be an array");
    assert_eq!(ranks.len(), 3);
    let mut tokens = 0;
    for (i, rank) in ranks.iter().enumerate() {
        assert!(rank.is_object(), "ranks[{i}] must be an object");
        assert_eq!(uint(rank, "rank"), i as u64, "ranks must be in rank order");
        let t = uint(rank, "tokens");
        assert!(
            (333..=334).contains(&t),
            "striped over 3 ranks: rank {i} has {t} tokens"
        );
        tokens += t;
        for key in ["compute_s", "comm_wait_s", "idle_s"] {
            assert!(num(rank, key) >= 0.0, "ranks[{i}].{key} negative");
        }
        assert!(uint(rank, "bytes_sent") > 0, "ranks[{i}] sent no KV bytes");
        assert!(uint(rank, "kv_bytes_peak") > 0);
        assert!(uint(rank, "threads") >= 1);
    }
    assert_eq!(tokens, 1000, "tokens must sum to seq");

    let check = field(r, "check");
    assert!(check.is_object(), "`check` must be an object with --check");
    // N <= 2048: a bare --check verifies every (head, token) row.
    assert_eq!(uint(check, "rows_checked"), 4 * 1000);
    let abs = num(check, "max_abs_err");
    let lse = num(check, "max_lse_err");
    assert!((0.0..=2e-5).contains(&abs), "max_abs_err {abs}");
    assert!((0.0..=1e-5).contains(&lse), "max_lse_err {lse}");
    assert!(boolean(check, "passed"));
}

#[test]
fn json_to_stdout_follows_the_contract() {
    let mut args = JSON_ARGS.to_vec();
    args.push("-");
    let run = ringattn(&args);
    assert_success(&run);
    // stdout is the JSON report alone (it replaces the human summary).
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}\n{}", run.describe()));
    assert_contract(&report);
}

#[test]
fn json_to_a_file_is_written_atomically_and_the_summary_still_prints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let mut args = JSON_ARGS.to_vec();
    args.push(p(&path));
    let run = ringattn(&args);
    assert_success(&run);
    let text = std::fs::read_to_string(&path).expect("the report file exists");
    let report: Value = serde_json::from_str(&text).expect("the report file parses");
    assert_contract(&report);
    assert!(
        run.stdout.contains("GFLOP/s") && run.stdout.contains("layout striped"),
        "the human summary must still print with --json PATH\n{}",
        run.describe()
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with('.')),
        "temporary file left behind: {names:?}"
    );
    assert_eq!(names, vec!["report.json".to_string()]);
}

// ---------------------------------------------------------------------------------------------
// 4. Faults.
// ---------------------------------------------------------------------------------------------

#[test]
fn injected_fault_fails_fast_naming_rank_and_step() {
    let run = ringattn(&[
        "run",
        "--workers",
        "4",
        "--seq",
        "256",
        "--heads",
        "2",
        "--head-dim",
        "16",
        "--inject-fault",
        "1:2",
    ]);
    assert!(
        run.elapsed < Duration::from_secs(10),
        "a failed rank must end the run quickly; took {:?}",
        run.elapsed
    );
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert_one_line_error(&run, &["rank 1", "step 2"]);
    assert!(
        !run.stdout.contains("GFLOP/s"),
        "a failed run must not print a report\n{}",
        run.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// 5. --help.
// ---------------------------------------------------------------------------------------------

#[test]
fn run_help_mentions_every_flag() {
    let run = ringattn(&["run", "--help"]);
    assert_success(&run);
    for flag in [
        "--workers",
        "--seq",
        "--heads",
        "--kv-heads",
        "--head-dim",
        "--causal",
        "--layout",
        "--threads",
        "--seed",
        "--check",
        "--json",
        "--input",
        "--output",
    ] {
        // Match the whole flag, not a prefix of a longer one (`--heads` in `--kv-heads`).
        let found = run
            .stdout
            .split(|c: char| c.is_whitespace() || c == ',')
            .any(|w| w == flag);
        assert!(
            found,
            "`run --help` does not mention {flag}\n{}",
            run.stdout
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 6. The human summary.
// ---------------------------------------------------------------------------------------------

#[test]
fn human_summary_has_headline_figures_and_a_line_per_rank() {
    let run = ringattn(&[
        "run",
        "--workers",
        "3",
        "--seq",
        "300",
        "--heads",
        "2",
        "--head-dim",
        "16",
        "--causal",
        "--layout",
        "zigzag",
    ]);
    assert_success(&run);
    assert!(run.stderr.is_empty(), "{}", run.describe());
    for word in ["layout", "GFLOP/s", "imbalance", "overlap"] {
        assert!(
            run.stdout.contains(word),
            "summary lacks `{word}`\n{}",
            run.stdout
        );
    }
    assert!(
        serde_json::from_str::<Value>(&run.stdout).is_err(),
        "without --json the summary is not JSON"
    );
    // One row per rank: `rank tokens ...`, tokens summing to seq.
    let mut total = 0;
    for rank in 0..3 {
        let rows: Vec<Vec<&str>> = run
            .stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|w| w.len() >= 2 && w[0] == rank.to_string())
            .collect();
        assert_eq!(
            rows.len(),
            1,
            "expected one summary line for rank {rank}\n{}",
            run.stdout
        );
        let tokens: usize = rows[0][1]
            .parse()
            .unwrap_or_else(|_| panic!("rank {rank}: tokens column\n{}", run.stdout));
        assert_eq!(tokens, 100, "zigzag over 3 ranks of 300 tokens");
        total += tokens;
    }
    assert_eq!(total, 300);
}

// ---------------------------------------------------------------------------------------------
// Regressions: failed writes clean up and say what went wrong.
// ---------------------------------------------------------------------------------------------

#[test]
fn failed_json_write_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the report should go: refused before the compute (bad input).
    let target = dir.path().join("report.json");
    std::fs::create_dir(&target).unwrap();
    let run = ringattn(&[
        "run",
        "--workers",
        "2",
        "--seq",
        "16",
        "--heads",
        "1",
        "--head-dim",
        "4",
        "--json",
        p(&target),
    ]);
    assert_eq!(run.code, Some(2), "{}", run.describe());
    assert_one_line_error(&run, &["report.json", "directory"]);
    assert_no_temporary_files(dir.path());
}

#[test]
fn failed_output_write_has_a_readable_message() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("missing_dir").join("out.safetensors");
    let run = ringattn(&[
        "run",
        "--workers",
        "2",
        "--seq",
        "16",
        "--heads",
        "1",
        "--head-dim",
        "4",
        "--output",
        p(&target),
    ]);
    // Checked before the compute: bad input.
    assert_eq!(run.code, Some(2), "{}", run.describe());
    assert_one_line_error(&run, &["out.safetensors", "No such file or directory"]);
    assert!(
        !run.stderr.contains("IoError(") && !run.stderr.contains("Os {"),
        "Debug-formatted error\n{}",
        run.describe()
    );
}

#[test]
fn fault_outside_the_ring_and_zero_check_rows_are_bad_input() {
    let base = [
        "run",
        "--workers",
        "2",
        "--seq",
        "16",
        "--heads",
        "1",
        "--head-dim",
        "4",
    ];
    let with = |extra: &[&'static str]| {
        base.iter()
            .copied()
            .chain(extra.iter().copied())
            .collect::<Vec<_>>()
    };
    assert_user_error(
        &with(&["--inject-fault", "5:0"]),
        &["--inject-fault 5:0", "outside the ring"],
    );
    assert_user_error(
        &with(&["--inject-fault", "0:9"]),
        &["--inject-fault 0:9", "outside the ring"],
    );
    assert_user_error(
        &with(&["--check", "0"]),
        &["--check ROWS must be at least 1"],
    );
}

// ---------------------------------------------------------------------------------------------
// Backends.
// ---------------------------------------------------------------------------------------------

#[cfg(not(feature = "mpi"))]
#[test]
fn backend_mpi_without_the_feature_says_how_to_build() {
    assert_user_error(
        &["run", "--backend", "mpi", "--seq", "8", "--heads", "1"],
        &[
            "scripts/install-mpi.sh",
            "cargo build --release --features mpi",
        ],
    );
}

#[test]
fn backend_local_and_auto_run_the_embedded_backend() {
    for backend in ["local", "auto"] {
        let run = ringattn(&[
            "run",
            "--backend",
            backend,
            "--workers",
            "2",
            "--seq",
            "32",
            "--heads",
            "1",
            "--head-dim",
            "4",
            "--json",
            "-",
        ]);
        assert_success(&run);
        let json: Value = serde_json::from_str(run.stdout.trim()).unwrap();
        assert_eq!(json["backend"], "local", "--backend {backend}");
    }
}

#[test]
fn unknown_backend_is_rejected() {
    assert_user_error(
        &["run", "--backend", "nccl", "--seq", "8"],
        &["--backend", "nccl"],
    );
}

#[test]
fn bf16_kv_passes_its_check_and_reports_half_the_bytes() {
    let base = [
        "run",
        "--workers",
        "2",
        "--seq",
        "300",
        "--heads",
        "4",
        "--kv-heads",
        "2",
        "--head-dim",
        "32",
        "--causal",
        "--check",
        "--json",
        "-",
    ];
    let run_with = |dtype: &str| {
        let mut args = base.to_vec();
        args.extend(["--dtype", dtype]);
        let run = ringattn(&args);
        assert_success(&run);
        serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap()
    };
    let (b, f) = (run_with("bf16"), run_with("f32"));
    assert_eq!(b["dtype"], "bf16");
    assert_eq!(f["dtype"], "f32");
    assert_eq!(b["check"]["passed"], true);
    let err = b["check"]["max_abs_err"].as_f64().unwrap();
    assert!(err > 1e-6 && err <= 2e-2, "bf16 error {err}");
    for r in 0..2 {
        let bytes = |v: &serde_json::Value, k: &str| v["ranks"][r][k].as_u64().unwrap();
        assert_eq!(2 * bytes(&b, "bytes_sent"), bytes(&f, "bytes_sent"));
        assert_eq!(2 * bytes(&b, "kv_bytes_peak"), bytes(&f, "kv_bytes_peak"));
    }
    assert_user_error(&["run", "--dtype", "f16"], &["f16", "--dtype"]);
}
