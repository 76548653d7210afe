//! Batch jobs on a real SLURM: the one-node SLURM of `scripts/slurm-local.sh` (started here,
//! idempotently). `ringattn sbatch --wait` runs `run` and `decode` jobs whose reports and
//! tensors equal a local run's bitwise; a failing job ends nonzero with its message in the log;
//! `bench scaling --backend slurm` writes the rows of the local sweep.
//!
//! When SLURM cannot start (not root, no apt-get...) the tests print a note and pass, except in
//! CI (`CI=true`), where that is a failure. They take one lock: the local SLURM has one node.

#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

mod common;
use common::*;

/// One test at a time on the one-node SLURM.
static SERIAL: Mutex<()> = Mutex::new(());

/// The repository root (scripts/ lives there).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Starts the local SLURM (idempotent) and takes the lock, or `None` with a note when it
/// cannot start; panics when it cannot under `CI=true`.
fn slurm() -> Option<MutexGuard<'static, ()>> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/slurm-local.sh"))
        .arg("start")
        .current_dir(repo());
    // A fresh machine installs slurm-wlm and munge first: minutes, not seconds.
    let r = run_long(cmd, Duration::from_secs(900));
    if r.code == Some(0) {
        return Some(guard);
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "CI=true but the local SLURM did not start (bash scripts/slurm-local.sh start):\n{}",
        r.describe()
    );
    eprintln!("note: no local SLURM ({}); skipping", r.stderr.trim());
    None
}

/// `ringattn ARGS` run in `dir` (where sbatch jobs write their logs and reports).
fn ringattn_in(dir: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringattn"));
    cmd.args(args).current_dir(dir).env_remove("RINGATTN");
    run_long(cmd, Duration::from_secs(180))
}

/// `ringattn sbatch` of 2 ranks on 1 node with `--wait`, then `command`; returns the run and
/// the job id (first stdout line).
fn sbatch_wait(dir: &Path, command: &[&str]) -> (Run, String) {
    let mut args = vec![
        "sbatch",
        "--nodes",
        "1",
        "--ntasks-per-node",
        "2",
        "--cpus-per-task",
        "1",
        "--time",
        "00:05:00",
        "--wait",
        "--",
    ];
    args.extend(command);
    let r = ringattn_in(dir, &args);
    let id = r.stdout.lines().next().unwrap_or("").trim().to_string();
    assert!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        "no job id first:\n{}",
        r.describe()
    );
    (r, id)
}

fn report(path: &Path) -> Value {
    json(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Asserts two f32 tensors are equal bit for bit.
fn assert_bitwise(a: &Path, b: &Path, name: &str) {
    let (sa, da) = read_f32(a, name);
    let (sb, db) = read_f32(b, name);
    assert_eq!(sa, sb, "shape of {name}");
    let differ = da
        .iter()
        .zip(&db)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(
        differ, 0,
        "{name}: {differ} values differ between SLURM and local"
    );
}

const RUN: [&str; 10] = [
    "--seq",
    "300",
    "--heads",
    "4",
    "--kv-heads",
    "2",
    "--head-dim",
    "16",
    "--causal",
    "--layout=striped",
];

#[test]
fn a_run_job_equals_a_local_run_bitwise_and_passes_its_check() {
    let Some(_slurm) = slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut local = vec![
        "run",
        "--backend",
        "local",
        "--workers",
        "2",
        "--threads",
        "1",
    ];
    local.extend(RUN);
    local.extend(["--output", "local.safetensors", "--json", "local.json"]);
    assert_success(&ringattn_in(dir.path(), &local));

    let mut job = vec!["run"];
    job.extend(RUN);
    job.extend(["--check", "--output", "slurm.safetensors"]);
    let (r, id) = sbatch_wait(dir.path(), &job);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert!(
        r.stdout.contains("check passed") && r.stdout.contains("mpi P=2 striped N=300"),
        "{}",
        r.describe()
    );
    let got = report(&dir.path().join(format!("ringattn-{id}.json")));
    assert_eq!(got["backend"], "mpi");
    assert_eq!(got["world"], 2);
    assert_eq!(got["check"]["passed"], true, "{got}");
    assert_eq!(
        got["layout"],
        report(&dir.path().join("local.json"))["layout"]
    );
    for name in ["out", "lse"] {
        assert_bitwise(
            &dir.path().join("local.safetensors"),
            &dir.path().join("slurm.safetensors"),
            name,
        );
    }
}

#[test]
fn a_generate_job_gives_the_local_tokens() {
    let Some(model) = model_file() else { return };
    let Some(_slurm) = slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = model.display().to_string();
    let words = [
        "--model",
        &model,
        "--prompt",
        "The quick brown fox jumps over the lazy dog. The quick brown fox",
        "--max-tokens",
        "6",
        "--layout",
        "striped",
    ];
    let mut local = vec![
        "generate",
        "--backend",
        "local",
        "--workers",
        "2",
        "--threads",
        "1",
    ];
    local.extend(words);
    local.extend(["--json", "local.json"]);
    assert_success(&ringattn_in(dir.path(), &local));
    let mut job = vec!["generate"];
    job.extend(words);
    let (r, id) = sbatch_wait(dir.path(), &job);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert!(r.stdout.contains("generate P=2"), "{}", r.describe());
    let got = report(&dir.path().join(format!("ringattn-{id}.json")));
    let want = report(&dir.path().join("local.json"));
    assert_eq!(got["world"], 2);
    assert_eq!(got["token_ids"], want["token_ids"], "{got}");
    assert_eq!(got["prompt_tokens"], want["prompt_tokens"]);
}

#[test]
fn a_decode_job_matches_a_local_decode_and_passes_its_check() {
    let Some(_slurm) = slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let words = [
        "--prefill",
        "96",
        "--steps",
        "3",
        "--heads",
        "4",
        "--kv-heads",
        "2",
        "--head-dim",
        "16",
        "--layout",
        "striped",
        "--check",
    ];
    let mut local = vec![
        "decode",
        "--backend",
        "local",
        "--workers",
        "2",
        "--threads",
        "1",
    ];
    local.extend(words);
    local.extend(["--json", "local.json"]);
    assert_success(&ringattn_in(dir.path(), &local));
    let mut job = vec!["decode"];
    job.extend(words);
    let (r, id) = sbatch_wait(dir.path(), &job);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let got = report(&dir.path().join(format!("ringattn-{id}.json")));
    let want = report(&dir.path().join("local.json"));
    assert_eq!(got["backend"], "mpi");
    assert_eq!(got["check"]["passed"], true, "{got}");
    // The check's errors are computed from every decoded row: equal errors, equal outputs.
    for key in ["rows_checked", "max_abs_err", "max_lse_err"] {
        assert_eq!(got["check"][key], want["check"][key], "check.{key}");
    }
    assert_eq!(got["decode"]["owners"], want["decode"]["owners"]);
    assert_eq!(got["decode"]["flops"], want["decode"]["flops"]);
}

#[test]
fn a_failing_job_ends_nonzero_with_its_message_in_the_log() {
    let Some(_slurm) = slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Two ranks, one token: bad input the script only finds when the job runs.
    let (r, id) = sbatch_wait(dir.path(), &["run", "--seq", "1"]);
    let message = "more workers (2) than tokens (1)";
    assert_eq!(r.code, Some(2), "{}", r.describe());
    assert!(
        r.stderr
            .contains(&format!("job {id} failed with exit code 2"))
            && r.stderr.contains(message),
        "{}",
        r.describe()
    );
    let log = std::fs::read_to_string(dir.path().join(format!("ringattn-{id}.out"))).unwrap();
    assert!(log.contains(message), "{log}");
    let show = Command::new("scontrol")
        .args(["show", "job", &id])
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.contains("JobState=FAILED") && show.contains("ExitCode=2:0"),
        "{show}"
    );
}

/// Like [`run`], with a longer deadline: installing SLURM, and jobs that wait for SLURM's
/// scheduler (`sbatch --wait` polls), take longer than a plain command.
fn run_long(mut cmd: Command, limit: Duration) -> Run {
    let (tx, rx) = std::sync::mpsc::channel();
    let start = std::time::Instant::now();
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning ringattn");
    let id = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx.recv_timeout(limit).unwrap_or_else(|_| {
        let _ = Command::new("kill").arg(id.to_string()).status();
        panic!("{cmd:?} did not finish within {limit:?} (hang?)")
    });
    let out = out.expect("waiting for ringattn");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// `bench scaling` of 4 runs (P = 1, and 2 with three layouts) into DIR/`out`.
fn sweep(dir: &Path, out: &str, backend: &str) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringattn"));
    cmd.args([
        "bench",
        "scaling",
        "--backend",
        backend,
        "--workers",
        "1,2",
        "--seq",
        "256",
        "--heads",
        "2",
        "--head-dim",
        "16",
        "--causal",
        "--layout",
        "contiguous,striped,zigzag",
        "--no-plot",
        "--out",
        out,
    ])
    .current_dir(dir)
    .env_remove("RINGATTN");
    run_long(cmd, Duration::from_secs(240))
}

fn rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(json)
        .collect()
}

/// What must agree between two results lines: the run's identity, its sweep object, and the
/// numbers that do not depend on timing (work, tokens and bytes per rank).
fn identity(v: &Value) -> Value {
    let ranks: Vec<Value> = v["ranks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| serde_json::json!([r["rank"], r["tokens"], r["bytes_sent"], r["threads"]]))
        .collect();
    let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    keys.sort();
    serde_json::json!({
        "keys": keys, "world": v["world"], "seq": v["seq"], "layout": v["layout"],
        "causal": v["causal"], "heads": v["heads"], "kv_heads": v["kv_heads"],
        "head_dim": v["head_dim"], "dtype": v["dtype"], "duo": v["duo"], "flops": v["flops"],
        "sweep": v["sweep"], "ranks": ranks,
    })
}

#[test]
fn a_slurm_job_array_sweep_writes_the_local_sweeps_rows_and_resumes() {
    let Some(_slurm) = slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let local = sweep(dir.path(), "local", "local");
    assert_eq!(local.code, Some(0), "{}", local.describe());
    let r = sweep(dir.path(), "slurm", "slurm");
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert!(r.stderr.contains("(4 tasks)"), "{}", r.describe());
    let want: Vec<Value> = rows(&dir.path().join("local/results.jsonl"));
    let path = dir.path().join("slurm/results.jsonl");
    let got = rows(&path);
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|v| v["backend"] == "mpi"));
    let ids = |rows: &[Value]| rows.iter().map(identity).collect::<Vec<_>>();
    assert_eq!(ids(&got), ids(&want));

    // Resumable: nothing to do submits nothing; a lost line is the only task resubmitted.
    let r = sweep(dir.path(), "slurm", "slurm");
    assert!(
        r.code == Some(0) && r.stderr.contains("(0 to do)") && !r.stderr.contains("job array"),
        "{}",
        r.describe()
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text.lines().take(3).collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    let r = sweep(dir.path(), "slurm", "slurm");
    assert!(
        r.code == Some(0) && r.stderr.contains("(1 tasks)"),
        "{}",
        r.describe()
    );
    assert_eq!(ids(&rows(&path)), ids(&want));
}

#[test]
fn submit_alone_prints_only_the_job_id_and_returns() {
    let Some(_slurm) = slurm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "sbatch",
        "--nodes",
        "1",
        "--ntasks-per-node",
        "2",
        "--cpus-per-task",
        "1",
        "--submit",
        "--",
        "run",
    ];
    args.extend(SMALL);
    let r = ringattn_in(dir.path(), &args);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let id = r.stdout.trim();
    assert!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        "{}",
        r.describe()
    );
    // The job goes on without us: wait for it to leave the queue, then read its report.
    let start = std::time::Instant::now();
    loop {
        let q = Command::new("squeue")
            .args(["-h", "-j", id])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&q.stdout).trim().is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "job {id} still queued"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = report(&dir.path().join(format!("ringattn-{id}.json")));
    assert_eq!(got["check"]["passed"], true, "{got}");
}

/// A cluster whose TaskPlugin cannot bind (a stand-in `scontrol` says task/none): the script
/// leaves `--cpu-bind` out and says how to turn it on; `--cpu-bind` forces it.
#[test]
fn cores_are_bound_only_where_the_cluster_can() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("scontrol");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'TaskPlugin              = task/none'\n",
    )
    .unwrap();
    let chmod = Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    assert!(chmod.success());
    let path = std::env::join_paths(
        std::iter::once(dir.path().to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let script = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringattn"));
        cmd.args(["sbatch", "--nodes", "1", "--ntasks-per-node", "2"])
            .args(["--cpus-per-task", "1"])
            .args(extra)
            .args(["--", "run"])
            .env("PATH", &path);
        let r = run(cmd);
        assert_eq!(r.code, Some(0), "{}", r.describe());
        r.stdout
    };
    let s = script(&[]);
    let srun = s.lines().find(|l| l.starts_with("srun ")).unwrap();
    assert!(!srun.contains("--cpu-bind"), "{s}");
    assert!(
        s.contains("# Note: cores are not bound: this cluster's TaskPlugin is task/none; set TaskPlugin=task/affinity"),
        "{s}"
    );
    let s = script(&["--cpu-bind"]);
    assert!(s.contains(" --cpu-bind=cores "), "{s}");
    assert!(!s.contains("# Note:"), "{s}");
}
