//! `ringattn`: the command-line launcher.
//!
//! Exit codes: 0 success, 1 runtime failure (a rank failed, a check failed), 2 bad input.

#![warn(missing_docs)]

mod check;
mod cli;
mod job;
mod local_backend;
mod output;
mod rank;
mod report;

use std::process::ExitCode;

use clap::Parser;
use ringattn_runtime::Error;

use crate::cli::{Cli, Command, RunArgs};
use crate::job::Job;
use crate::report::Report;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringattn: error: {e}");
            ExitCode::from(if e.is_user_error() { 2 } else { 1 })
        }
    }
}

/// Cores this process may run on (respects the affinity mask set by mpirun/SLURM/taskset).
fn allowed_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn run(args: &RunArgs) -> Result<ExitCode, Error> {
    let job = Job::from_args(args, allowed_cores())?;
    let gathered = local_backend::run_local(&job)?;
    if let Some(path) = &args.output {
        output::write_output(path, &job, &gathered)?;
    }
    let report = Report::new(&job, "local", &gathered);
    match args.json.as_deref() {
        Some("-") => report.write_json("-")?,
        Some(path) => {
            report.write_json(path)?;
            print!("{}", report.summary());
        }
        None => print!("{}", report.summary()),
    }
    if let Some(c) = &report.check {
        if !c.passed {
            eprintln!(
                "ringattn: error: check failed: max |out err| {:.3e} (limit {:.0e}), max |lse err| {:.3e} (limit {:.0e})",
                c.max_abs_err,
                check::OUT_TOLERANCE,
                c.max_lse_err,
                check::LSE_TOLERANCE
            );
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
