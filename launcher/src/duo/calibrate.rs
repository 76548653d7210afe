//! `ringattn duo calibrate`: scores every (layer, KV head) of a model and writes the pattern
//! (the work is `ringattn_model::calibrate`; this parses, reports progress and prints).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ringattn_model::calibrate::{calibrate, write_pattern, CalibrateSpec, Method};
use ringattn_model::{default_model_path, Model, ModelError, WeightFormat};
use ringattn_runtime::{Error, Result};

use crate::generate::cli_error;

/// Options of `ringattn duo calibrate`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    ringattn duo calibrate --out my-pattern\n  \
    ringattn duo calibrate --method mass --context 2048 --samples 8 --out my-pattern\n  \
    ringattn generate --duo my-pattern --sparsity 0.5 --prompt-file long.txt")]
pub struct CalibrateArgs {
    /// The GGUF model [default: SmolLM2-135M-Instruct from scripts/get-model.sh].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Pattern directory to write (full_attention_heads.tsv, config.json, raw.tsv).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Tokens per calibration document.
    #[arg(long, default_value_t = 1024)]
    pub context: usize,
    /// Calibration documents.
    #[arg(long, default_value_t = 4)]
    pub samples: usize,
    /// Seed of the documents.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Scoring method.
    #[arg(long, value_enum, default_value_t = Method::Ablation)]
    pub method: Method,
    /// Sink tokens of streaming heads (written to config.json).
    #[arg(long, default_value_t = ringattn_model::duo::DEFAULT_SINK)]
    pub sink: usize,
    /// Recent window of streaming heads (written to config.json).
    #[arg(long, default_value_t = ringattn_model::duo::DEFAULT_RECENT)]
    pub recent: usize,
    /// Kernel threads [default: the allowed cores].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
}

/// Runs `ringattn duo calibrate`.
pub fn run_calibrate(args: &CalibrateArgs) -> Result<ExitCode> {
    let spec = CalibrateSpec {
        context: args.context,
        samples: args.samples,
        seed: args.seed,
        method: args.method,
        sink: args.sink,
        recent: args.recent,
        threads: args
            .threads
            .unwrap_or_else(|| ringattn::allowed_cores().max(1)),
    };
    spec.check().map_err(flag_error)?;
    // Refuse an unwritable --out before the calibration, not after it.
    std::fs::create_dir_all(&args.out).map_err(|e| Error::BadInput {
        path: args.out.display().to_string(),
        reason: format!("--out: cannot create the pattern directory: {e}"),
    })?;
    let path = args.model.clone().unwrap_or_else(default_model_path);
    let model = Model::load(&path, WeightFormat::F32).map_err(cli_error)?;
    let cal =
        calibrate(&model, &spec, &mut |line| eprintln!("calibrate: {line}")).map_err(flag_error)?;
    let name = path
        .file_stem()
        .map_or("model".into(), |s| s.to_string_lossy().into_owned());
    let command: Vec<String> = std::env::args().collect();
    write_pattern(&args.out, &cal, &name, &command.join(" ")).map_err(cli_error)?;
    crate::out!("{}", cal.summary(&args.out));
    Ok(ExitCode::SUCCESS)
}

/// A model error as the CLI's, the library's field names as this command's flags.
fn flag_error(e: ModelError) -> Error {
    crate::eval::rename_field(e, |field| {
        let ours = ["threads", "samples", "context", "recent"].contains(&field);
        ours.then(|| format!("--{field}"))
    })
}
