//! The simulator against measured runs of this machine (issue 7): P ∈ {1, 2, 4}, contiguous
//! and striped, causal; predicted wall within 25% of measured, predicted imbalance within 10%,
//! and the contiguous/striped ratio within 25%.
//!
//! The machine may be small and shared, so the comparison is made robust rather than loose:
//! - the kernel speed is calibrated in the same test, right before each measurement
//!   (`simulate --calibrate`, with as many busy threads as the run keeps busy);
//! - runs take ~0.5 s alone, so fixed per-run costs stay small;
//! - more rank threads than cores is modelled by `--cores` (ranks share the cores);
//! - the whole comparison is tried up to three times; it passes when one attempt is within
//!   every tolerance, and prints the last attempt's table otherwise;
//! - wall times only mean something while this test has the machine: the CPU used by other
//!   work (all CPU time minus this test's and its children's, from /proc) is sampled before and
//!   during each attempt. An attempt during which other work used more than a quarter of the
//!   machine is not judged. When no attempt was quiet, the test says so on stderr and checks
//!   only what load does not change (striped balanced in both measurement and prediction,
//!   contiguous less balanced than striped in both).

use std::process::{Command, Stdio};

use serde_json::Value;

const HEADS: &str = "4";
const DIM: &str = "64";

fn ringattn(args: &[String]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ringattn"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running ringattn");
    assert!(
        out.status.success(),
        "ringattn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// The median of `xs` (upper median for an even count).
fn median(xs: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// Sequence length that makes the single-worker run take about `secs` at `gflops`.
fn seq_for(gflops: f64, secs: f64) -> usize {
    // Causal work ≈ 4 · D · H · N² / 2 FLOPs.
    let n = (secs * gflops * 1e9 * 2.0 / (4.0 * 64.0 * 4.0)).sqrt() as usize;
    (n / 512 * 512).clamp(2048, 16384)
}

struct Row {
    world: usize,
    layout: &'static str,
    measured_wall: f64,
    measured_imbalance: f64,
    predicted_wall: f64,
    predicted_imbalance: f64,
    /// Sequence length of the runs.
    seq: usize,
    /// (rate, masked tile cost, all-busy speed) the prediction used.
    model: (f64, f64, f64),
}

fn attempt(cores: usize) -> (Vec<Row>, Vec<String>) {
    let probe = ringattn(&words(&format!(
        "simulate --workers 1 --seq 4096 --heads {HEADS} --head-dim {DIM} --causal --calibrate --json -"
    )));
    // Runs long enough (~0.5 s alone) that per-run fixed costs (thread and pool start, first
    // touch of the buffers: a few ms per rank) stay small against the ring's work.
    let seq = seq_for(probe["gflops_per_rank"].as_f64().unwrap(), 0.5);
    let configs = [
        (1, "contiguous"),
        (2, "contiguous"),
        (2, "striped"),
        (4, "contiguous"),
        (4, "striped"),
    ];
    let mut rows: Vec<Row> = Vec::new();
    for (world, layout) in configs {
        let common = format!(
            "--workers {world} --seq {seq} --heads {HEADS} --head-dim {DIM} --causal --layout {layout}"
        );
        // One calibration per world size (same shard size and busy threads).
        let calibration = match rows.last() {
            Some(r) if r.world == world => format!(
                "--gflops-per-rank {} --partial-cost {} --all-busy-speed {}",
                r.model.0, r.model.1, r.model.2
            ),
            _ => "--calibrate".to_string(),
        };
        let predicted = ringattn(&words(&format!(
            "simulate {common} {calibration} --cores {cores} --link-gbps inf --latency-us 0 --json -"
        )));
        // Unpinned, like the calibration: a pinned rank cannot move off a core that other work
        // holds, which would make the measured balance depend on load.
        // Several runs: which oversubscribed rank the OS deschedules varies from run to run, so
        // the balance is the median run's (the wall the fastest run's).
        let repeats = if world > cores { 5 } else { 3 };
        let runs: Vec<Value> = (0..repeats)
            .map(|_| {
                ringattn(&words(&format!(
                    "run {common} --threads 1 --no-pin --json -"
                )))
            })
            .collect();
        let best = runs
            .iter()
            .min_by(|a, b| {
                a["wall_s"]
                    .as_f64()
                    .unwrap()
                    .total_cmp(&b["wall_s"].as_f64().unwrap())
            })
            .unwrap();
        rows.push(Row {
            seq,
            world,
            layout,
            measured_wall: best["wall_s"].as_f64().unwrap(),
            measured_imbalance: median(runs.iter().map(|r| r["imbalance"].as_f64().unwrap())),
            predicted_wall: predicted["predicted_wall_s"].as_f64().unwrap(),
            predicted_imbalance: predicted["predicted_imbalance"].as_f64().unwrap(),
            model: (
                predicted["gflops_per_rank"].as_f64().unwrap(),
                predicted["partial_tile_cost"].as_f64().unwrap(),
                predicted["all_busy_speed"].as_f64().unwrap(),
            ),
        });
    }
    let mut failures = Vec::new();
    for r in &rows {
        // The tolerances for every case, oversubscribed contiguous included: since the
        // kernel touches nothing on an all-Empty step (it used to pack K/V anyway, which gave
        // idle ranks compute time the model rightly does not count), that case is within 10%.
        let (wall_tol, imb_tol) = (0.25, 0.10);
        let wall = r.predicted_wall / r.measured_wall - 1.0;
        if wall.abs() > wall_tol {
            failures.push(format!(
                "P={} {}: wall off by {:+.0}%",
                r.world,
                r.layout,
                wall * 100.0
            ));
        }
        let imb = r.predicted_imbalance / r.measured_imbalance - 1.0;
        if imb.abs() > imb_tol {
            failures.push(format!(
                "P={} {}: imbalance off by {:+.0}%",
                r.world,
                r.layout,
                imb * 100.0
            ));
        }
    }
    // Ratio contiguous / striped at P = 2 (the Striped Attention speedup).
    let ratio = |f: fn(&Row) -> f64| f(&rows[1]) / f(&rows[2]);
    let (m, p) = (ratio(|r| r.measured_wall), ratio(|r| r.predicted_wall));
    if (p / m - 1.0).abs() > 0.25 {
        failures.push(format!(
            "P=2 contiguous/striped: measured {m:.2}, predicted {p:.2}"
        ));
    }
    (rows, failures)
}

/// CPU ticks of the whole machine (total, busy) and of this process with its children, from
/// /proc (Linux); `None` elsewhere.
fn ticks() -> Option<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let busy = total - v.get(3)? - v.get(4).unwrap_or(&0);
    let me = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<u64> = me
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // utime, stime, cutime, cstime (fields 14-17; the state letter is not parsed).
    let own: u64 = fields.get(10..14)?.iter().sum();
    Some((total, busy, own))
}

/// Fraction of the machine's CPU used by other work between two [`ticks`] readings.
fn foreign(a: Option<(u64, u64, u64)>, b: Option<(u64, u64, u64)>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) => {
            let total = b.0.saturating_sub(a.0).max(1) as f64;
            let others =
                b.1.saturating_sub(a.1)
                    .saturating_sub(b.2.saturating_sub(a.2));
            others as f64 / total
        }
        _ => 0.0,
    }
}

/// Fraction of the CPU other work uses over `secs` while this test waits.
fn busy_fraction(secs: f64) -> f64 {
    let a = ticks();
    std::thread::sleep(std::time::Duration::from_secs_f64(secs));
    foreign(a, ticks())
}

/// Most of the machine's CPU that other work may use for the time checks to be meaningful.
const QUIET: f64 = 0.25;

#[test]
fn simulator_predicts_measured_runs_of_this_machine() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut last = Vec::new();
    let mut busy_seen = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    for _ in 0..3 {
        let busy = busy_fraction(0.5);
        if busy > QUIET {
            busy_seen.push(busy);
            continue;
        }
        let before = ticks();
        let (r, failures) = attempt(cores);
        rows = r;
        // Other work that started during the attempt spoils it just the same.
        let during = foreign(before, ticks());
        if during > QUIET {
            busy_seen.push(during);
            continue;
        }
        let table: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "P={} {:<10} wall measured {:.3} predicted {:.3} · imbalance measured {:.3} predicted {:.3}",
                    r.world, r.layout, r.measured_wall, r.predicted_wall, r.measured_imbalance, r.predicted_imbalance
                )
            })
            .collect();
        eprintln!(
            "attempt (N = {}, other work {during:.2}): {failures:?}\n{}",
            rows.first().map_or(0, |r| r.seq),
            table.join("\n")
        );
        if failures.is_empty() {
            return;
        }
        last = failures;
    }
    if busy_seen.len() == 3 {
        if rows.is_empty() {
            rows = attempt(cores).0;
        }
        eprintln!(
            "note: other work used {:?} of the CPU before each attempt (limit {QUIET}): measured \
             wall times are not comparable, only load-independent properties were checked",
            busy_seen
        );
        for r in rows.iter().filter(|r| r.layout == "striped") {
            assert!(
                r.predicted_imbalance < 1.01,
                "P={}: {}",
                r.world,
                r.predicted_imbalance
            );
            assert!(
                r.measured_imbalance < 1.25,
                "P={}: {}",
                r.world,
                r.measured_imbalance
            );
        }
        let (contiguous, striped) = (&rows[1], &rows[2]);
        assert!(contiguous.predicted_imbalance > striped.predicted_imbalance + 0.2);
        assert!(contiguous.measured_imbalance > striped.measured_imbalance);
        return;
    }
    panic!("the simulator missed measured runs on a quiet machine: {last:?} (other work: {busy_seen:?})");
}
