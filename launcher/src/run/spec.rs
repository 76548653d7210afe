//! `run`'s arguments as the library's [`RunSpec`], and the library's errors in the words of
//! the command line (field names become flags).

use ringattn::{ApiError, CheckRows, FaultSpec, RunSpec};
use ringattn_runtime::{Error, Result};

use crate::run::RunArgs;

impl RunArgs {
    /// The spec of these arguments (syntax checked here; sizes when the job is built).
    pub fn spec(&self) -> Result<RunSpec> {
        Ok(RunSpec {
            seq: self.seq,
            causal: self.causal,
            input: self.input.clone(),
            check: self
                .check
                .map(|rows| rows.map_or(CheckRows::Auto, CheckRows::Rows)),
            want_output: self.output.is_some(),
            tile: self.tile.shape(),
            fault: self.inject_fault.as_deref().map(parse_fault).transpose()?,
            docs: self.mask.docs()?,
            window: self.mask.window,
            ..self.job.spec()?
        })
    }
}

fn parse_fault(s: &str) -> Result<FaultSpec> {
    let bad = || Error::config(format!("--inject-fault expects RANK:STEP, got `{s}`"));
    let (rank, step) = s.split_once(':').ok_or_else(bad)?;
    Ok(FaultSpec {
        rank: rank.trim().parse().map_err(|_| bad())?,
        step: step.trim().parse().map_err(|_| bad())?,
    })
}

/// The flag of a spec field (`tile.q` → `--tile-q`, `world` → `--workers`).
fn flag(field: &str) -> String {
    match field {
        "check_rows" => "--check ROWS".into(),
        f => crate::args::flag_of(&f.replace('.', "_")),
    }
}

/// A library error as the command line says it: field names become flags; runtime errors
/// (files, ranks, communication) pass through unchanged.
pub fn flag_error(e: ApiError) -> Error {
    let msg = match &e {
        ApiError::Zero { field } => format!("{} must be at least 1", flag(field)),
        ApiError::HeadsNotMultiple { heads, kv_heads } => {
            format!("--heads {heads} is not a multiple of --kv-heads {kv_heads}")
        }
        ApiError::TooManyRanks { world, seq } => format!(
            "more workers ({world}) than tokens ({seq}): every worker needs at least one token"
        ),
        ApiError::FileMismatch { field, given, file } => {
            format!(
                "{} {given} does not match the input file's {file}",
                flag(field)
            )
        }
        ApiError::FaultOutsideRing { rank, step, world } => format!(
            "--inject-fault {rank}:{step} is outside the ring ({world} ranks, steps 0..{world})"
        ),
        ApiError::DuoNeedsCausal => {
            "--duo/--retrieval-ratio need --causal (DuoAttention's streaming heads are causal)"
                .into()
        }
        ApiError::DuoWithDocs => "--duo/--retrieval-ratio cannot be combined with --docs".into(),
        ApiError::Docs(d) => {
            let text = d.to_string();
            let what = text.split_once(": ").map_or(text.as_str(), |(_, w)| w);
            format!("--docs: {what}")
        }
        ApiError::DuoHeads { plan, kv_heads } => {
            format!("the DuoAttention plan has {plan} KV heads but the run has {kv_heads}")
        }
        ApiError::MpiNotBuilt => format!("--{e}"),
        _ => return Error::from(e),
    };
    Error::config(msg)
}
