//! Unit tests of the batch script.
use super::*;
use clap::Parser;

#[derive(Parser)]
struct Wrap {
    #[command(flatten)]
    args: SbatchArgs,
}

fn parse(words: &[&str]) -> SbatchArgs {
    Wrap::try_parse_from(std::iter::once("sbatch").chain(words.iter().copied()))
        .unwrap()
        .args
}

#[test]
fn srun_script_has_directives_and_one_launch_line() {
    let a = parse(&[
        "--nodes",
        "2",
        "--ntasks-per-node",
        "4",
        "--cpus-per-task",
        "8",
        "--time",
        "01:00:00",
        "--partition",
        "cpu",
        "--",
        "run",
        "--seq",
        "65536",
        "--causal",
    ]);
    let s = script(&a, "/opt/ringattn", true, None).unwrap();
    for line in [
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --time=01:00:00",
        "#SBATCH --partition=cpu",
        "#SBATCH --job-name=ringattn",
        "RINGATTN=\"${RINGATTN:-/opt/ringattn}\"",
        "srun --mpi=pmi2 --cpu-bind=cores --cpus-per-task=\"$THREADS\" \"$RINGATTN\" run \
         --backend mpi --seq 65536 --causal --threads \"$THREADS\" --json \"$REPORT\"",
    ] {
        assert!(s.lines().any(|l| l == line), "missing `{line}` in\n{s}");
    }
    assert!(s.starts_with("#!/bin/bash\n#SBATCH"));
}

#[test]
fn mpirun_script_and_given_options_are_kept() {
    let a = parse(&[
        "--nodes",
        "1",
        "--ntasks-per-node",
        "2",
        "--cpus-per-task",
        "1",
        "--launcher",
        "mpirun",
        "--",
        "run",
        "--threads",
        "1",
        "--json=out.json",
    ]);
    let s = script(&a, "x", true, None).unwrap();
    assert!(
        s.contains("\nmpirun -n \"$SLURM_NTASKS\" \"$RINGATTN\" run --backend mpi --threads 1 --json=out.json\n"),
        "{s}"
    );
    assert!(
        s.contains("--launcher mpirun -- run --threads 1 --json=out.json"),
        "{s}"
    );
}

#[test]
fn decode_jobs_and_unbound_clusters() {
    let a = parse(&[
        "--nodes",
        "1",
        "--ntasks-per-node",
        "2",
        "--cpus-per-task",
        "1",
        "--no-cpu-bind",
        "--",
        "decode",
        "--prefill",
        "64",
    ]);
    let s = script(&a, "x", false, Some("cores are not bound: why")).unwrap();
    assert!(
        s.contains("\nsrun --mpi=pmi2 --cpus-per-task=\"$THREADS\" \"$RINGATTN\" decode --backend mpi --prefill 64 "),
        "{s}"
    );
    assert!(s.contains("# Note: cores are not bound: why.\n"), "{s}");
    assert!(s.contains("--no-cpu-bind -- decode"), "{s}");
}

#[test]
fn bad_values_are_user_errors() {
    let base = [
        "--nodes",
        "1",
        "--ntasks-per-node",
        "1",
        "--cpus-per-task",
        "1",
    ];
    let with = |extra: &[&str]| {
        let mut w = base.to_vec();
        w.extend_from_slice(extra);
        script(&parse(&w), "x", true, None)
    };
    assert!(with(&["--", "run"]).is_ok());
    assert!(with(&["--partition", "a b", "--", "run"])
        .unwrap_err()
        .is_user_error());
    assert!(with(&["--time", "1h;rm", "--", "run"])
        .unwrap_err()
        .is_user_error());
    assert!(with(&["--", "simulate"]).unwrap_err().is_user_error());
    let mut zero = base.to_vec();
    zero[1] = "0";
    zero.extend(["--", "run"]);
    assert!(script(&parse(&zero), "x", true, None)
        .unwrap_err()
        .is_user_error());
}
