//! `ringattn sbatch ... -- run|decode ...`: prints a ready SLURM batch script that runs one
//! ring attention job with the MPI backend (one rank per task, `--cpus-per-task` kernel
//! threads), or submits it (`--submit`) and waits for it (`--wait`).

pub mod submit;

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use ringattn_runtime::{Error, Result};

use crate::launch::{run_command, shell_quote};
use crate::run::backend::{HOW_TO_BUILD_MPI, MPI_BUILT};

/// How the batch script starts the ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SlurmLauncher {
    /// `srun --mpi=... [--cpu-bind=cores]` (SLURM places every task, and binds it where the
    /// cluster can).
    Srun,
    /// `mpirun -n $SLURM_NTASKS` inside the allocation.
    Mpirun,
}

impl PmiArg {
    /// The plugin's name for `srun --mpi=`.
    pub fn name(self) -> &'static str {
        match self {
            PmiArg::Pmix => "pmix",
            PmiArg::Pmi2 => "pmi2",
        }
    }
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
    after_help = "Everything after `--` is the command every rank runs: `run` or `decode` and its \
    options (`--backend mpi`, `--threads $SLURM_CPUS_PER_TASK` and `--json ringattn-$SLURM_JOB_ID.json` \
    are added unless given).\n\n\
    Examples:\n  \
    ringattn sbatch --nodes 2 --ntasks-per-node 4 --cpus-per-task 8 --time 00:30:00 -- run --seq 262144 --causal > job.sbatch && sbatch job.sbatch\n  \
    ringattn sbatch --nodes 1 --ntasks-per-node 2 --cpus-per-task 1 --wait -- run --seq 4096 --causal --check\n  \
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
    /// Bind each task to its cores (`srun --cpu-bind=cores`) [default: when the cluster's
    /// TaskPlugin can (affinity or cgroup, from `scontrol show config`), or when there is no
    /// reachable SLURM].
    #[arg(long, conflicts_with = "no_cpu_bind")]
    pub cpu_bind: bool,
    /// Do not ask srun to bind cores.
    #[arg(long)]
    pub no_cpu_bind: bool,
    /// Submit the script with `sbatch` (instead of printing it) and print the job id.
    #[arg(long)]
    pub submit: bool,
    /// Submit, wait for the job to end, print the summary of its report and exit with the
    /// job's exit code.
    #[arg(long)]
    pub wait: bool,
    /// `run`, `decode` or `generate` and its options, after `--`.
    #[arg(last = true, required = true, value_name = "RUN")]
    pub command: Vec<String>,
}

/// The command every rank runs: `run`, `decode` or `generate` with `--backend mpi` (added
/// when missing).
pub fn job_command(command: &[String]) -> Result<Vec<String>> {
    match command.first().map(String::as_str) {
        Some("run" | "decode" | "generate") => run_command(command),
        other => Err(Error::config(format!(
            "sbatch starts `ringattn run`, `decode` or `generate` on every rank: write `-- run \
             OPTIONS` (got `{}`)",
            other.unwrap_or("")
        ))),
    }
}

/// Whether srun binds cores, and a note when the cluster cannot (with how to turn it on).
pub fn cpu_binding(force: bool, never: bool) -> (bool, Option<String>) {
    if force || never {
        return (force, None);
    }
    match submit::task_plugin() {
        Some(plugin) if !submit::plugin_binds(&plugin) => (
            false,
            Some(format!(
                "cores are not bound: this cluster's TaskPlugin is {plugin}; {}",
                submit::HOW_TO_BIND
            )),
        ),
        _ => (true, None),
    }
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
            "--{name} `{}`: use letters, digits, `_`, `.`, `-`{}",
            value.escape_debug(),
            if extra.is_empty() {
                String::new()
            } else {
                format!(" and `{extra}`")
            }
        )))
    }
}

/// Checks `--time` against SLURM's formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`,
/// or `UNLIMITED`/`INFINITE`.
fn slurm_time(value: &str) -> Result<String> {
    let bad = || {
        Error::config(format!(
            "--time `{}`: expected minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S or UNLIMITED",
            value.escape_debug()
        ))
    };
    if ["unlimited", "infinite"].contains(&value.to_ascii_lowercase().as_str()) {
        return Ok(value.to_string());
    }
    let digits = |s: &str| !s.is_empty() && s.len() <= 9 && s.chars().all(|c| c.is_ascii_digit());
    let rest = match value.split_once('-') {
        Some((d, rest)) if digits(d) => rest,
        Some(_) => return Err(bad()),
        None => value,
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if (1..=3).contains(&parts.len()) && parts.iter().all(|p| digits(p)) {
        Ok(value.to_string())
    } else {
        Err(bad())
    }
}

/// True when `command` already sets option `--name` (as `--name V` or `--name=V`).
fn has_option(command: &[String], name: &str) -> bool {
    command
        .iter()
        .any(|a| a == name || a.starts_with(&format!("{name}=")))
}

/// The batch script for `args`, with `binary` as the default ringattn path; `bind` asks srun
/// to bind cores (`note` says why not, as a comment in the script).
pub fn script(args: &SbatchArgs, binary: &str, bind: bool, note: Option<&str>) -> Result<String> {
    for (name, v) in [
        ("nodes", args.nodes),
        ("ntasks-per-node", args.ntasks_per_node),
        ("cpus-per-task", args.cpus_per_task),
    ] {
        if v == 0 {
            return Err(Error::config(format!("--{name} must be at least 1")));
        }
    }
    let command = job_command(&args.command)?;
    let mut lines = vec!["#!/bin/bash".to_string()];
    let mut directive = |name: &str, value: String| lines.push(format!("#SBATCH --{name}={value}"));
    directive("job-name", directive_value("job-name", &args.job_name, "")?);
    directive("nodes", args.nodes.to_string());
    directive("ntasks-per-node", args.ntasks_per_node.to_string());
    directive("cpus-per-task", args.cpus_per_task.to_string());
    if let Some(t) = &args.time {
        directive("time", slurm_time(t)?);
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
            "srun --mpi={}{} --cpus-per-task=\"$THREADS\"",
            args.mpi.name(),
            if bind { " --cpu-bind=cores" } else { "" }
        ),
        SlurmLauncher::Mpirun => "mpirun -n \"$SLURM_NTASKS\"".to_string(),
    };
    let regenerate = regenerate_line(args);
    lines.extend([
        format!("# Generated by: {regenerate}"),
        "# Submit: sbatch THIS_FILE. One MPI rank per task; each runs --cpus-per-task kernel"
            .into(),
        "# threads pinned to its own cores. The run report goes to ringattn-JOBID.json.".into(),
    ]);
    if let (Some(note), SlurmLauncher::Srun) = (note, args.launcher) {
        lines.push(format!("# Note: {note}."));
    }
    lines.extend([
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
    if args.cpu_bind {
        w.push("--cpu-bind".into());
    }
    if args.no_cpu_bind {
        w.push("--no-cpu-bind".into());
    }
    w.push("--".into());
    w.extend(args.command.iter().map(|a| shell_quote(a)));
    w.join(" ")
}

/// Prints the batch script of `ringattn sbatch` on stdout, or submits it (`--submit`,
/// `--wait`). Refuses (exit 2) when the job would run this binary and it lacks MPI.
pub fn run_sbatch(args: &SbatchArgs) -> Result<ExitCode> {
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None if !MPI_BUILT && std::env::var_os("RINGATTN").is_none() => {
            return Err(Error::config(format!(
                "sbatch: the job would run this binary, which has no MPI backend: \
                 {HOW_TO_BUILD_MPI} (or name an MPI build with --binary or RINGATTN)"
            )))
        }
        None => this_binary()?,
    };
    let (bind, note) = cpu_binding(args.cpu_bind, args.no_cpu_bind);
    let text = script(args, &binary, bind, note.as_deref())?;
    if !(args.submit || args.wait) {
        out!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    if let (Some(note), SlurmLauncher::Srun) = (&note, args.launcher) {
        eprintln!("ringattn: note: {note}");
    }
    let job = submit::submit(&text, args.wait, &[], |id| outln!("{id}"))?;
    match job.status {
        None => Ok(ExitCode::SUCCESS),
        Some(status) => Ok(finished(args, &job.job_id, status)),
    }
}

/// After `--wait`: the report's summary (or why there is none) and the job's exit code.
fn finished(args: &SbatchArgs, job_id: &str, status: i32) -> ExitCode {
    let log = format!("{}-{job_id}.out", args.job_name);
    let report = report_path(&args.command, job_id);
    let parsed = report.as_ref().and_then(|p| {
        let text = std::fs::read_to_string(p).ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()
    });
    if status == 0 {
        outln!("job {job_id} completed · log {log}");
    } else {
        let why = submit::failure_line(Path::new(&log)).unwrap_or_else(|| "no log".into());
        eprintln!(
            "ringattn: error: job {job_id} failed with exit code {status}: {why} (log {log})"
        );
    }
    match (&parsed, &report) {
        (Some(v), Some(p)) => outln!("{} · report {p}", submit::report_summary(v)),
        (None, Some(p)) if status == 0 => {
            eprintln!("ringattn: error: job {job_id} wrote no readable report {p}");
            return ExitCode::from(1);
        }
        _ => {}
    }
    ExitCode::from(u8::try_from(status).unwrap_or(1))
}

/// Where the job writes its report: the command's own `--json PATH` when it names a file
/// without shell variables, else `ringattn-JOBID.json` (in the submission directory).
fn report_path(command: &[String], job_id: &str) -> Option<String> {
    let mut given = None;
    for (i, a) in command.iter().enumerate() {
        if a == "--json" {
            given = command.get(i + 1).cloned();
        } else if let Some(v) = a.strip_prefix("--json=") {
            given = Some(v.to_string());
        }
    }
    match given {
        None => Some(format!("ringattn-{job_id}.json")),
        Some(p) if p == "-" || p.contains('$') => None,
        Some(p) => Some(p),
    }
}

#[cfg(test)]
mod tests;

/// The absolute path of this ringattn binary (what a job runs unless told otherwise).
pub fn this_binary() -> Result<String> {
    std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map(|p| p.display().to_string())
        .map_err(|e| Error::Io {
            context: "finding the ringattn binary".into(),
            source: e,
        })
}
