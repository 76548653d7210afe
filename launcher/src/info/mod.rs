//! `ringattn info`: what this machine gives ringattn — SIMD level, measured FMA peak per core,
//! cores and the affinity mask the launcher (mpirun, SLURM, taskset) set.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ringattn_runtime::kernel::{measure_peak_gflops, measure_tile_peak_gflops};
use ringattn_runtime::sched::topology::{CoreKind, Topology};
use ringattn_runtime::{Isa, Result};
use serde::Serialize;

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

/// What `info` reports.
#[derive(Debug, Serialize)]
pub struct Info {
    /// CPU model name from /proc/cpuinfo.
    pub cpu: String,
    /// Micro-kernels the kernel uses.
    pub isa: &'static str,
    /// Every instruction set this CPU supports, fastest first.
    pub isa_available: Vec<&'static str>,
    /// Measured f32 FMA peak of one core with `isa` (AVX-512's for `amx`), GFLOP/s.
    pub peak_gflops_per_core: f64,
    /// Measured f32 FMA peak of one core for each vector instruction set this CPU has
    /// (`avx512`, `avx2`), so every path can be compared with its own peak.
    pub peak_gflops_per_core_by_isa: std::collections::BTreeMap<&'static str, f64>,
    /// Measured bf16 rate of one core's AMX tile unit, GFLOP/s (absent without AMX). The f32
    /// tile path does six bf16 products per f32 product: its ceiling is a sixth of this.
    pub tile_peak_gflops_per_core: Option<f64>,
    /// Cores this process may run on.
    pub allowed_cores: usize,
    /// The affinity mask as a CPU list (from /proc/self/status), e.g. "0-3,8".
    pub affinity: String,
    /// CPUs online on the machine.
    pub online_cpus: String,
    /// Performance-core list on Intel hybrid parts (/sys/devices/cpu_core/cpus), if any.
    pub p_cores: Option<String>,
    /// Efficiency-core list on Intel hybrid parts (/sys/devices/cpu_atom/cpus), if any.
    pub e_cores: Option<String>,
    /// The scheduler's view of the allowed cores: kind of each and where it came from.
    pub topology: Topology,
    /// The scheduler's starting ratio of each allowed core (before any measurement).
    pub initial_ratios: Vec<f64>,
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Gathers the machine facts for micro-kernels `isa` (takes ~0.3 s per peak measurement).
pub fn gather(allowed_cores: usize, isa: Isa) -> Info {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let affinity = status
        .lines()
        .find_map(|l| {
            l.strip_prefix("Cpus_allowed_list:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let topology = Topology::detect();
    Info {
        initial_ratios: topology.initial_ratios(),
        topology,
        cpu,
        isa: isa.name(),
        isa_available: Isa::available().into_iter().map(Isa::name).collect(),
        peak_gflops_per_core: measure_peak_gflops(isa, Duration::from_millis(300)),
        peak_gflops_per_core_by_isa: [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .filter(|i| i.is_available())
            .map(|i| (i.name(), measure_peak_gflops(i, Duration::from_millis(300))))
            .collect(),
        tile_peak_gflops_per_core: measure_tile_peak_gflops(Duration::from_millis(100)),
        allowed_cores,
        affinity,
        online_cpus: read_trimmed("/sys/devices/system/cpu/online")
            .unwrap_or_else(|| "unknown".into()),
        p_cores: read_trimmed("/sys/devices/cpu_core/cpus"),
        e_cores: read_trimmed("/sys/devices/cpu_atom/cpus"),
    }
}

/// Prints the facts as text or JSON.
pub fn run_info(args: &InfoArgs, allowed_cores: usize) -> Result<ExitCode> {
    let info = gather(allowed_cores, args.isa.isa.activate()?);
    match args.json.as_deref() {
        Some(path) => ringattn::io::write_json(path, &info)?,
        None => {
            println!("cpu:          {}", info.cpu);
            println!(
                "simd:         {} (available: {})",
                info.isa,
                info.isa_available.join(", ")
            );
            println!(
                "peak:         {:.1} GFLOP/s per core (f32 FMA, measured)",
                info.peak_gflops_per_core
            );
            for (name, peak) in &info.peak_gflops_per_core_by_isa {
                println!("peak {name:<7} {peak:.1} GFLOP/s per core (f32 FMA, measured)");
            }
            if let Some(tile) = info.tile_peak_gflops_per_core {
                println!(
                    "amx:          {tile:.0} GFLOP/s per core (bf16 tiles, measured; f32 by six \
                     bf16 products: ceiling {:.0})",
                    tile / 6.0
                );
            }
            println!(
                "cores:        {} allowed (affinity {}; online {})",
                info.allowed_cores, info.affinity, info.online_cpus
            );
            match (&info.p_cores, &info.e_cores) {
                (Some(p), Some(e)) => println!("hybrid:       P cores {p}, E cores {e}"),
                _ => println!("hybrid:       no P/E core lists in sysfs"),
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
            println!(
                "topology:     {} (from {}; the hybrid scheduler starts from these ratios)",
                kinds.join(", "),
                info.topology.source
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
