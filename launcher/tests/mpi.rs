//! The MPI backend under a real `mpirun`: bitwise the same output files as the local backend
//! for every P and layout, masks on and off, N not divisible by P; a failing rank ends the job.
//!
//! Needs `mpirun` or `mpiexec` on PATH (`bash scripts/install-mpi.sh`). Without one the tests
//! print a note and pass, except in CI (`CI=true`), where a missing MPI is a failure.

#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

mod common;
use common::*;

/// The job of the comparison tests: N = 1001 divides by none of P = 2, 3, 4 (nor 2P).
const JOB: [&str; 9] = [
    "--seq",
    "1001",
    "--heads",
    "4",
    "--kv-heads",
    "2",
    "--head-dim",
    "16",
    "--check",
];

const LAYOUTS: [&str; 3] = ["contiguous", "striped", "zigzag"];

/// The MPI launcher (found once), or `None` (with a note); panics when MPI is missing in CI.
fn launcher() -> Option<&'static (PathBuf, Vec<&'static str>)> {
    static FOUND: OnceLock<Option<(PathBuf, Vec<&'static str>)>> = OnceLock::new();
    FOUND.get_or_init(mpi_launcher).as_ref()
}

/// `mpirun -n P ringattn ARGS`.
fn mpirun(launcher: &(PathBuf, Vec<&str>), p: usize, args: &[&str]) -> Run {
    mpirun_env(launcher, p, args, None)
}

/// `VAR=VALUE mpirun -n P ringattn ARGS`, the variable passed on to every rank.
fn mpirun_env(
    launcher: &(PathBuf, Vec<&str>),
    p: usize,
    args: &[&str],
    env: Option<(&str, &str)>,
) -> Run {
    let mut cmd = Command::new(&launcher.0);
    cmd.args(&launcher.1);
    if let Some((name, value)) = env {
        cmd.env(name, value);
        if launcher.1.contains(&"--oversubscribe") {
            // OpenMPI passes on only the variables named with -x.
            cmd.args(["-x", name]);
        }
    }
    cmd.arg("-n")
        .arg(p.to_string())
        .arg(env!("CARGO_BIN_EXE_ringattn"))
        .args(args);
    run(cmd)
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// For every layout and mask: `mpirun -n P ... --backend mpi` passes its check, reports the
/// mpi backend with P ranks, and writes the very same bytes as `--backend local --workers P`.
fn mpi_matches_local(p: usize) {
    let Some(launcher) = launcher() else { return };
    let dir = tempfile::tempdir().unwrap();
    let workers = p.to_string();
    for layout in LAYOUTS {
        for causal in [false, true] {
            let name = format!("p{p}-{layout}-{}", if causal { "causal" } else { "full" });
            let mpi_out = dir.path().join(format!("{name}-mpi.safetensors"));
            let local_out = dir.path().join(format!("{name}-local.safetensors"));
            let report = dir.path().join(format!("{name}-mpi.json"));
            let mut common: Vec<&str> = JOB.to_vec();
            common.extend(["--layout", layout]);
            if causal {
                common.push("--causal");
            }

            let mut args = vec!["run", "--backend", "mpi", "--output", s(&mpi_out)];
            args.extend(["--json", s(&report)]);
            args.extend(&common);
            let m = mpirun(launcher, p, &args);
            assert_eq!(m.code, Some(0), "{name}, mpi: {}", m.describe());

            let mut args = vec!["run", "--backend", "local", "--workers", &workers];
            args.extend(["--output", s(&local_out)]);
            args.extend(&common);
            let l = ringattn(&args);
            assert_eq!(l.code, Some(0), "{name}, local: {}", l.describe());

            let json: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
            assert_eq!(json["backend"], "mpi", "{name}");
            assert_eq!(json["world"], p, "{name}");
            assert_eq!(json["layout"], layout, "{name}");
            assert_eq!(json["ranks"].as_array().map(Vec::len), Some(p), "{name}");
            assert_eq!(json["check"]["passed"], true, "{name}");
            // Only rank 0 reports: one summary, not P.
            assert_eq!(
                m.stdout.matches("ringattn run:").count(),
                1,
                "{name}: {}",
                m.stdout
            );

            let (a, b) = (
                std::fs::read(&mpi_out).unwrap(),
                std::fs::read(&local_out).unwrap(),
            );
            assert!(
                a == b,
                "{name}: mpi and local output files differ ({} vs {} bytes)",
                a.len(),
                b.len()
            );
        }
    }
}

#[test]
fn mpi_p1_matches_local_bitwise() {
    mpi_matches_local(1);
}

#[test]
fn mpi_p2_matches_local_bitwise() {
    mpi_matches_local(2);
}

#[test]
fn mpi_p3_matches_local_bitwise() {
    mpi_matches_local(3);
}

#[test]
fn mpi_p4_matches_local_bitwise() {
    mpi_matches_local(4);
}

#[test]
fn failing_rank_ends_the_mpi_job_naming_it() {
    let Some(launcher) = launcher() else { return };
    let mut args = vec!["run", "--backend", "mpi", "--inject-fault", "1:1"];
    args.extend(&JOB);
    let r = mpirun(launcher, 3, &args);
    assert!(r.elapsed < DEADLINE, "{}", r.describe());
    assert_ne!(r.code, Some(0), "{}", r.describe());
    assert!(r.code.is_some(), "killed by a signal: {}", r.describe());
    assert!(
        r.stderr
            .contains("ringattn: error: rank 1 failed: injected fault"),
        "{}",
        r.describe()
    );
    assert!(!r.stdout.contains("GFLOP/s"), "{}", r.describe());
}

#[test]
fn auto_backend_under_mpirun_is_mpi_and_workers_must_match() {
    let Some(launcher) = launcher() else { return };
    let small = ["run", "--seq", "64", "--heads", "1", "--head-dim", "4"];
    let mut args = small.to_vec();
    args.extend(["--json", "-"]);
    let r = mpirun(launcher, 2, &args);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let json: Value = serde_json::from_str(r.stdout.trim()).expect("one JSON report");
    assert_eq!(json["backend"], "mpi");
    assert_eq!(json["world"], 2);

    let mut args = small.to_vec();
    args.extend(["--backend", "mpi", "--workers", "3"]);
    let r = mpirun(launcher, 2, &args);
    assert_eq!(r.code, Some(2), "{}", r.describe());
    assert_eq!(
        r.stderr
            .matches("--workers 3 does not match the 2 MPI processes")
            .count(),
        1,
        "one message, from rank 0: {}",
        r.describe()
    );
}

#[test]
fn buffers_split_into_many_messages_give_the_same_bytes() {
    let Some(launcher) = launcher() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mpi_out = dir.path().join("split-mpi.safetensors");
    let local_out = dir.path().join("split-local.safetensors");
    let common = [&JOB[..], &["--layout", "zigzag", "--causal"]].concat();
    // 1000-element messages: each K/V block (2 × 334 × 16 floats) travels as 11 messages, each
    // rank's results (~86 kB) as ~86.
    let mut args = vec!["run", "--backend", "mpi", "--output", s(&mpi_out)];
    args.extend(&common);
    let m = mpirun_env(
        launcher,
        3,
        &args,
        Some(("RINGATTN_MPI_MAX_MESSAGE", "1000")),
    );
    assert_eq!(m.code, Some(0), "{}", m.describe());
    let mut args = vec!["run", "--backend", "local", "--workers", "3"];
    args.extend(["--output", s(&local_out)]);
    args.extend(&common);
    let l = ringattn(&args);
    assert_eq!(l.code, Some(0), "{}", l.describe());
    assert!(
        std::fs::read(&mpi_out).unwrap() == std::fs::read(&local_out).unwrap(),
        "split messages changed the output"
    );
}

#[test]
fn bf16_kv_over_mpi_matches_local_and_halves_the_bytes_sent() {
    let Some(launcher) = launcher() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (mpi_out, local_out) = (
        dir.path().join("bf16-mpi.st"),
        dir.path().join("bf16-local.st"),
    );
    let (bf16_report, f32_report) = (dir.path().join("bf16.json"), dir.path().join("f32.json"));
    let common = [&JOB[..], &["--layout", "striped", "--causal"]].concat();
    let mut args = vec![
        "run",
        "--backend",
        "mpi",
        "--dtype",
        "bf16",
        "--output",
        s(&mpi_out),
    ];
    args.extend(["--json", s(&bf16_report)]);
    args.extend(&common);
    let m = mpirun(launcher, 3, &args);
    assert_eq!(m.code, Some(0), "{}", m.describe());
    let mut args = vec!["run", "--backend", "mpi", "--json", s(&f32_report)];
    args.extend(&common);
    let f = mpirun(launcher, 3, &args);
    assert_eq!(f.code, Some(0), "{}", f.describe());
    let mut args = vec![
        "run",
        "--backend",
        "local",
        "--workers",
        "3",
        "--dtype",
        "bf16",
    ];
    args.extend(["--output", s(&local_out)]);
    args.extend(&common);
    let l = ringattn(&args);
    assert_eq!(l.code, Some(0), "{}", l.describe());
    assert!(
        std::fs::read(&mpi_out).unwrap() == std::fs::read(&local_out).unwrap(),
        "bf16: mpi and local outputs differ"
    );
    let read = |p: &Path| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let (b, f) = (read(&bf16_report), read(&f32_report));
    assert_eq!(b["dtype"], "bf16");
    assert_eq!(b["check"]["passed"], true);
    for r in 0..3 {
        let (bs, fs) = (
            b["ranks"][r]["bytes_sent"].as_u64().unwrap(),
            f["ranks"][r]["bytes_sent"].as_u64().unwrap(),
        );
        assert_eq!(2 * bs, fs, "rank {r}: bf16 must send half the bytes");
        let (bp, fp) = (
            b["ranks"][r]["kv_bytes_peak"].as_u64().unwrap(),
            f["ranks"][r]["kv_bytes_peak"].as_u64().unwrap(),
        );
        assert_eq!(2 * bp, fp, "rank {r}: bf16 must hold half the KV bytes");
    }
}

/// Packed documents and sliding windows (issue 17) under mpirun: the check passes, the output
/// is bitwise the local backend's, and the pruned ring sends the same bytes.
#[test]
fn documents_and_windows_over_mpi_match_local() {
    let Some(launcher) = launcher() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cases: [(usize, &str, &[&str]); 4] = [
        (3, "contiguous", &["--causal", "--docs", "1,400,3,597"]),
        // Uneven ranks: the documents longer than N / P are split, the short ones whole.
        (3, "docs", &["--causal", "--docs", "1,400,3,597"]),
        (4, "zigzag", &["--window", "7"]),
        (
            2,
            "striped",
            &["--causal", "--window", "128", "--docs", "600,1,400"],
        ),
    ];
    for (p, layout, mask) in cases {
        let name = format!("p{p}-{layout}-{}", mask.join(" "));
        let (mpi_out, local_out) = (dir.path().join("m.st"), dir.path().join("l.st"));
        let (mpi_json, local_json) = (dir.path().join("m.json"), dir.path().join("l.json"));
        let common = [&JOB[..], &["--layout", layout], mask].concat();
        let workers = p.to_string();
        let mut args = vec!["run", "--backend", "mpi", "--output", s(&mpi_out)];
        args.extend(["--json", s(&mpi_json)]);
        args.extend(&common);
        let m = mpirun(launcher, p, &args);
        assert_eq!(m.code, Some(0), "{name}, mpi: {}", m.describe());
        let mut args = vec!["run", "--backend", "local", "--workers", &workers];
        args.extend(["--output", s(&local_out), "--json", s(&local_json)]);
        args.extend(&common);
        let l = ringattn(&args);
        assert_eq!(l.code, Some(0), "{name}, local: {}", l.describe());
        let read =
            |p: &Path| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
        let (mj, lj) = (read(&mpi_json), read(&local_json));
        assert_eq!(mj["check"]["passed"], true, "{name}");
        for r in 0..p {
            assert_eq!(
                mj["ranks"][r]["bytes_sent"], lj["ranks"][r]["bytes_sent"],
                "{name} rank {r}"
            );
        }
        assert!(
            std::fs::read(&mpi_out).unwrap() == std::fs::read(&local_out).unwrap(),
            "{name}: mpi and local outputs differ"
        );
    }
}
