//! Helpers shared by the launcher's integration tests: run a command with a deadline and
//! capture its output, find programs on PATH, read reports.
#![allow(dead_code)] // each test file uses its own subset

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest any single invocation may take before the test fails (a hang is a failure).
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A small job that checks every row.
pub const SMALL: [&str; 8] = [
    "--seq",
    "300",
    "--heads",
    "2",
    "--head-dim",
    "16",
    "--causal",
    "--check",
];

/// What one command produced.
pub struct Run {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
    /// Wall time of the command.
    pub elapsed: Duration,
}

impl Run {
    /// Exit code, time and both streams, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "exit code {:?} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` (no stdin, no RUST_BACKTRACE), killing it and failing past [`DEADLINE`].
pub fn run(mut cmd: Command) -> Run {
    let start = Instant::now();
    let mut child = cmd
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning a command");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for a command") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {DEADLINE:?} (hang?)");
        }
        thread::sleep(Duration::from_millis(5));
    };
    Run {
        code: status.code(),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
        elapsed: start.elapsed(),
    }
}

/// `ringattn ARGS` (the binary under test).
pub fn ringattn(args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringattn"));
    cmd.args(args);
    run(cmd)
}

/// The first file called `name` in a PATH directory.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Parses a one-object JSON report.
pub fn json(text: &str) -> Value {
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("not one JSON report ({e}):\n{text}"))
}

/// Every rank's `cores` in a report.
pub fn cores_of(report: &Value) -> Vec<Vec<u64>> {
    report["ranks"]
        .as_array()
        .expect("ranks")
        .iter()
        .map(|r| {
            r["cores"]
                .as_array()
                .expect("ranks[].cores")
                .iter()
                .map(|c| c.as_u64().unwrap())
                .collect()
        })
        .collect()
}
