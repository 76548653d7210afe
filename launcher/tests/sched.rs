//! `--sched`, `--slow-cores`, `--sched-cache` from the command line, and `bench sched`.

mod common;
use common::*;

/// Runs one worker with two kernel threads under `sched` and returns the output file's bytes
/// and the report.
fn run_with(sched: &str, extra: &[&str]) -> (Vec<u8>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let mut args = vec![
        "run",
        "--workers",
        "1",
        "--threads",
        "2",
        "--seq",
        "777",
        "--heads",
        "4",
        "--kv-heads",
        "2",
        "--head-dim",
        "32",
        "--causal",
        "--no-sched-cache",
        "--json",
        "-",
        "--sched",
        sched,
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = ringattn(&args);
    assert_success(&run);
    (std::fs::read(&out).unwrap(), json(&run.stdout))
}

#[test]
fn every_scheduler_writes_the_same_bits() {
    let (reference, report) = run_with("static", &[]);
    assert_eq!(report["sched"], "static");
    for (sched, extra) in [
        ("hybrid", &[][..]),
        ("rayon", &[][..]),
        ("hybrid", &["--slow-cores", "0:2,1:1.5"][..]),
    ] {
        let (bytes, report) = run_with(sched, extra);
        assert_eq!(report["sched"], sched);
        assert!(bytes == reference, "{sched} {extra:?} changed the output");
        let ratios = &report["ranks"][0]["sched_ratios"];
        assert!(ratios.is_object(), "{report}");
    }
}

#[test]
fn the_ratio_cache_is_written_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache").join("sched.json");
    let args = [
        "run",
        "--workers",
        "1",
        "--threads",
        "2",
        "--seq",
        "2048",
        "--head-dim",
        "64",
        "--sched-cache",
        cache.to_str().unwrap(),
        "--json",
        "-",
    ];
    let first = ringattn(&args);
    assert_success(&first);
    let text = std::fs::read_to_string(&cache).expect("the cache file is written");
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(file["version"], 1);
    let entries = file["entries"].as_object().unwrap();
    let classes = entries
        .values()
        .next()
        .expect("one core set")
        .as_object()
        .unwrap();
    let attention = classes
        .iter()
        .find(|(k, _)| k.starts_with("attention-f32"))
        .expect("the attention class was measured");
    assert_eq!(attention.1.as_array().unwrap().len(), 2);
    // A second run starts from the cached ratios (and rewrites them).
    assert_success(&ringattn(&args));
    assert!(std::fs::read_to_string(&cache)
        .unwrap()
        .contains("attention-f32"));
}

#[test]
fn bad_scheduler_options_are_one_line_errors() {
    for (flag, value, needle) in [
        ("--slow-cores", "1", "CPU:FACTOR"),
        ("--slow-cores", "1:0.5", "CPU:FACTOR"),
        ("--sched-alpha", "1.5", "--sched-alpha"),
    ] {
        let run = ringattn(&["run", "--seq", "64", flag, value]);
        assert_one_line_error(&run, &[needle]);
    }
    let run = ringattn(&["run", "--seq", "64", "--sched", "fifo"]);
    assert_ne!(run.code, Some(0), "an unknown scheduler must be refused");
}

#[test]
fn bench_sched_prints_the_contract_fields() {
    let run = ringattn(&[
        "bench",
        "sched",
        "--seq",
        "512",
        "--heads",
        "4",
        "--head-dim",
        "32",
        "--calls",
        "3",
        "--threads",
        "1",
        "--json",
        "-",
    ]);
    assert_success(&run);
    let r = json(&run.stdout);
    for field in ["hybrid_s", "static_s", "rayon_s", "ideal_s"] {
        assert!(r[field].as_f64().unwrap() > 0.0, "{field}: {r}");
    }
    assert_eq!(r["final_ratios"].as_array().unwrap().len(), 1);
    assert_eq!(r["hybrid_call_s"].as_array().unwrap().len(), 3);
}
