//! What this machine gives ringattn (`ringattn info`): SIMD level, measured FMA peak per
//! core, cores and the affinity mask the launcher (mpirun, SLURM, taskset) set, and the
//! scheduler's view of the cores.

use std::time::Duration;

use ringattn_runtime::kernel::{measure_peak_gflops, measure_tile_peak_gflops};
use ringattn_runtime::sched::topology::{CoreKind, Topology};
use ringattn_runtime::Isa;
use serde::Serialize;

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
    /// Whether the CPU has AVX512-BF16's `vdpbf16ps`: bf16 K/V then run P·V on it, and
    /// `--qk-dtype bf16` (Q·Kᵀ on it too) is available.
    pub bf16_dot: bool,
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
        bf16_dot: ringattn_runtime::bf16_dot_available(),
        allowed_cores,
        affinity,
        online_cpus: read_trimmed("/sys/devices/system/cpu/online")
            .unwrap_or_else(|| "unknown".into()),
        p_cores: read_trimmed("/sys/devices/cpu_core/cpus"),
        e_cores: read_trimmed("/sys/devices/cpu_atom/cpus"),
    }
}

impl Info {
    /// The text `ringattn info` prints: one labelled line per fact, then the scheduler's view
    /// of each core (kind, maximum frequency, starting ratio).
    pub fn summary(&self) -> String {
        let mut s = format!("cpu:          {}\n", self.cpu);
        let mut line = |l: String| {
            s.push_str(&l);
            s.push('\n');
        };
        line(format!(
            "simd:         {} (available: {})",
            self.isa,
            self.isa_available.join(", ")
        ));
        line(format!(
            "peak:         {:.1} GFLOP/s per core (f32 FMA, measured)",
            self.peak_gflops_per_core
        ));
        for (name, peak) in &self.peak_gflops_per_core_by_isa {
            line(format!(
                "peak {name:<7} {peak:.1} GFLOP/s per core (f32 FMA, measured)"
            ));
        }
        if let Some(tile) = self.tile_peak_gflops_per_core {
            line(format!(
                "amx:          {tile:.0} GFLOP/s per core (bf16 tiles, measured; f32 by six \
                 bf16 products: ceiling {:.0})",
                tile / 6.0
            ));
        }
        line(match self.bf16_dot {
            true => {
                "bf16 dot:     vdpbf16ps (bf16 K/V: P·V on it; --qk-dtype bf16: Q·Kᵀ too)".into()
            }
            false => {
                "bf16 dot:     none (bf16 K/V computed in f32; --qk-dtype bf16 unavailable)".into()
            }
        });
        line(format!(
            "cores:        {} allowed (affinity {}; online {})",
            self.allowed_cores, self.affinity, self.online_cpus
        ));
        line(match (&self.p_cores, &self.e_cores) {
            (Some(p), Some(e)) => format!("hybrid:       P cores {p}, E cores {e}"),
            _ => "hybrid:       no P/E core lists in sysfs".into(),
        });
        line(format!(
            "topology:     {} (from {}; the hybrid scheduler starts from these ratios)",
            self.core_list(),
            self.topology.source
        ));
        s
    }

    /// `CPU:KIND[ MHz] ratio R` of each allowed core, comma separated (P, E, or `=` uniform).
    fn core_list(&self) -> String {
        let cores: Vec<String> = self
            .topology
            .cores
            .iter()
            .zip(&self.initial_ratios)
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
        cores.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringattn_runtime::sched::topology::Core;

    #[test]
    fn the_summary_has_one_line_per_fact_and_each_core() {
        let core = |cpu, kind, max_khz| Core { cpu, kind, max_khz };
        let info = Info {
            cpu: "Test CPU".into(),
            isa: "avx2",
            isa_available: vec!["avx2", "portable"],
            peak_gflops_per_core: 64.0,
            peak_gflops_per_core_by_isa: [("avx2", 64.0)].into_iter().collect(),
            tile_peak_gflops_per_core: Some(600.0),
            bf16_dot: false,
            allowed_cores: 2,
            affinity: "0-1".into(),
            online_cpus: "0-3".into(),
            p_cores: None,
            e_cores: Some("1".into()),
            topology: Topology {
                cores: vec![
                    core(0, CoreKind::Performance, Some(4_000_000)),
                    core(1, CoreKind::Efficiency, None),
                ],
                source: "test".into(),
            },
            initial_ratios: vec![1.0, 0.5],
        };
        let s = info.summary();
        for line in [
            "cpu:          Test CPU",
            "simd:         avx2 (available: avx2, portable)",
            "peak avx2    64.0 GFLOP/s per core (f32 FMA, measured)",
            "bf16 dot:     none (bf16 K/V computed in f32; --qk-dtype bf16 unavailable)",
            "cores:        2 allowed (affinity 0-1; online 0-3)",
            "hybrid:       no P/E core lists in sysfs",
            "topology:     0:P 4000 MHz ratio 1.00, 1:E ratio 0.50 (from test; the hybrid \
             scheduler starts from these ratios)",
        ] {
            assert!(s.lines().any(|l| l == line), "no `{line}` in\n{s}");
        }
        assert!(s.contains("ceiling 100)"), "{s}");
        assert_eq!(s.lines().count(), 9, "{s}");
    }
}
