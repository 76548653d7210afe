//! `ringattn decode` end to end: the binary prefills, decodes, checks every decoded row against
//! the f64 reference and reports (`--check --json -`), on every layout, MHA and GQA, f32 and
//! bf16; `--causal` and `--check ROWS` as in `run`; bad options exit 2 with one line.

mod common;

use common::{assert_success, assert_user_error, json, ringattn};
use serde_json::Value;

/// `decode ARGS --check --json -` must succeed; returns the report.
fn decode_report(args: &[&str]) -> Value {
    let mut all = vec!["decode", "--backend", "local", "--check", "--json", "-"];
    all.extend_from_slice(args);
    let run = ringattn(&all);
    assert_success(&run);
    json(&run.stdout)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

#[test]
fn every_layout_decodes_within_tolerance_and_reports_the_cache() {
    let (prefill, steps, heads, kv_heads, dim) = (301u64, 7u64, 4u64, 2u64, 16u64);
    for layout in ["contiguous", "striped", "zigzag"] {
        for dtype in ["f32", "bf16"] {
            let r = decode_report(&[
                "--prefill",
                "301",
                "--steps",
                "7",
                "--workers",
                "3",
                "--heads",
                "4",
                "--kv-heads",
                "2",
                "--head-dim",
                "16",
                "--layout",
                layout,
                "--dtype",
                dtype,
            ]);
            let what = format!("{layout} {dtype}");
            let check = &r["check"];
            assert_eq!(check["passed"], true, "{what}: {check}");
            assert_eq!(u(&check["rows_checked"]), steps * heads, "{what}");
            assert_eq!(
                (r["layout"].as_str(), r["causal"].as_bool()),
                (Some(layout), Some(true))
            );
            assert_eq!((u(&r["seq"]), r["dtype"].as_str()), (prefill, Some(dtype)));
            let d = &r["decode"];
            assert_eq!(u(&d["steps"]), steps, "{what}");
            for key in ["tokens_per_s", "step_s_median", "prefill_s"] {
                assert!(
                    d[key].as_f64().is_some_and(|x| x > 0.0),
                    "{what}: {key} = {}",
                    d[key]
                );
            }
            assert_eq!(d["step_s"].as_array().map(Vec::len), Some(steps as usize));
            // kv_bytes_peak is the reserved cache: (prefill rows + decoded rows) × K and V.
            let elem = if dtype == "f32" { 4 } else { 2 };
            let ranks = r["ranks"].as_array().expect("ranks");
            let mut decoded = 0;
            for (rank, dr) in ranks
                .iter()
                .zip(d["ranks"].as_array().expect("decode ranks"))
            {
                let rows = u(&rank["tokens"]) + u(&dr["decoded_tokens"]);
                decoded += u(&dr["decoded_tokens"]);
                assert_eq!(u(&dr["cache_rows"]), rows * kv_heads, "{what}");
                assert_eq!(
                    u(&rank["kv_bytes_peak"]),
                    rows * kv_heads * dim * 2 * elem,
                    "{what}"
                );
            }
            assert_eq!(decoded, steps, "{what}: every token decoded once");
        }
    }
}

#[test]
fn striped_decode_is_round_robin_and_mha_single_worker_works() {
    let r = decode_report(&[
        "--prefill",
        "10",
        "--steps",
        "8",
        "--workers",
        "4",
        "--heads",
        "2",
        "--head-dim",
        "32",
        "--layout",
        "striped",
    ]);
    let owners: Vec<u64> = r["decode"]["owners"]
        .as_array()
        .unwrap()
        .iter()
        .map(u)
        .collect();
    assert_eq!(owners, [2, 3, 0, 1, 2, 3, 0, 1]);
    let r = decode_report(&[
        "--prefill",
        "64",
        "--steps",
        "5",
        "--workers",
        "1",
        "--heads",
        "3",
    ]);
    assert_eq!(r["check"]["passed"], true);
    assert_eq!(r["duo"], Value::Null);
}

#[test]
fn human_summary_names_the_rate() {
    let run = ringattn(&[
        "decode",
        "--backend",
        "local",
        "--prefill",
        "128",
        "--steps",
        "3",
        "--workers",
        "2",
        "--heads",
        "2",
        "--head-dim",
        "16",
        "--check",
    ]);
    assert_success(&run);
    assert!(run.stdout.contains("tokens/s"), "{}", run.describe());
    assert!(run.stdout.contains("check: 6 rows"), "{}", run.describe());
}

#[test]
fn bad_decode_options_exit_2_with_one_line() {
    assert_user_error(&["decode", "--steps", "0"], &["--steps"]);
    assert_user_error(&["decode", "--prefill", "0"], &["--prefill"]);
    assert_user_error(
        &["decode", "--prefill", "2", "--workers", "3"],
        &["workers"],
    );
    assert_user_error(
        &["decode", "--heads", "4", "--kv-heads", "3"],
        &["--kv-heads"],
    );
    assert_user_error(&["decode", "--steps", "x"], &["--steps"]);
    assert_user_error(&["decode", "--check", "0"], &["--check"]);
}

/// `--causal` is accepted (decode is always causal) and `--check ROWS` verifies ROWS evenly
/// spaced decoded rows per worker, like `run`'s.
#[test]
fn decode_takes_causal_and_check_rows_like_run() {
    let args = [
        "decode",
        "--backend",
        "local",
        "--causal",
        "--check",
        "1",
        "--json",
        "-",
        "--prefill",
        "64",
        "--steps",
        "7",
        "--workers",
        "3",
        "--heads",
        "2",
        "--head-dim",
        "8",
        "--layout",
        "striped",
    ];
    let run = ringattn(&args);
    assert_success(&run);
    let r = json(&run.stdout);
    assert_eq!(r["check"]["passed"], true, "{}", r["check"]);
    // Striped: the 7 decoded tokens go round robin, so every worker checks one row, 2 heads.
    assert_eq!(u(&r["check"]["rows_checked"]), 3 * 2);
    assert_eq!(r["causal"], true);
}

/// Under `mpirun` (built with `--features mpi`, MPI on PATH): every rank decodes its share, the
/// check passes, and the errors equal the local backend's (same rows, same merge order).
#[cfg(feature = "mpi")]
#[test]
fn mpi_decode_matches_local() {
    let Some((mpirun, extra)) = common::mpi_launcher() else {
        return;
    };
    let plain = [
        "--prefill",
        "301",
        "--steps",
        "6",
        "--heads",
        "4",
        "--kv-heads",
        "2",
        "--head-dim",
        "16",
        "--check",
        "--json",
        "-",
    ];
    // Plain decode, and DuoAttention (its pruned prefill and the streaming cache) on the
    // contiguous layout, where streaming KV makes one hop.
    let duo = ["--retrieval-ratio", "0.5", "--sink", "4", "--recent", "32"];
    for (layout, plan) in [("striped", &[][..]), ("contiguous", &duo[..])] {
        let mut job = plain.to_vec();
        job.extend(["--layout", layout]);
        job.extend(plan);
        let mut cmd = std::process::Command::new(&mpirun);
        cmd.args(&extra);
        cmd.args([
            "-n",
            "3",
            env!("CARGO_BIN_EXE_ringattn"),
            "decode",
            "--backend",
            "mpi",
        ]);
        cmd.args(&job);
        let m = common::run(cmd);
        assert_success(&m);
        let mpi = json(&m.stdout);
        let mut args = vec!["decode", "--backend", "local", "--workers", "3"];
        args.extend(&job);
        let local = json(&ringattn(&args).stdout);
        assert_eq!(
            (mpi["backend"].as_str(), u(&mpi["world"])),
            (Some("mpi"), 3)
        );
        assert_eq!(mpi["check"]["passed"], true, "{layout} {plan:?}");
        assert_eq!(mpi["duo"], local["duo"]);
        assert_eq!(
            mpi["check"], local["check"],
            "mpi and local decode the same rows ({layout} {plan:?})"
        );
        let streaming = |r: &serde_json::Value| -> Vec<u64> {
            r["ranks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["bytes_sent_streaming"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(streaming(&mpi), streaming(&local), "{layout} {plan:?}");
    }
}
