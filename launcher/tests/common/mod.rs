//! Helpers shared by the launcher's integration tests: run a command with a deadline and
//! capture its output, find programs on PATH, read reports.
#![allow(dead_code)] // each test file uses its own subset

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use std::path::Path;

use safetensors::tensor::{serialize_to_file, Dtype, TensorView};
use safetensors::SafeTensors;
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

// Shared with the runtime's MPI test (one copy, in the dev-only crate); each test file uses
// its own subset.
#[allow(unused_imports)]
pub use ringattn_testutil::mpi::{mpi_launcher, which};

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

/// Asserts that stderr is exactly one `ringattn: error:` line, without panic text, that
/// contains every needle.
pub fn assert_one_line_error(run: &Run, needles: &[&str]) {
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stderr must be exactly one line\n{}",
        run.describe()
    );
    let line = lines[0];
    assert!(
        line.starts_with("ringattn: error:"),
        "stderr must start with `ringattn: error:`\n{}",
        run.describe()
    );
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
        "panic text on stderr\n{}",
        run.describe()
    );
    for needle in needles {
        assert!(
            line.contains(needle),
            "stderr does not mention `{needle}`\n{}",
            run.describe()
        );
    }
}

/// Asserts a bad-input failure: exit code 2 and one error line naming the problem.
pub fn assert_user_error(args: &[&str], needles: &[&str]) -> Run {
    let run = ringattn(args);
    assert_eq!(
        run.code,
        Some(2),
        "ringattn {args:?} must exit 2\n{}",
        run.describe()
    );
    assert_one_line_error(&run, needles);
    run
}

/// Asserts that `dir` holds no temporary (dot-) files: an atomic write cleaned up after itself.
pub fn assert_no_temporary_files(dir: &Path) {
    let stray: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "temporary files left behind: {stray:?}");
}

pub fn assert_success(run: &Run) {
    assert_eq!(run.code, Some(0), "expected success\n{}", run.describe());
    assert!(
        !run.stderr.contains("panicked"),
        "panic text on stderr\n{}",
        run.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// Input files.
// ---------------------------------------------------------------------------------------------

/// Deterministic pseudo-random value in [-1, 1) (splitmix64 of `seed` and `i`).
pub fn rand_val(seed: u64, i: usize) -> f32 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(0x94D0_49BB_1331_11EB);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
}

pub fn rand_tensor(seed: u64, shape: &[usize]) -> Vec<f32> {
    (0..shape.iter().product::<usize>())
        .map(|i| rand_val(seed, i))
        .collect()
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// One tensor to write: name, dtype, shape, raw little-endian bytes.
pub struct Raw {
    pub name: &'static str,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

pub fn raw_f32(name: &'static str, shape: &[usize], data: &[f32]) -> Raw {
    assert_eq!(shape.iter().product::<usize>(), data.len());
    Raw {
        name,
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        bytes: f32_bytes(data),
    }
}

pub fn write_raw(path: &Path, tensors: &[Raw]) {
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|t| {
            (
                t.name,
                TensorView::new(t.dtype, t.shape.clone(), &t.bytes).expect("consistent tensor"),
            )
        })
        .collect();
    serialize_to_file(views, &None, path).expect("writing safetensors");
}

/// Writes f32 q/k/v of the given shapes, filled with deterministic values.
pub fn write_qkv(path: &Path, q_shape: &[usize], k_shape: &[usize], v_shape: &[usize]) {
    write_raw(
        path,
        &[
            raw_f32("q", q_shape, &rand_tensor(1, q_shape)),
            raw_f32("k", k_shape, &rand_tensor(2, k_shape)),
            raw_f32("v", v_shape, &rand_tensor(3, v_shape)),
        ],
    );
}

/// Reads tensor `name` of a safetensors file as f32, returning (shape, data).
pub fn read_f32(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).expect("a valid safetensors output");
    let t = st
        .tensor(name)
        .unwrap_or_else(|e| panic!("tensor `{name}` in {}: {e:?}", path.display()));
    assert_eq!(t.dtype(), Dtype::F32, "tensor `{name}` must be f32");
    let data = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), data)
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// The model file, or `None` with a printed line when it is absent outside CI (CI fetches it
/// with scripts/get-model.sh before the tests; missing there is a failure, not a skip).
pub fn model_file() -> Option<std::path::PathBuf> {
    let path = ringattn_model::default_model_path();
    if path.is_file() {
        return Some(path);
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "model {} missing: run {}",
        path.display(),
        ringattn_model::FETCH_COMMAND
    );
    eprintln!("SKIPPED: model {} not found", path.display());
    None
}
