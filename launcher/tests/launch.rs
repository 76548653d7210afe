//! `ringattn launch` and `ringattn sbatch` (the scripts in scripts/slurm included); the
//! report's `cores` under MPI.
//!
//! The tests marked `mpi` need the `mpi` feature and `mpirun`/`mpiexec` on PATH (`bash
//! scripts/install-mpi.sh`). Without one they print a note and pass, except in CI
//! (`CI=true`), where a missing MPI is a failure.

#[cfg(feature = "mpi")]
use std::path::{Path, PathBuf};
use std::process::Command;

#[cfg_attr(not(feature = "mpi"), allow(unused_imports))]
use serde_json::Value;

mod common;
use common::*;

fn assert_one_error_line(r: &Run, needle: &str) {
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.describe());
    assert!(
        lines[0].starts_with("ringattn: error:") && lines[0].contains(needle),
        "{}",
        r.describe()
    );
}

/// The repository's scripts/slurm directory.
#[cfg(feature = "mpi")]
fn slurm_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/slurm")
}

#[cfg(feature = "mpi")]
fn bash_n(path: &Path) {
    let r = run({
        let mut c = Command::new("bash");
        c.arg("-n").arg(path);
        c
    });
    assert_eq!(
        r.code,
        Some(0),
        "bash -n {}: {}",
        path.display(),
        r.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// launch without MPI.
// ---------------------------------------------------------------------------------------------

#[test]
fn launch_without_mpirun_exits_2_with_one_line() {
    let r = ringattn(&["launch", "-n", "2", "--mpirun", "/nonexistent", "--", "run"]);
    assert_eq!(r.code, Some(2), "{}", r.describe());
    assert_one_error_line(&r, "/nonexistent");

    let empty = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringattn"));
    cmd.args(["launch", "-n", "2", "--", "run"])
        .env("PATH", empty.path());
    let r = run(cmd);
    assert_eq!(r.code, Some(2), "{}", r.describe());
    assert_one_error_line(&r, "no mpirun or mpiexec on PATH");
}

/// A binary built without the `mpi` feature says how to build one, even with an mpirun.
#[cfg(not(feature = "mpi"))]
#[test]
fn launch_without_the_mpi_feature_exits_2_saying_how_to_build() {
    let dir = tempfile::tempdir().unwrap();
    let mpirun = dir.path().join("mpirun");
    std::fs::write(&mpirun, "").unwrap();
    let r = ringattn(&[
        "launch",
        "-n",
        "2",
        "--mpirun",
        mpirun.to_str().unwrap(),
        "--",
        "run",
    ]);
    assert_eq!(r.code, Some(2), "{}", r.describe());
    assert_one_error_line(&r, "--features mpi");
}

#[test]
fn launch_rejects_what_is_not_an_mpi_run() {
    let r = ringattn(&["launch", "-n", "2", "--", "simulate"]);
    assert_eq!(r.code, Some(2), "{}", r.describe());
    assert_one_error_line(&r, "-- run");
    let r = ringattn(&["launch", "-n", "2", "--", "run", "--backend", "local"]);
    assert_eq!(r.code, Some(2), "{}", r.describe());
    assert_one_error_line(&r, "--backend local");
    let r = ringattn(&["launch", "-n", "2"]);
    assert_eq!(r.code, Some(2), "{}", r.describe());
}

// ---------------------------------------------------------------------------------------------
// sbatch.
// ---------------------------------------------------------------------------------------------

/// A binary without MPI refuses to write a job that would run it (one line, exit 2).
#[cfg(not(feature = "mpi"))]
#[test]
fn sbatch_without_the_mpi_feature_exits_2_saying_how_to_build() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringattn"));
    cmd.args([
        "sbatch",
        "--nodes",
        "1",
        "--ntasks-per-node",
        "1",
        "--cpus-per-task",
        "1",
        "--",
        "run",
    ])
    .env_remove("RINGATTN");
    let r = run(cmd);
    assert_eq!(r.code, Some(2), "{}", r.describe());
    assert_one_error_line(&r, "--features mpi");
}

/// (The job runs this binary, so it must have MPI.)
#[cfg(feature = "mpi")]
#[test]
fn sbatch_prints_directives_and_a_script_bash_accepts() {
    let r = ringattn(&[
        "sbatch",
        "--nodes",
        "2",
        "--ntasks-per-node",
        "4",
        "--cpus-per-task",
        "8",
        "--time",
        "00:30:00",
        "--partition",
        "cpu",
        "--job-name",
        "attn",
        "--",
        "run",
        "--seq",
        "65536",
        "--causal",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    for line in [
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --time=00:30:00",
        "#SBATCH --partition=cpu",
        "#SBATCH --job-name=attn",
        "#SBATCH --output=attn-%j.out",
    ] {
        assert!(
            r.stdout.lines().any(|l| l == line),
            "no `{line}`:\n{}",
            r.stdout
        );
    }
    let launch = r
        .stdout
        .lines()
        .find(|l| l.starts_with("srun "))
        .expect("an srun line");
    assert!(
        launch.contains("--mpi=pmi2 --cpu-bind=cores")
            && launch.contains("run --backend mpi --seq 65536 --causal --threads \"$THREADS\"")
            && launch.contains("--json \"$REPORT\""),
        "{launch}"
    );
    // The default binary is this one, by absolute path.
    let exe = Path::new(env!("CARGO_BIN_EXE_ringattn"))
        .canonicalize()
        .unwrap();
    assert!(r
        .stdout
        .contains(&format!("RINGATTN=\"${{RINGATTN:-{}}}\"", exe.display())));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.sbatch");
    std::fs::write(&file, &r.stdout).unwrap();
    bash_n(&file);

    let r = ringattn(&[
        "sbatch",
        "--nodes",
        "0",
        "--ntasks-per-node",
        "1",
        "--cpus-per-task",
        "1",
        "--",
        "run",
    ]);
    assert_eq!(r.code, Some(2), "{}", r.describe());
    assert_one_error_line(&r, "--nodes");
}

#[cfg(feature = "mpi")]
#[test]
fn committed_slurm_scripts_are_current_and_valid() {
    let job = slurm_dir().join("job.sbatch");
    let text = std::fs::read_to_string(&job).expect("scripts/slurm/job.sbatch");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("# Generated by: ringattn "))
        .expect("a `# Generated by:` line");
    let args: Vec<&str> = line.split_whitespace().collect();
    let r = ringattn(&args);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert_eq!(
        r.stdout, text,
        "job.sbatch differs from what `ringattn {line}` prints now"
    );
    bash_n(&job);
    bash_n(&slurm_dir().join("scaling-array.sbatch"));
}

// ---------------------------------------------------------------------------------------------
// Under MPI.
// ---------------------------------------------------------------------------------------------

/// `mpirun`/`mpiexec` on PATH, or `None` (with a note); panics when MPI is missing in CI.
#[cfg(feature = "mpi")]
fn mpirun() -> Option<PathBuf> {
    mpi_launcher().map(|(path, _)| path)
}

/// Environment that lets Open MPI run as root and oversubscribed (MPICH ignores it).
#[cfg(feature = "mpi")]
fn mpi_env(cmd: &mut Command) {
    cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1");
}

#[cfg(feature = "mpi")]
#[test]
fn launch_runs_a_real_mpi_job_and_forwards_its_exit_code() {
    if mpirun().is_none() {
        return;
    }
    let mut args = vec!["launch", "-n", "2", "--", "run"];
    args.extend(SMALL);
    args.extend(["--threads", "1", "--json", "-"]);
    let r = ringattn(&args);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let report = json(&r.stdout);
    assert_eq!(report["backend"], "mpi");
    assert_eq!(report["world"], 2);
    assert_eq!(report["check"]["passed"], true);
    let cores = cores_of(&report);
    if cores.iter().all(|c| !c.is_empty()) {
        assert_ne!(cores[0], cores[1], "ranks share a core: {cores:?}");
    }

    // Bad input on every rank: the job's exit code 2 comes back, with rank 0's one message.
    let r = ringattn(&["launch", "-n", "2", "--", "run", "--seq", "1"]);
    assert_eq!(r.code, Some(2), "{}", r.describe());
    assert_eq!(
        r.stderr.matches("more workers (2) than tokens (1)").count(),
        1,
        "{}",
        r.describe()
    );
}

/// Writes `ringattn sbatch ARGS` to DIR/job.sbatch and runs it with bash in DIR as SLURM job 42
/// of 2 tasks (PATH first searches `bin`, where a fake `srun` may live).
#[cfg(feature = "mpi")]
fn run_batch_script(dir: &Path, bin: &Path, sbatch: &[&str]) -> Value {
    let mut args = vec![
        "sbatch",
        "--nodes",
        "1",
        "--ntasks-per-node",
        "2",
        "--cpus-per-task",
        "1",
    ];
    args.extend(sbatch);
    args.extend(["--", "run"]);
    args.extend(SMALL);
    let r = ringattn(&args);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let file = dir.join("job.sbatch");
    std::fs::write(&file, &r.stdout).unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin.to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(&file)
        .current_dir(dir)
        .env("PATH", path)
        .env("SLURM_NTASKS", "2")
        .env("SLURM_CPUS_PER_TASK", "1")
        .env("SLURM_JOB_ID", "42");
    mpi_env(&mut cmd);
    let r = run(cmd);
    assert_eq!(
        r.code,
        Some(0),
        "{}\n--- script ---\n{}",
        r.describe(),
        std::fs::read_to_string(&file).unwrap()
    );
    let report = std::fs::read_to_string(dir.join("ringattn-42.json")).expect("the job's report");
    json(&report)
}

/// A stand-in for `srun`: drops srun's options and starts the program under mpirun.
#[cfg(feature = "mpi")]
fn fake_srun(bin: &Path, mpirun: &Path) {
    let script = format!(
        "#!/bin/sh\nwhile [ \"${{1#-}}\" != \"$1\" ]; do shift; done\nexec '{}' -n \"$SLURM_NTASKS\" \"$@\"\n",
        mpirun.display()
    );
    let path = bin.join("srun");
    std::fs::write(&path, script).unwrap();
    let chmod = run({
        let mut c = Command::new("chmod");
        c.arg("+x").arg(&path);
        c
    });
    assert_eq!(chmod.code, Some(0), "{}", chmod.describe());
}

#[cfg(feature = "mpi")]
#[test]
fn sbatch_scripts_run_under_mpirun() {
    let Some(mpirun) = mpirun() else { return };
    for launcher in ["mpirun", "srun"] {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        fake_srun(&bin, &mpirun);
        let report = run_batch_script(dir.path(), &bin, &["--launcher", launcher]);
        assert_eq!(report["backend"], "mpi", "{launcher}");
        assert_eq!(report["world"], 2, "{launcher}");
        assert_eq!(report["check"]["passed"], true, "{launcher}");
        assert_eq!(report["ranks"][0]["threads"], 1, "{launcher}");
    }
}

#[cfg(feature = "mpi")]
#[test]
fn scaling_array_task_appends_a_report_plot_reads() {
    let Some(mpirun) = mpirun() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    fake_srun(&bin, &mpirun);
    let path = std::env::join_paths(
        std::iter::once(bin.clone())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    for task in ["0", "1"] {
        let mut cmd = Command::new("bash");
        cmd.arg(slurm_dir().join("scaling-array.sbatch"))
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("RINGATTN", env!("CARGO_BIN_EXE_ringattn"))
            .env("OUT", "sweep")
            .env("SEQ", "256")
            .env("HEADS", "2")
            .env("HEAD_DIM", "16")
            .env("SLURM_NTASKS", "2")
            .env("SLURM_CPUS_PER_TASK", "1")
            .env("SLURM_JOB_ID", "7")
            .env("SLURM_ARRAY_TASK_ID", task);
        mpi_env(&mut cmd);
        let r = run(cmd);
        assert_eq!(r.code, Some(0), "task {task}: {}", r.describe());
    }
    let lines = std::fs::read_to_string(dir.path().join("sweep/results.jsonl")).unwrap();
    let reports: Vec<Value> = lines.lines().map(json).collect();
    assert_eq!(reports.len(), 2, "{lines}");
    assert_eq!(reports[0]["layout"], "contiguous");
    assert_eq!(reports[1]["layout"], "striped");
    assert!(reports
        .iter()
        .all(|r| r["world"] == 2 && r["backend"] == "mpi"));
    let out = dir.path().join("sweep");
    let r = ringattn(&["plot", out.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.describe());
}
