//! `ringattn`: the command-line launcher.
//!
//! Exit codes: 0 success, 1 runtime failure (a rank failed, a check failed), 2 bad input.

#![warn(missing_docs)]

mod backend;
mod bench;
mod calibrate;
mod check;
mod cli;
mod cores;
mod decode_cmd;
mod decode_rank;
mod decode_report;
mod duo_args;
mod duo_cmd;
#[cfg(test)]
mod duo_tests;
mod info;
mod isa_arg;
mod job;
mod launch;
mod local_backend;
#[cfg(feature = "mpi")]
mod mpi_backend;
mod output;
mod plot;
mod rank;
mod report;
mod sbatch;
mod sched_args;
mod simulate_cmd;

use std::process::ExitCode;

use clap::Parser as _;
use ringattn_runtime::Error;

use crate::backend::Backend;
use crate::cli::{Cli, Command, RunArgs};
use crate::job::Job;
use crate::rank::Gathered;
use crate::report::Report;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Decode(args) => decode_cmd::run_decode(&args),
        Command::Info(args) => info::run_info(&args, allowed_cores()),
        Command::Simulate(args) => simulate_cmd::run_simulate(&args),
        Command::Bench(args) => bench::run_bench(&args, allowed_cores()),
        Command::Plot(args) => plot::run_plot(&args),
        Command::Launch(args) => launch::run_launch(&args),
        Command::Sbatch(args) => sbatch::run_sbatch(&args),
        Command::Duo(args) => duo_cmd::run_duo(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringattn: error: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Exit code of an error: 2 for bad input, 1 for runtime failures.
fn exit_code(e: &Error) -> u8 {
    if e.is_user_error() {
        2
    } else {
        1
    }
}

/// Help and version go to stdout as usual; a usage error becomes one line on stderr, exit 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
    }
    let text = e.render().to_string();
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"));
    let first = lines
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ");
    let rest: Vec<&str> = lines
        .filter(|l| l.starts_with('[') || l.starts_with("tip:"))
        .collect();
    let detail = if rest.is_empty() {
        String::new()
    } else {
        format!(" {}", rest.join(" "))
    };
    eprintln!("ringattn: error: {first}{detail} (see --help)");
    ExitCode::from(2)
}

/// Cores this process may run on (respects the affinity mask set by mpirun/SLURM/taskset).
fn allowed_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn run(args: &RunArgs) -> Result<ExitCode, Error> {
    args.isa.isa.activate()?;
    match backend::resolve(args.backend)? {
        Backend::Local => {
            let mut job = Job::from_args(args, allowed_cores())?;
            let explicit_threads = args.threads.is_some();
            job.cores =
                cores::plan_local(job.world, job.threads, explicit_threads, !args.no_pin).cores;
            let gathered = local_backend::run_local(&job)?;
            finish(args, &job, "local", &gathered).map(ExitCode::from)
        }
        #[cfg(feature = "mpi")]
        Backend::Mpi => mpi_backend::run_mpi(args, allowed_cores()),
        #[cfg(not(feature = "mpi"))]
        Backend::Mpi => Err(Error::config(backend::HOW_TO_BUILD_MPI)),
    }
}

/// The root's end of a run: writes the output file and the report, and returns the exit code
/// (0, or 1 when the check failed).
fn finish(args: &RunArgs, job: &Job, backend: &str, gathered: &Gathered) -> Result<u8, Error> {
    if let Some(path) = &args.output {
        output::write_output(path, job, gathered)?;
    }
    let report = Report::new(job, backend, gathered);
    match args.json.as_deref() {
        Some("-") => report.write_json("-")?,
        Some(path) => {
            report.write_json(path)?;
            print!("{}", report.summary());
        }
        None => print!("{}", report.summary()),
    }
    if let Some(c) = &report.check {
        let tol = check::Tolerance::for_dtype(job.dtype);
        if !c.passed {
            eprintln!(
                "ringattn: error: check failed: max |out err| {:.3e} (limit {:.0e}), max |lse err| {:.3e} (limit {:.0e})",
                c.max_abs_err,
                tol.out,
                c.max_lse_err,
                tol.lse
            );
            return Ok(1);
        }
    }
    Ok(0)
}
