//! `ringattn plot DIR`: the plots of a scaling sweep (drawn by [`ringattn::plot`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ringattn::plot::render_dir;
use ringattn::results::RESULTS_FILE;
use ringattn_runtime::{Error, Result};

/// Options of `ringattn plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Directory holding results.jsonl (the plots are written beside it).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Runs `ringattn plot DIR`.
pub fn run_plot(args: &PlotArgs) -> Result<ExitCode> {
    let results = args.dir.join(RESULTS_FILE);
    if !results.exists() {
        return Err(Error::config(format!(
            "{} not found (run `ringattn bench scaling --out {}` first)",
            results.display(),
            args.dir.display()
        )));
    }
    let written = render_dir(&args.dir)?;
    if written.is_empty() {
        return Err(Error::config(format!(
            "{} holds no run reports",
            results.display()
        )));
    }
    for p in written {
        outln!("wrote {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
