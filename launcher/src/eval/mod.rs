//! `ringattn eval ...`: DuoAttention on the model, measured: `passkey` (needle-in-a-haystack
//! grid, heat maps) and `fidelity` (distance to full attention on a long prompt). The work is
//! in `ringattn_model::eval`; these parse, print and plot.

mod fidelity;
mod passkey;

use std::process::ExitCode;

use clap::{Args, Subcommand};
use ringattn_model::ModelError;
use ringattn_runtime::{Error, Result};

use crate::generate::cli_error;

/// Options of `ringattn eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Which evaluation.
    #[command(subcommand)]
    pub command: EvalCommand,
}

/// The evaluations.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Needle in a haystack: pass key accuracy over sparsity × context × depth (resumable).
    Passkey(Box<passkey::PasskeyArgs>),
    /// KL, top-1 agreement and identical greedy continuation against full attention.
    Fidelity(Box<fidelity::FidelityArgs>),
}

/// Runs `ringattn eval ...`.
pub fn run_eval(args: &EvalArgs) -> Result<ExitCode> {
    match &args.command {
        EvalCommand::Passkey(a) => passkey::run(a),
        EvalCommand::Fidelity(a) => fidelity::run(a),
    }
}

/// A model error as the CLI's ([`cli_error`]), the library's field names as the eval
/// commands' flags.
pub(crate) fn flag_error(e: ModelError) -> Error {
    rename_field(e, |field| {
        Some(match field {
            "sparsity" | "context" | "depth" | "random_heads" | "prompt_file" => {
                crate::args::flag_of(field)
            }
            "trials" => "--trials/--workers/--max-tokens".into(),
            "grid" => "--sparsity/--context/--depth".into(),
            "positions" => "--last/--continuation".into(),
            "threads" => "--threads/--recent".into(),
            _ => return None,
        })
    })
}

/// A model error as the CLI's ([`cli_error`]), the field that starts a bad-input message
/// (`field: ...`) renamed by `flag` (kept where it gives `None`).
pub(crate) fn rename_field(e: ModelError, flag: impl Fn(&str) -> Option<String>) -> Error {
    match cli_error(e) {
        Error::InvalidConfig(m) => Error::InvalidConfig(
            m.split_once(':')
                .and_then(|(field, rest)| Some(format!("{}:{rest}", flag(field)?)))
                .unwrap_or(m),
        ),
        e => e,
    }
}
