//! `ringattn`: the command-line launcher.
//!
//! Exit codes: 0 success, 1 runtime failure (a rank failed, a check failed), 2 bad input.

#![warn(missing_docs)]

#[macro_use]
mod out;
mod args;
mod bench;
mod cli;
mod decode;
mod duo;
mod eval;
mod generate;
mod info;
mod launch;
mod plot;
mod run;
mod sbatch;
mod simulate;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};
use ringattn::{allowed_cores, launch::exit_code};

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Decode(args) => decode::run_decode(&args),
        Command::Info(args) => info::run_info(&args, allowed_cores()),
        Command::Simulate(args) => simulate::run_simulate(&args),
        Command::Bench(args) => bench::run_bench(&args, allowed_cores()),
        Command::Plot(args) => plot::run_plot(&args),
        Command::Launch(args) => launch::run_launch(&args),
        Command::Sbatch(args) => sbatch::run_sbatch(&args),
        Command::Duo(args) => duo::run_duo(&args),
        Command::Eval(args) => eval::run_eval(&args),
        Command::Generate(args) => generate::run_generate(&args),
    };
    match result {
        Ok(code) => code,
        Err(ringattn_runtime::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::from(out::CLOSED_PIPE_EXIT as u8)
        }
        Err(e) => {
            eprintln!("ringattn: error: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Parses the command line; negative numbers are values everywhere (so `--seq -1` is refused
/// naming `--seq`, and `--sched-alpha -0.1` is read as -0.1), not unknown flags.
fn parse_cli() -> Result<Cli, clap::Error> {
    fn negatives(cmd: clap::Command) -> clap::Command {
        cmd.allow_negative_numbers(true).mut_subcommands(negatives)
    }
    let args = help_args(std::env::args_os().collect());
    let matches = negatives(Cli::command()).try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

/// The names of the missing required arguments of a usage error, if that is what it is.
fn missing_arguments(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::MissingRequiredArgument {
        return None;
    }
    match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::Strings(names)) if !names.is_empty() => Some(names.join(", ")),
        Some(ContextValue::String(name)) => Some(name.clone()),
        _ => None,
    }
}

/// `ringattn help [COMMAND] --help` is `ringattn help [COMMAND]` (clap's help subcommand takes
/// no options, and asking for help must not end in a usage error).
fn help_args(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if args.get(1).is_some_and(|a| a == "help") {
        let options = args.split_off(2);
        args.extend(options.into_iter().filter(|a| a != "--help" && a != "-h"));
    }
    args
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
    if let Some(names) = missing_arguments(&e) {
        eprintln!("ringattn: error: missing required argument: {names} (see --help)");
        return ExitCode::from(2);
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
    let detail: String = lines
        .filter(|l| l.starts_with('[') || l.starts_with("tip:"))
        .map(|l| format!(" {l}"))
        .collect();
    eprintln!("ringattn: error: {first}{detail} (see --help)");
    ExitCode::from(2)
}
