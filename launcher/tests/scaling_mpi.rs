//! `ringattn bench scaling --backend mpi`: one `mpirun -n P` launch per combination, the same
//! results lines as the local backend (with `"backend": "mpi"`), resumable, and a failing launch
//! is one line naming the combination with exit 1, finished lines kept.
//!
//! Needs `mpirun` or `mpiexec` on PATH (`bash scripts/install-mpi.sh`). Without one the tests
//! print a note and pass, except in CI (`CI=true`), where a missing MPI is a failure.

#![cfg(feature = "mpi")]

use std::path::Path;

mod common;
use common::*;

/// True when an MPI launcher is on PATH; panics when it is missing in CI.
fn have_mpi() -> bool {
    mpi_launcher().is_some()
}

/// The tiny sweep of these tests, into `out`, with `extra` options.
fn sweep(out: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "bench",
        "scaling",
        "--backend",
        "mpi",
        "--workers",
        "1,2",
        "--seq",
        "256",
        "--heads",
        "2",
        "--head-dim",
        "16",
        "--layout",
        "contiguous,striped",
        "--no-plot",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ringattn(&args)
}

fn lines(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(json)
        .collect()
}

#[test]
fn an_mpi_sweep_writes_one_mpi_report_per_combination_and_resumes() {
    if !have_mpi() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let first = sweep(dir.path(), &[]);
    assert_eq!(first.code, Some(0), "{}", first.describe());
    let got = lines(dir.path());
    // P = 1 runs its first layout only (all layouts are the same run), as with --backend local.
    let combos: Vec<(u64, &str)> = got
        .iter()
        .map(|v| (v["world"].as_u64().unwrap(), v["layout"].as_str().unwrap()))
        .collect();
    assert_eq!(
        combos,
        [(1, "contiguous"), (2, "contiguous"), (2, "striped")],
        "{}",
        first.describe()
    );
    for v in &got {
        assert_eq!(v["backend"], "mpi", "{v}");
        assert_eq!(
            v["ranks"].as_array().unwrap().len() as u64,
            v["world"].as_u64().unwrap()
        );
        assert_eq!(v["sweep"]["mode"], "strong", "{v}");
        assert_eq!(v["sweep"]["base_seq"], 256, "{v}");
        assert!(v["wall_s"].as_f64().unwrap() > 0.0, "{v}");
    }
    let again = sweep(dir.path(), &[]);
    assert_eq!(again.code, Some(0), "{}", again.describe());
    assert!(
        again.stderr.contains("3 already in") && again.stderr.contains("(0 to do)"),
        "{}",
        again.stderr
    );
    assert_eq!(lines(dir.path()).len(), 3);
}

#[test]
fn a_failing_launch_names_the_combination_exits_1_and_keeps_finished_lines() {
    if !have_mpi() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let real = which("mpirun").or_else(|| which("mpiexec")).unwrap();
    // A launcher that works for one process and fails for two.
    let fake = dir.path().join("mpirun");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ncase \"$*\" in *--version*) exec {} --version ;; esac\n\
             if [ \"$2\" = 2 ]; then echo 'boom: no nodes' >&2; exit 3; fi\nexec {} \"$@\"\n",
            real.display(),
            real.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&fake)
        .status()
        .unwrap();
    let out = dir.path().join("out");
    let run = sweep(&out, &["--mpirun", fake.to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("ringattn: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].contains("P=2 contiguous N=256") && errors[0].contains("boom"),
        "{}",
        run.stderr
    );
    let kept = lines(&out);
    assert_eq!(kept.len(), 1, "{}", run.describe());
    assert_eq!(kept[0]["world"], 1);
}
