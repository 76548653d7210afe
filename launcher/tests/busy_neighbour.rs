//! `bench sched --busy-neighbour`: the bench starts its own spinning process on one core,
//! reports hybrid vs static vs rayon with it, and leaves no process behind. (Only the shape of
//! the report is asserted: timings are the benchmark's business, not a test's.)

mod common;
use common::*;

/// Processes whose command line holds `--spin-on` and this test's binary under test.
fn spinners() -> Vec<String> {
    let exe = env!("CARGO_BIN_EXE_ringattn");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(exe) && cmd.contains("--spin-on") {
                found.push(cmd);
            }
        }
    }
    found
}

#[test]
fn busy_neighbour_runs_reports_and_is_stopped() {
    let run = ringattn(&[
        "bench",
        "sched",
        "--busy-neighbour",
        "--calls",
        "2",
        "--seq",
        "256",
        "--heads",
        "2",
        "--head-dim",
        "32",
        "--threads",
        "1",
        "--json",
        "-",
    ]);
    assert_success(&run);
    let v = json(&run.stdout);
    let cpu = v["busy_neighbour"]
        .as_u64()
        .expect("busy_neighbour in the report");
    assert_eq!(
        v["cores"][0].as_u64(),
        Some(cpu),
        "default: the last pinned core"
    );
    for key in [
        "hybrid_s",
        "static_s",
        "rayon_s",
        "rayon_over_hybrid",
        "ideal_s",
    ] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {v}");
    }
    assert!(spinners().is_empty(), "left behind: {:?}", spinners());
    let bad = ringattn(&["bench", "sched", "--busy-neighbour", "x", "--calls", "1"]);
    assert_eq!(bad.code, Some(2), "{}", bad.describe());
    assert_one_line_error(&bad, &["--busy-neighbour"]);
}
