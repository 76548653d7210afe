//! Failure injection with a real `mpirun` (issue 13, item 12): SIGTERM to `ringattn launch`
//! ends its MPI job, SIGINT/SIGTERM to `ringattn bench scaling --backend mpi` end the mpirun
//! job of its current point, and SIGKILL of one of 3 ranks mid-run ends the whole job — each
//! within a generous hang guard (not a timing measurement), with a nonzero exit and no rank
//! process left. Needs the `mpi` feature and mpirun on PATH (a note and a pass without mpirun, except
//! in CI).

#![cfg(feature = "mpi")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

mod common;
use common::{mpi_launcher, p, rand_tensor, raw_f32, ringattn, write_raw};

/// A hang guard, not a speed target: a job that has not ended this long after the signal is
/// stuck (it ends in well under a second; generous so a loaded 2-core CI machine cannot trip it).
const ENDS_WITHIN: Duration = Duration::from_secs(30);

/// PIDs of running processes of the binary under test whose command line holds `marker`
/// (the job's unique seed or length), other than the `launch` or `bench` process itself.
fn ranks_of(marker: &str) -> Vec<i32> {
    let exe = env!("CARGO_BIN_EXE_ringattn");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let words: Vec<String> = cmd
                .split(|&b| b == 0)
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect();
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = state
                .rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('Z'));
            !zombie
                && words.first().is_some_and(|w| w == exe)
                && words.iter().any(|w| w == marker)
                && !words.iter().any(|w| w == "launch" || w == "bench")
        })
        .collect()
}

/// Starts `ringattn launch -n P -- run ...` with a long job marked by `marker`, and waits until
/// its P ranks are running.
fn start_job(ranks: usize, marker: &str) -> Option<Child> {
    mpi_launcher()?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringattn"));
    command
        .args(["launch", "-n", &ranks.to_string(), "--", "run"])
        .args([
            "--seq",
            "400000",
            "--heads",
            "8",
            "--head-dim",
            "64",
            "--threads",
            "1",
        ])
        .args(["--no-sched-cache", "--seed", marker]);
    Some(started(command, ranks, marker))
}

/// Spawns `command` (an MPI job of `ranks` ranks whose command lines hold `marker`) and waits
/// until its ranks are running.
fn started(mut command: Command, ranks: usize, marker: &str) -> Child {
    let mut child = command
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ringattn launch");
    let start = Instant::now();
    while ranks_of(marker).len() < ranks {
        if start.elapsed() > Duration::from_secs(60) || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            panic!("the {ranks} ranks of the job did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the ranks get into the ring pass.
    std::thread::sleep(Duration::from_millis(500));
    child
}

fn signal(pid: i32, sig: Signal) {
    let _ = kill_process(Pid::from_raw(pid).expect("a positive pid"), sig);
}

/// Waits up to [`ENDS_WITHIN`] for `child`; kills it and everything marked on failure.
fn assert_ends(mut child: Child, marker: &str, what: &str) {
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting") {
            break s;
        }
        if start.elapsed() > ENDS_WITHIN {
            let _ = child.kill();
            for pid in ranks_of(marker) {
                signal(pid, Signal::KILL);
            }
            panic!("{what}: the job did not end within {ENDS_WITHIN:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "{what}: exit status {status}");
    // The ranks are gone (a moment for the kernel to reap them).
    let gone = Instant::now();
    while !ranks_of(marker).is_empty() && gone.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        ranks_of(marker),
        Vec::<i32>::new(),
        "{what}: ranks left behind"
    );
}

fn marker(tag: u64) -> String {
    (u64::from(std::process::id()) * 1000 + tag).to_string()
}

#[test]
fn sigterm_to_launch_ends_its_mpi_job() {
    let marker = marker(1);
    let Some(child) = start_job(2, &marker) else {
        return;
    };
    signal(child.id() as i32, Signal::TERM);
    assert_ends(child, &marker, "SIGTERM to launch");
}

/// `bench scaling --backend mpi` runs each point as its own mpirun job: SIGINT or SIGTERM to
/// the sweep reaches that mpirun, every rank ends, and the sweep exits non-zero. The ranks are
/// found by the point's length, unique to this test process.
#[test]
fn sigint_and_sigterm_to_bench_scaling_end_its_mpi_job() {
    for (tag, sig) in [(3, Signal::INT), (4, Signal::TERM)] {
        if mpi_launcher().is_none() {
            return;
        }
        let seq = (200_000 + (u64::from(std::process::id()) % 1000) * 10 + tag).to_string();
        let out = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringattn"));
        command
            .args(["bench", "scaling", "--backend", "mpi", "--workers", "2"])
            .args(["--seq", &seq, "--layout", "contiguous", "--heads", "4"])
            .args(["--head-dim", "64", "--threads", "1", "--no-plot", "--out"])
            .arg(out.path());
        let child = started(command, 2, &seq);
        signal(child.id() as i32, sig);
        assert_ends(
            child,
            &seq,
            &format!("{sig:?} to bench scaling --backend mpi"),
        );
        let results = std::fs::read_to_string(out.path().join("results.jsonl")).unwrap_or_default();
        assert!(
            results.trim().is_empty(),
            "an interrupted point was recorded: {results}"
        );
    }
}

#[test]
fn sigkill_of_one_rank_of_three_ends_the_job() {
    let marker = marker(2);
    let Some(child) = start_job(3, &marker) else {
        return;
    };
    let ranks = ranks_of(&marker);
    signal(ranks[ranks.len() / 2], Signal::KILL);
    assert_ends(child, &marker, "SIGKILL of one rank");
}

#[test]
fn a_nan_input_is_bad_input_under_mpi_too() {
    if mpi_launcher().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.safetensors");
    let mut q = rand_tensor(1, &[1, 16, 8]);
    q[5] = f32::NAN;
    let (k, v) = (rand_tensor(2, &[1, 16, 8]), rand_tensor(3, &[1, 16, 8]));
    write_raw(
        &path,
        &[
            raw_f32("q", &[1, 16, 8], &q),
            raw_f32("k", &[1, 16, 8], &k),
            raw_f32("v", &[1, 16, 8], &v),
        ],
    );
    let local = ringattn(&[
        "run",
        "--input",
        p(&path),
        "--workers",
        "1",
        "--threads",
        "1",
    ]);
    assert_eq!(local.code, Some(2), "{}", local.describe());
    let args = [
        "launch",
        "-n",
        "2",
        "--",
        "run",
        "--input",
        p(&path),
        "--threads",
        "1",
    ];
    let mpi = ringattn(&args);
    assert_eq!(mpi.code, Some(2), "{}", mpi.describe());
    assert!(mpi.stderr.contains("NaN"), "{}", mpi.describe());
}
