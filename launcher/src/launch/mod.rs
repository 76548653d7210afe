//! `ringattn launch -p P [--mpirun PATH] [--mpi-arg ARG]... -- run ...`: starts this binary
//! under mpirun/mpiexec as P ranks of the MPI backend, adds the options the MPI needs and
//! forwards the job's exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ringattn::launch::{mpi_command, run_forwarding, shell_line, Launcher};
use ringattn_runtime::{Error, Result};

use crate::args::cli_error;

/// Options of `ringattn launch`.
#[derive(Debug, Args)]
#[command(
    after_help = "Everything after `--` is the command every rank runs: `run` and its \
    options (`--backend mpi` is added).\n\n\
    Examples:\n  \
    ringattn launch -p 4 -- run --seq 16384 --causal --layout striped --check\n  \
    ringattn launch -p 8 --mpi-arg=--hostfile --mpi-arg=hosts -- run --seq 65536 --threads 4 --json report.json\n  \
    ringattn launch -p 2 --mpirun /opt/mpich/bin/mpiexec --dry-run -- run --causal"
)]
pub struct LaunchArgs {
    /// Number of workers: MPI processes, the ranks of the ring (`-n` / `--ranks`, as mpirun
    /// says it, are accepted too).
    #[arg(
        short = 'p',
        long = "workers",
        short_alias = 'n',
        alias = "ranks",
        value_name = "P"
    )]
    pub ranks: usize,
    /// The MPI launcher to use [default: `mpirun`, else `mpiexec`, found on PATH].
    #[arg(long, value_name = "PATH")]
    pub mpirun: Option<PathBuf>,
    /// One extra argument for the MPI launcher, placed before the program; repeat it for
    /// several (`--mpi-arg=--hostfile --mpi-arg=hosts`).
    #[arg(long = "mpi-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub mpi_args: Vec<String>,
    /// Print the launch command instead of running it.
    #[arg(long)]
    pub dry_run: bool,
    /// `run` and its options, after `--`.
    #[arg(last = true, required = true, value_name = "RUN")]
    pub command: Vec<String>,
}

/// Runs `ringattn launch`: the exit code is the job's (2 when mpirun cannot be found or this
/// binary lacks the `mpi` feature).
pub fn run_launch(args: &LaunchArgs) -> Result<ExitCode> {
    if args.ranks == 0 {
        return Err(Error::config("--workers (-p) must be at least 1"));
    }
    let command = mpi_command(&args.command).map_err(cli_error)?;
    let launcher = Launcher::find(args.mpirun.as_deref()).map_err(cli_error)?;
    crate::cli::needs_mpi("ringattn launch")?;
    let launcher = launcher.probe().map_err(cli_error)?;
    let exe = ringattn::launch::current_exe()?;
    let words = launcher.command_line(args.ranks, &args.mpi_args, &exe, &command);
    if args.dry_run {
        outln!("{}", shell_line(&words));
        return Ok(ExitCode::SUCCESS);
    }
    let shown = launcher.path.display().to_string();
    Ok(ExitCode::from(run_forwarding(&words, &shown)?))
}
