//! `ringattn info` and `ringattn bench kernel` from the command line.

use std::process::Command;

fn ringattn(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringattn"))
        .args(args)
        .output()
        .expect("run ringattn");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn info_reports_simd_peak_and_cores() {
    let (code, stdout, stderr) = ringattn(&["info", "--json", "-"]);
    assert_eq!(code, Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let isa = v["isa"].as_str().unwrap();
    assert!(["amx", "avx512", "avx2", "portable"].contains(&isa));
    assert_eq!(v["isa_available"][0], isa);
    assert!(v["peak_gflops_per_core"].as_f64().unwrap() > 0.0);
    // The tile unit's rate is there exactly when the AMX path is.
    let tile_peak = v["tile_peak_gflops_per_core"].as_f64();
    assert_eq!(tile_peak.is_some(), isa == "amx", "{stdout}");
    assert!(tile_peak.is_none_or(|g| g > v["peak_gflops_per_core"].as_f64().unwrap()));
    assert!(v["allowed_cores"].as_u64().unwrap() >= 1);
    assert!(v["affinity"].is_string());
    let (code, text, _) = ringattn(&["info"]);
    assert_eq!(code, Some(0));
    assert!(
        text.contains("simd:") && text.contains("GFLOP/s per core") && text.contains("allowed")
    );
}

#[test]
fn bench_kernel_prints_one_json_line_per_shape() {
    let (code, stdout, stderr) = ringattn(&[
        "bench",
        "kernel",
        "--seq",
        "70,128",
        "--head-dim",
        "16",
        "--threads",
        "1",
        "--causal",
        "false,true",
        "--repeats",
        "1",
        "--json",
        "-",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    for v in &lines {
        for key in [
            "seq",
            "heads",
            "kv_heads",
            "head_dim",
            "causal",
            "dtype",
            "threads",
            "median_s",
            "gflops",
            "peak_gflops",
        ] {
            assert!(!v[key].is_null(), "missing {key} in {v}");
        }
        let (n, causal) = (
            v["seq"].as_u64().unwrap() as f64,
            v["causal"].as_bool().unwrap(),
        );
        let pairs = if causal { n * (n + 1.0) / 2.0 } else { n * n };
        let flops = 4.0 * 8.0 * 16.0 * pairs;
        let expect = flops / v["median_s"].as_f64().unwrap() / 1e9;
        assert!((v["gflops"].as_f64().unwrap() - expect).abs() <= 1e-6 * expect);
    }
    let (code, _, stderr) = ringattn(&["bench", "kernel", "--seq", "0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("ringattn: error:") && stderr.lines().count() == 1,
        "{stderr}"
    );
}
