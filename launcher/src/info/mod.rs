//! `ringattn info`: what this machine gives ringattn — SIMD level, measured FMA peak per core,
//! cores and the affinity mask the launcher (mpirun, SLURM, taskset) set.

use std::process::ExitCode;

use clap::Args;
use ringattn_runtime::sched::topology::CoreKind;
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

use ringattn::machine::gather;

/// Prints the facts as text or JSON.
pub fn run_info(args: &InfoArgs, allowed_cores: usize) -> Result<ExitCode> {
    crate::args::check_outputs(None, args.json.as_deref())?;
    let info = gather(allowed_cores, args.isa.isa.activate()?);
    match args.json.as_deref() {
        Some(path) => ringattn::io::write_json(path, &info)?,
        None => {
            outln!("cpu:          {}", info.cpu);
            outln!(
                "simd:         {} (available: {})",
                info.isa,
                info.isa_available.join(", ")
            );
            outln!(
                "peak:         {:.1} GFLOP/s per core (f32 FMA, measured)",
                info.peak_gflops_per_core
            );
            for (name, peak) in &info.peak_gflops_per_core_by_isa {
                outln!("peak {name:<7} {peak:.1} GFLOP/s per core (f32 FMA, measured)");
            }
            if let Some(tile) = info.tile_peak_gflops_per_core {
                outln!(
                    "amx:          {tile:.0} GFLOP/s per core (bf16 tiles, measured; f32 by six \
                     bf16 products: ceiling {:.0})",
                    tile / 6.0
                );
            }
            outln!(
                "cores:        {} allowed (affinity {}; online {})",
                info.allowed_cores,
                info.affinity,
                info.online_cpus
            );
            match (&info.p_cores, &info.e_cores) {
                (Some(p), Some(e)) => outln!("hybrid:       P cores {p}, E cores {e}"),
                _ => outln!("hybrid:       no P/E core lists in sysfs"),
            }
            let kinds: Vec<String> = info
                .topology
                .cores
                .iter()
                .zip(&info.initial_ratios)
                .map(|(c, r)| {
                    let kind = match c.kind {
                        CoreKind::Performance => "P",
                        CoreKind::Efficiency => "E",
                        CoreKind::Uniform => "=",
                    };
                    let mhz = c
                        .max_khz
                        .map_or(String::new(), |k| format!(" {} MHz", k / 1000));
                    format!("{}:{kind}{mhz} ratio {r:.2}", c.cpu)
                })
                .collect();
            outln!(
                "topology:     {} (from {}; the hybrid scheduler starts from these ratios)",
                kinds.join(", "),
                info.topology.source
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
