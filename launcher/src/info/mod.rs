//! `ringattn info`: what this machine gives ringattn — SIMD level, measured FMA peak per core,
//! cores and the affinity mask the launcher (mpirun, SLURM, taskset) set.

use std::process::ExitCode;

use clap::Args;
use ringattn_runtime::Result;

/// Options of `ringattn info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print JSON instead of text ("-" = stdout).
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,
    /// Micro-kernels to report and measure the peak of (`--isa`).
    #[command(flatten)]
    pub isa: crate::args::isa::IsaArgs,
}

/// Prints the facts as text or JSON.
pub fn run_info(args: &InfoArgs, allowed_cores: usize) -> Result<ExitCode> {
    crate::args::check_outputs(None, args.json.as_deref())?;
    let info = ringattn::machine::gather(allowed_cores, args.isa.isa.activate()?);
    match args.json.as_deref() {
        Some(path) => ringattn::io::write_json(path, &info)?,
        None => out!("{}", info.summary()),
    }
    Ok(ExitCode::SUCCESS)
}
