//! `ringattn sbatch ... -- run ...`: prints a ready SLURM batch script that runs one ring
//! attention job with the MPI backend (one rank per task, `--cpus-per-task` kernel threads).

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use ringattn_runtime::{Error, Result};

use crate::launch::{run_command, shell_quote};

/// How the batch script starts the ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SlurmLauncher {
    /// `srun --mpi=... --cpu-bind=cores` (SLURM places and binds every task).
    Srun,
    /// `mpirun -n $SLURM_NTASKS` inside the allocation.
    Mpirun,
}

/// PMI plugins for `srun --mpi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PmiArg {
    /// PMIx (Open MPI 5).
    Pmix,
    /// PMI-2 (MPICH, Intel MPI).
    Pmi2,
}

/// Options of `ringattn sbatch`.
#[derive(Debug, Args)]
#[command(
    after_help = "Everything after `--` is the command every rank runs: `run` and its \
    options (`--backend mpi`, `--threads $SLURM_CPUS_PER_TASK` and `--json ringattn-$SLURM_JOB_ID.json` \
    are added unless given).\n\n\
    Examples:\n  \
    ringattn sbatch --nodes 2 --ntasks-per-node 4 --cpus-per-task 8 --time 00:30:00 -- run --seq 262144 --causal > job.sbatch && sbatch job.sbatch\n  \
    ringattn sbatch --nodes 4 --ntasks-per-node 1 --cpus-per-task 64 --launcher mpirun -- run --seq 1048576 --causal --layout striped"
)]
pub struct SbatchArgs {
    /// Nodes to allocate.
    #[arg(long)]
    pub nodes: usize,
    /// MPI ranks per node.
    #[arg(long)]
    pub ntasks_per_node: usize,
    /// Cores per rank (its kernel threads).
    #[arg(long)]
    pub cpus_per_task: usize,
    /// Wall-clock limit (`MM`, `HH:MM:SS`, `D-HH:MM:SS`...).
    #[arg(long)]
    pub time: Option<String>,
    /// SLURM partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// SLURM account to charge.
    #[arg(long)]
    pub account: Option<String>,
    /// Job name (also names the log: NAME-JOBID.out).
    #[arg(long, default_value = "ringattn")]
    pub job_name: String,
    /// How to start the ranks.
    #[arg(long, value_enum, default_value_t = SlurmLauncher::Srun)]
    pub launcher: SlurmLauncher,
    /// PMI plugin for `srun --mpi=` (pmi2 for MPICH, pmix for Open MPI 5).
    #[arg(long, value_enum, default_value_t = PmiArg::Pmi2)]
    pub mpi: PmiArg,
    /// The ringattn binary the job runs [default: this binary's absolute path]; the script
    /// also honours `RINGATTN=...` in the environment at submission.
    #[arg(long, value_name = "PATH")]
    pub binary: Option<String>,
    /// `run` and its options, after `--`.
    #[arg(last = true, required = true, value_name = "RUN")]
    pub command: Vec<String>,
}

/// Checks a value written into an `#SBATCH` line: SLURM's own characters only.
fn directive_value(name: &str, value: &str, extra: &str) -> Result<String> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c) || extra.contains(c));
    if ok {
        Ok(value.to_string())
    } else {
        Err(Error::config(format!(
            "--{name} `{value}`: use letters, digits, `_`, `.`, `-`{}",
            if extra.is_empty() {
                String::new()
            } else {
                format!(" and `{extra}`")
            }
        )))
    }
}

/// True when `command` already sets option `--name` (as `--name V` or `--name=V`).
fn has_option(command: &[String], name: &str) -> bool {
    command
        .iter()
        .any(|a| a == name || a.starts_with(&format!("{name}=")))
}

/// The batch script for `args`, with `binary` as the default ringattn path.
pub fn script(args: &SbatchArgs, binary: &str) -> Result<String> {
    for (name, v) in [
        ("nodes", args.nodes),
        ("ntasks-per-node", args.ntasks_per_node),
        ("cpus-per-task", args.cpus_per_task),
    ] {
        if v == 0 {
            return Err(Error::config(format!("--{name} must be at least 1")));
        }
    }
    let command = run_command(&args.command)?;
    let mut lines = vec!["#!/bin/bash".to_string()];
    let mut directive = |name: &str, value: String| lines.push(format!("#SBATCH --{name}={value}"));
    directive("job-name", directive_value("job-name", &args.job_name, "")?);
    directive("nodes", args.nodes.to_string());
    directive("ntasks-per-node", args.ntasks_per_node.to_string());
    directive("cpus-per-task", args.cpus_per_task.to_string());
    if let Some(t) = &args.time {
        directive("time", directive_value("time", t, ":")?);
    }
    if let Some(p) = &args.partition {
        directive("partition", directive_value("partition", p, ",")?);
    }
    if let Some(a) = &args.account {
        directive("account", directive_value("account", a, "")?);
    }
    directive("output", format!("{}-%j.out", args.job_name));

    let mut run: Vec<String> = command.iter().map(|w| shell_quote(w)).collect();
    if !has_option(&command, "--threads") && !has_option(&command, "-t") {
        run.extend(["--threads".into(), "\"$THREADS\"".into()]);
    }
    if !has_option(&command, "--json") {
        run.extend(["--json".into(), "\"$REPORT\"".into()]);
    }
    let start = match args.launcher {
        SlurmLauncher::Srun => format!(
            "srun --mpi={} --cpu-bind=cores --cpus-per-task=\"$THREADS\"",
            match args.mpi {
                PmiArg::Pmix => "pmix",
                PmiArg::Pmi2 => "pmi2",
            }
        ),
        SlurmLauncher::Mpirun => "mpirun -n \"$SLURM_NTASKS\"".to_string(),
    };
    let regenerate = regenerate_line(args);
    lines.extend([
        format!("# Generated by: {regenerate}"),
        "# Submit: sbatch THIS_FILE. One MPI rank per task; each runs --cpus-per-task kernel"
            .into(),
        "# threads pinned to its own cores. The run report goes to ringattn-JOBID.json.".into(),
        "set -euo pipefail".into(),
        format!(
            "RINGATTN=\"${{RINGATTN:-{}}}\"",
            binary.replace(['"', '\\', '$', '`'], "")
        ),
        "THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"".into(),
        "REPORT=\"ringattn-${SLURM_JOB_ID:-local}.json\"".into(),
        format!("{start} \"$RINGATTN\" {}", run.join(" ")),
        "echo \"report: $REPORT\"".into(),
    ]);
    Ok(lines.join("\n") + "\n")
}

/// The `ringattn sbatch` command line that makes this script (without `--binary`).
fn regenerate_line(args: &SbatchArgs) -> String {
    let mut w = vec![
        "ringattn sbatch".to_string(),
        format!("--nodes {}", args.nodes),
        format!("--ntasks-per-node {}", args.ntasks_per_node),
        format!("--cpus-per-task {}", args.cpus_per_task),
    ];
    for (name, v) in [
        ("time", &args.time),
        ("partition", &args.partition),
        ("account", &args.account),
    ] {
        if let Some(v) = v {
            w.push(format!("--{name} {}", shell_quote(v)));
        }
    }
    if let Some(b) = &args.binary {
        w.push(format!("--binary {}", shell_quote(b)));
    }
    if args.job_name != "ringattn" {
        w.push(format!("--job-name {}", shell_quote(&args.job_name)));
    }
    match args.launcher {
        SlurmLauncher::Srun if args.mpi == PmiArg::Pmix => w.push("--mpi pmix".into()),
        SlurmLauncher::Srun => {}
        SlurmLauncher::Mpirun => w.push("--launcher mpirun".into()),
    }
    w.push("--".into());
    w.extend(args.command.iter().map(|a| shell_quote(a)));
    w.join(" ")
}

/// Prints the batch script of `ringattn sbatch` on stdout.
pub fn run_sbatch(args: &SbatchArgs) -> Result<ExitCode> {
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .and_then(|p| p.canonicalize())
            .map_err(|e| Error::Io {
                context: "finding the ringattn binary".into(),
                source: e,
            })?
            .display()
            .to_string(),
    };
    print!("{}", script(args, &binary)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
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
        let s = script(&a, "/opt/ringattn").unwrap();
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
        let s = script(&a, "x").unwrap();
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
            script(&parse(&w), "x")
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
        assert!(script(&parse(&zero), "x").unwrap_err().is_user_error());
    }
}
