//! Where the local backend's kernel threads run: disjoint cores per worker, `--no-pin`, one
//! warning when oversubscribed, and the report's `cores`. (Under MPI: tests/launch.rs.)

use std::thread;

mod common;
use common::*;

/// CPUs in this process's affinity mask (what ringattn plans with).
fn allowed() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(str::trim);
    let Some(list) = list else {
        return thread::available_parallelism().map_or(1, |n| n.get());
    };
    list.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
            None => 1,
        })
        .sum()
}

#[test]
fn local_workers_get_disjoint_cores_unless_no_pin() {
    if allowed() < 2 {
        eprintln!("note: fewer than 2 allowed cores; skipping the pinning check");
        return;
    }
    let mut args = vec![
        "run",
        "--backend",
        "local",
        "--workers",
        "2",
        "--threads",
        "1",
    ];
    args.extend(SMALL);
    args.extend(["--json", "-"]);
    let r = ringattn(&args);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert!(r.stderr.is_empty(), "{}", r.describe());
    let cores = cores_of(&json(&r.stdout));
    assert_eq!(cores.len(), 2);
    assert!(cores.iter().all(|c| c.len() == 1), "{cores:?}");
    assert_ne!(cores[0], cores[1], "workers share a core: {cores:?}");

    args.push("--no-pin");
    let r = ringattn(&args);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert!(cores_of(&json(&r.stdout)).iter().all(Vec::is_empty));
}

#[test]
fn oversubscribed_threads_warn_once_and_run_unpinned() {
    let threads = (allowed() + 1).to_string();
    let mut args = vec!["run", "--workers", "2", "--threads", threads.as_str()];
    args.extend(SMALL);
    args.extend(["--json", "-"]);
    // More threads than allowed cores is refused unless asked for.
    assert_user_error(&args, &["--threads", "--oversubscribe"]);
    args.push("--oversubscribe");
    let r = ringattn(&args);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one warning line: {}", r.describe());
    assert!(
        lines[0].starts_with("ringattn: warning:") && lines[0].contains("oversubscribed"),
        "{}",
        r.describe()
    );
    assert!(cores_of(&json(&r.stdout)).iter().all(Vec::is_empty));
}
