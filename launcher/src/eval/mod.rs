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
    match cli_error(e) {
        Error::InvalidConfig(m) => {
            let mut m = m;
            for (field, flag) in [
                ("sparsity:", "--sparsity:"),
                ("context:", "--context:"),
                ("depth:", "--depth:"),
                ("trials:", "--trials/--workers/--max-tokens:"),
                ("grid:", "--sparsity/--context/--depth:"),
                ("positions:", "--last/--continuation:"),
                ("random_heads:", "--random-heads:"),
                ("prompt_file:", "--prompt-file:"),
                ("threads:", "--threads/--recent:"),
            ] {
                if m.starts_with(field) {
                    m = m.replacen(field, flag, 1);
                    break;
                }
            }
            Error::InvalidConfig(m)
        }
        e => e,
    }
}
