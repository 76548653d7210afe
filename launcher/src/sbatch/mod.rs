//! `ringattn sbatch ... -- run|decode ...`: prints a ready SLURM batch script that runs one
//! ring attention job with the MPI backend (one rank per task, `--cpus-per-task` kernel
//! threads), or submits it (`--submit`) and waits for it (`--wait`).

use std::process::ExitCode;

use clap::Args;
use ringattn_runtime::{Error, Result};

use ringattn::slurm::SlurmLauncher;
use ringattn::slurm::{self, cpu_binding, submit, this_binary, BatchSpec, Pmi, ScriptOptions};

use crate::args::cli_error;
use ringattn::launch::backend::{HOW_TO_BUILD_MPI, MPI_BUILT};

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
    #[arg(long, default_value = slurm::DEFAULT_JOB_NAME)]
    pub job_name: String,
    /// How to start the ranks.
    #[arg(long, value_enum, default_value_t = SlurmLauncher::Srun)]
    pub launcher: SlurmLauncher,
    /// PMI plugin for `srun --mpi=` (pmi2 for MPICH, pmix for Open MPI 5).
    #[arg(long, value_enum, default_value_t = Pmi::Pmi2)]
    pub mpi: Pmi,
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

impl SbatchArgs {
    /// The library's batch job of these arguments.
    pub fn spec(&self) -> BatchSpec {
        BatchSpec {
            nodes: self.nodes,
            ntasks_per_node: self.ntasks_per_node,
            cpus_per_task: self.cpus_per_task,
            time: self.time.clone(),
            partition: self.partition.clone(),
            account: self.account.clone(),
            job_name: self.job_name.clone(),
            launcher: self.launcher,
            pmi: self.mpi,
            command: self.command.clone(),
        }
    }
}

/// The batch script for `args`, with `binary` as the default ringattn path; `bind` asks srun
/// to bind cores (`note` says why not, as a comment in the script).
pub fn script(args: &SbatchArgs, binary: &str, bind: bool, note: Option<&str>) -> Result<String> {
    let spec = args.spec();
    let origin = spec.command_line(args.binary.as_deref(), args.cpu_bind, args.no_cpu_bind);
    let options = ScriptOptions {
        binary,
        bind,
        note,
        origin: &origin,
    };
    spec.script(&options).map_err(cli_error)
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
        None => this_binary().map_err(cli_error)?,
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
    let waited = args.spec().waited(job_id, status);
    if let Some(e) = &waited.error {
        eprintln!("ringattn: error: {e}");
    }
    for line in &waited.out {
        outln!("{line}");
    }
    ExitCode::from(waited.code)
}

#[cfg(test)]
mod tests;
