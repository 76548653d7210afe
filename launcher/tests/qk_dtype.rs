//! `--qk-dtype` and `RINGATTN_QK_DTYPE` from the command line: bf16 Q·Kᵀ runs, passes `--check`
//! (the 2e-2 bound of bf16 K/V) and is named in the reports where the CPU has AVX512-BF16; every
//! combination it cannot run in is exit 2 with one line naming what is wrong.

use std::process::Command;

fn ringattn(args: &[&str], env: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringattn"));
    cmd.args(args)
        .env_remove("RINGATTN_ISA")
        .env_remove("RINGATTN_QK_DTYPE");
    if let Some(value) = env {
        cmd.env("RINGATTN_QK_DTYPE", value);
    }
    let out = cmd.output().expect("run ringattn");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
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

fn with(extra: &[&'static str]) -> Vec<&'static str> {
    RUN.iter().chain(extra).copied().collect()
}

fn has_bf16_dot() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bf16")
}

#[test]
fn bf16_q_k_runs_checks_and_is_reported_or_is_refused_with_exit_2() {
    let base = with(&[
        "--dtype", "bf16", "--isa", "avx512", "--check", "--json", "-",
    ]);
    let flag: Vec<&str> = base
        .iter()
        .chain(&["--qk-dtype", "bf16"])
        .copied()
        .collect();
    // The flag, or the environment alone.
    for (args, env) in [(flag, None), (base, Some("bf16"))] {
        let (code, stdout, stderr) = ringattn(&args, env);
        if !has_bf16_dot() {
            assert_eq!(code, Some(2), "{stderr}");
            continue;
        }
        assert_eq!(code, Some(0), "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["dtype"], "bf16", "{stdout}");
        assert_eq!(v["qk_dtype"], "bf16", "{stdout}");
        assert_eq!(v["check"]["passed"], true, "{stdout}");
    }
    // Without the request Q stays f32, and the report says so.
    let (code, stdout, stderr) = ringattn(&with(&["--dtype", "bf16", "--json", "-"]), None);
    assert_eq!(code, Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["qk_dtype"], "f32", "{stdout}");
}

#[test]
fn combinations_bf16_q_k_cannot_run_in_are_exit_2_naming_why() {
    let cases: [(Vec<&str>, Option<&str>, &str); 5] = [
        (with(&["--qk-dtype", "bf16"]), None, "--dtype bf16"),
        (
            with(&["--dtype", "bf16", "--qk-dtype", "bf16", "--isa", "portable"]),
            None,
            "--isa avx512",
        ),
        (with(&["--dtype", "bf16"]), Some("fp8"), "RINGATTN_QK_DTYPE"),
        (with(&["--qk-dtype", "fp16"]), None, "fp16"),
        (
            vec![
                "bench",
                "kernel",
                "--seq",
                "256",
                "--head-dim",
                "32",
                "--threads",
                "1",
                "--qk-dtype",
                "bf16",
            ],
            None,
            "--dtype bf16",
        ),
    ];
    for (args, env, names) in cases {
        let (code, _, stderr) = ringattn(&args, env);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
    }
}

#[test]
fn bench_kernel_names_the_q_k_precision_of_each_row() {
    let mut args = vec![
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
        "--dtype",
        "f32,bf16",
        "--json",
        "-",
    ];
    if has_bf16_dot() {
        args.extend(["--isa", "avx512", "--qk-dtype", "bf16"]);
    }
    let (code, stdout, stderr) = ringattn(&args, None);
    assert_eq!(code, Some(0), "{stderr}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
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
    let (code, stdout, stderr) = ringattn(&["info", "--json", "-"], None);
    assert_eq!(code, Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["bf16_dot"], has_bf16_dot(), "{stdout}");
}

#[test]
fn an_odd_key_tile_runs_the_f32_path_and_the_row_says_so() {
    if !has_bf16_dot() {
        return; // bf16 Q·Kᵀ is refused here (the exit-2 table covers it)
    }
    let (code, stdout, stderr) = ringattn(
        &[
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
            "--dtype",
            "bf16",
            "--isa",
            "avx512",
            "--qk-dtype",
            "bf16",
            "--tile-k",
            "63",
            "--json",
            "-",
        ],
        None,
    );
    assert_eq!(code, Some(0), "{stderr}");
    let row: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(row["qk_dtype"], "f32", "{row}");
}
