//! `ringattn bench scaling`, `ringattn plot` and `ringattn simulate` through the binary:
//! resumable sweeps, plot files, the simulator's JSON, one-line errors with exit code 2.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest any single invocation may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ringattn"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning ringattn")
}

/// Runs `ringattn ARGS` to completion under [`DEADLINE`].
fn ringattn(args: &[&str]) -> Run {
    let start = Instant::now();
    let mut child = spawn(args);
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("ringattn {args:?} did not finish within {DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    Run {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

const SWEEP: &[&str] = &[
    "bench",
    "scaling",
    "--workers",
    "1,2",
    "--seq",
    "2048",
    "--heads",
    "2",
    "--head-dim",
    "32",
    "--causal",
    "--layout",
    "contiguous,striped",
];

#[test]
fn an_interrupted_sweep_resumes_without_redoing_finished_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let results = dir.path().join("results.jsonl");
    let args: Vec<&str> = SWEEP.iter().copied().chain(["--out", out]).collect();

    // Kill the sweep as soon as its first run is written.
    let mut child = spawn(&args);
    let start = Instant::now();
    while lines(&results).is_empty() && start.elapsed() < DEADLINE {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    let first = lines(&results);
    assert!(!first.is_empty(), "the first run was not written");
    // A line cut short by the kill (or a crash) is ignored and its run redone.
    std::fs::write(&results, first.join("\n") + "\n{\"version\": 1, \"wor").unwrap();

    let again = ringattn(&args);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(
        again.stderr.contains("ignoring 1 unreadable line"),
        "{}",
        again.stderr
    );
    assert!(
        again
            .stderr
            .contains(&format!("3 runs, {} already in", first.len())),
        "{}",
        again.stderr
    );
    let all = lines(&results);
    // The finished runs are kept as they were, byte for byte.
    assert_eq!(&all[..first.len()], &first[..]);
    let reports: Vec<Value> = all
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut runs: Vec<(u64, String)> = reports
        .iter()
        .map(|r| {
            (
                r["world"].as_u64().unwrap(),
                r["layout"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    runs.sort();
    // One worker runs once: every layout is the same run there.
    assert_eq!(
        runs,
        [
            (1, "contiguous".into()),
            (2, "contiguous".into()),
            (2, "striped".into())
        ]
    );
    for r in &reports {
        assert_eq!(r["sweep"]["mode"], "strong");
        assert!(r["wall_s"].as_f64().unwrap() > 0.0);
        assert_eq!(
            r["ranks"][0]["steps"].as_array().unwrap().len(),
            r["world"].as_u64().unwrap() as usize
        );
    }
    for f in ["scaling.png", "scaling.svg", "balance.png", "balance.svg"] {
        assert!(again.stdout.contains(f), "{}", again.stdout);
    }

    // Nothing left to do: no new line; `plot` re-renders from the file alone.
    let third = ringattn(&args);
    assert_eq!(third.code, Some(0));
    assert!(third.stderr.contains("(0 to do)"), "{}", third.stderr);
    assert_eq!(lines(&results).len(), all.len());
    std::fs::remove_file(dir.path().join("scaling.png")).unwrap();
    let plot = ringattn(&["plot", out]);
    assert_eq!(plot.code, Some(0), "{}", plot.stderr);
    let png = std::fs::read(dir.path().join("scaling.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn weak_mode_scales_the_length_with_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let run = ringattn(&[
        "bench",
        "scaling",
        "--workers",
        "1,2",
        "--seq",
        "1024",
        "--heads",
        "2",
        "--head-dim",
        "32",
        "--layout",
        "striped",
        "--mode",
        "weak",
        "--no-plot",
        "--out",
        out,
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let seqs: Vec<(u64, u64)> = lines(&dir.path().join("results.jsonl"))
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["world"].as_u64().unwrap(), v["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(seqs, [(1, 1024), (2, 2048)]);
    assert!(!dir.path().join("scaling.png").exists());
}

/// `simulate --docs/--window`: packed documents cost fewer tiles and bytes than one causal
/// sequence, `--layout docs` is accepted, and the JSON states the documents and the window.
#[test]
fn simulate_costs_packed_documents_and_windows() {
    let sim = |extra: &[&str]| -> Value {
        let mut args = vec![
            "simulate", "-p", "4", "-n", "8192", "--causal", "--json", "-",
        ];
        args.extend_from_slice(extra);
        let run = ringattn(&args);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        serde_json::from_str(&run.stdout).unwrap()
    };
    let tiles = |v: &Value| -> u64 {
        let ranks = v["ranks"].as_array().unwrap();
        ranks
            .iter()
            .map(|r| r["tiles_computed"].as_u64().unwrap())
            .sum()
    };
    let docs = vec!["512"; 16].join(",");
    let plain = sim(&["--layout", "contiguous"]);
    let packed = sim(&["--layout", "contiguous", "--docs", &docs]);
    assert!(
        tiles(&packed) < tiles(&plain) / 2,
        "{} vs {}",
        tiles(&packed),
        tiles(&plain)
    );
    let bytes = |v: &Value| v["bytes_per_rank"].as_u64().unwrap();
    assert!(
        bytes(&packed) < bytes(&plain),
        "{} vs {}",
        bytes(&packed),
        bytes(&plain)
    );
    assert_eq!(packed["docs"]["count"], 16);
    let windowed = sim(&["--layout", "docs", "--docs", &docs, "--window", "128"]);
    assert_eq!(windowed["layout"], "docs");
    assert_eq!(windowed["window"], 128);
    assert!(tiles(&windowed) <= tiles(&packed));
    // `auto` with documents simulates the documents layout too.
    let auto = sim(&["--docs", &docs]);
    let alts = auto["alternatives"].as_array().unwrap();
    assert!(alts.iter().any(|a| a["layout"] == "docs"), "{alts:?}");
    let bad = ringattn(&["simulate", "-p", "4", "-n", "8192", "--docs", "512,512"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert_eq!(bad.stderr.trim().lines().count(), 1, "{}", bad.stderr);
}

#[test]
fn simulate_writes_the_prediction_contract() {
    let run = ringattn(&[
        "simulate",
        "--workers",
        "4",
        "--seq",
        "8192",
        "--heads",
        "8",
        "--kv-heads",
        "2",
        "--causal",
        "--gflops-per-rank",
        "100",
        "--json",
        "-",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    for field in [
        "predicted_wall_s",
        "predicted_imbalance",
        "bytes_per_rank",
        "flops",
    ] {
        assert!(v[field].as_f64().unwrap() > 0.0, "{field}");
    }
    assert_eq!(v["world"], 4);
    assert_eq!(v["kv_heads"], 2);
    assert_ne!(
        v["layout"], "contiguous",
        "auto must avoid contiguous under a causal mask"
    );
    assert_eq!(v["alternatives"].as_array().unwrap().len(), 3);
    assert_eq!(v["per_step"].as_array().unwrap().len(), 4);
    // 2 · 2048 rows · 2 KV heads · 128 · 4 bytes per hop, 3 hops.
    assert_eq!(v["bytes_per_rank"], 3 * 2 * 2048 * 2 * 128 * 4);

    // bf16 K/V: half the bytes per hop.
    let bf16 = ringattn(&[
        "simulate",
        "--workers",
        "4",
        "--seq",
        "8192",
        "--heads",
        "8",
        "--kv-heads",
        "2",
        "--causal",
        "--dtype",
        "bf16",
        "--json",
        "-",
    ]);
    let b: Value = serde_json::from_str(&bf16.stdout).unwrap();
    assert_eq!(b["dtype"], "bf16");
    assert_eq!(b["bytes_per_rank"], 3 * 2 * 2048 * 2 * 128 * 2);

    // Thousands of ranks: a summary instead of every step, still fast.
    let big = ringattn(&[
        "simulate",
        "--workers",
        "4096",
        "--seq",
        "16777216",
        "--heads",
        "32",
        "--kv-heads",
        "8",
        "--causal",
        "--layout",
        "striped",
        "--json",
        "-",
    ]);
    assert_eq!(big.code, Some(0), "{}", big.stderr);
    let v: Value = serde_json::from_str(&big.stdout).unwrap();
    assert!(v["per_step"].is_null());
    assert_eq!(v["per_step_summary"]["steps"], 4096);
    assert!(v["simulate_s"].as_f64().unwrap() < 5.0);
    assert!((v["predicted_imbalance"].as_f64().unwrap() - 1.0).abs() < 0.01);

    let human = ringattn(&["simulate", "--workers", "2", "--seq", "4096", "--causal"]);
    assert_eq!(human.code, Some(0));
    assert!(human.stdout.contains("predicted wall"), "{}", human.stdout);
    assert!(
        human.stdout.contains("speedup over contiguous"),
        "{}",
        human.stdout
    );
}

#[test]
fn bad_input_is_one_line_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["bench", "scaling", "--workers", "0", "--out", out],
        &[
            "bench",
            "scaling",
            "--workers",
            "2",
            "--layout",
            "auto",
            "--out",
            out,
        ],
        &[
            "bench",
            "scaling",
            "--workers",
            "2",
            "--backend",
            "mpi",
            "--mpirun",
            "/nonexistent/mpirun",
            "--out",
            out,
        ],
        &[
            "bench",
            "scaling",
            "--workers",
            "8",
            "--seq",
            "4",
            "--out",
            out,
        ],
        &["bench", "scaling", "--workers", "2"],
        &["simulate", "--workers", "8", "--seq", "4"],
        &[
            "simulate",
            "--workers",
            "2",
            "--seq",
            "100",
            "--heads",
            "3",
            "--kv-heads",
            "2",
        ],
        &[
            "simulate",
            "--workers",
            "2",
            "--seq",
            "100",
            "--gflops-per-rank",
            "-1",
        ],
        &[
            "simulate",
            "--workers",
            "2",
            "--seq",
            "100",
            "--calibrate",
            "--gflops-per-rank",
            "5",
        ],
        &["plot", out],
    ];
    for args in cases {
        let run = ringattn(args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert_eq!(
            run.stderr.trim().lines().count(),
            1,
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.starts_with("ringattn: error:"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert!(
        !dir.path().join("results.jsonl").exists(),
        "bad sweeps must not start"
    );
}

#[cfg(not(feature = "mpi"))]
#[test]
fn an_mpi_sweep_without_the_mpi_feature_says_how_to_build() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let run = ringattn(&[
        "bench",
        "scaling",
        "--workers",
        "2",
        "--backend",
        "mpi",
        "--out",
        out,
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--features mpi"), "{}", run.stderr);
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
}
