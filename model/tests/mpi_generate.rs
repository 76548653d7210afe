//! `generate_rank` on the MPI backend under a real `mpirun -n 3` (feature `mpi`; no libtest
//! harness): the ~700-token reference prompt, P = 3 processes, striped layout; rank 0 checks its
//! greedy tokens and last-position logits against the same run on one local rank (which
//! `reference.rs` checks against candle's llama).
//!
//! Run by `cargo test`, this binary starts itself under `mpirun` with `RINGATTN_MPI_MODEL_CHILD`
//! set. Without an MPI launcher, or locally without the model, it prints a note and passes; in
//! CI (`CI=true`) both are failures.

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ringattn_model::{default_model_path, generate_rank, generate_with, GenerateSpec, Model};
use ringattn_runtime::mpi_backend::MpiComm;
use ringattn_runtime::Comm;

#[path = "common/mod.rs"]
mod common;

const CHILD_ENV: &str = "RINGATTN_MPI_MODEL_CHILD";
const RANKS: usize = 3;
const STEPS: usize = 12;
const DEADLINE: Duration = Duration::from_secs(1200);

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        rank_main();
    } else {
        launch();
    }
}

fn launch() {
    if common::model_path().is_none() {
        return;
    }
    let Some(mpirun) = ["mpirun", "mpiexec"].iter().find_map(|n| which(n)) else {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !in_ci,
            "CI=true but no mpirun/mpiexec on PATH (bash scripts/install-mpi.sh)"
        );
        eprintln!("note: no mpirun/mpiexec on PATH; skipping the MPI generate test");
        return;
    };
    let version = Command::new(&mpirun)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut cmd = Command::new(&mpirun);
    if version.contains("Open MPI") || version.contains("OpenRTE") {
        cmd.args(["--allow-run-as-root", "--oversubscribe", "-x", CHILD_ENV]);
    }
    let exe = std::env::current_exe().expect("path of this test binary");
    cmd.args(["-n", &RANKS.to_string()])
        .arg(exe)
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("starting mpirun");
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for mpirun") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mpirun -n {RANKS} did not finish within {DEADLINE:?} (hang?)");
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "a rank failed: {status}");
    println!(
        "mpi_generate: {RANKS} ranks passed in {:?}",
        start.elapsed()
    );
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn prompt() -> String {
    let mut s = String::from("Here are some facts about the world.\n");
    for i in 0..56 {
        s.push_str(&format!(
            "Fact {}: river number {i} flows {} kilometres to the sea.\n",
            i + 1,
            100 + 37 * i
        ));
    }
    s.push_str("Question: How long is river number 7?\nAnswer:");
    s
}

fn rank_main() {
    let mut comm = MpiComm::init().expect("MPI init");
    assert_eq!(comm.size(), RANKS);
    let model =
        Model::load(&default_model_path(), ringattn_model::WeightFormat::F32).expect("model loads");
    let mut spec = GenerateSpec::new(default_model_path(), &prompt(), STEPS, RANKS);
    spec.pin = false;
    let rep = generate_rank(&model, &spec, &mut comm, &mut |_, _| {}).expect("generate");
    if comm.rank() == 0 {
        assert_eq!(rep.backend, "mpi");
        assert_eq!(rep.ranks.len(), RANKS);
        let mut one = spec.clone();
        one.world = 1;
        let local = generate_with(&model, &one, &mut |_, _| {}).expect("local generate");
        let diff = rep
            .prompt_logits
            .iter()
            .zip(&local.prompt_logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-3, "logits differ by {diff}");
        assert_eq!(
            rep.token_ids, local.token_ids,
            "{:?} vs {:?}",
            rep.text, local.text
        );
    }
    comm.barrier().expect("barrier");
}
