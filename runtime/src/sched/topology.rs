//! Which cores this process may use and what kind each one is.
//!
//! Cores come from the process's affinity mask (`Cpus_allowed_list` in /proc/self/status), so
//! `mpirun --bind-to`, SLURM's binding and `taskset` are respected. The kind of each core comes
//! from, in order: Linux's hybrid lists `/sys/devices/cpu_core/cpus` (P cores) and
//! `/sys/devices/cpu_atom/cpus` (E cores); CPUID leaf 0x1A read on each core (x86 hybrid parts);
//! cpufreq's `cpuinfo_max_freq`; else all cores are taken as equal. The kind only seeds the
//! scheduler's ratios — measured busy times replace the guess within a few kernel calls.

use serde::{Deserialize, Serialize};

/// What kind of core a CPU is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CoreKind {
    /// A performance core of a hybrid part.
    Performance,
    /// An efficiency core of a hybrid part.
    Efficiency,
    /// No hybrid information: all cores are alike.
    Uniform,
}

/// One allowed CPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Core {
    /// CPU id (as in /proc/cpuinfo and affinity masks).
    pub cpu: usize,
    /// P, E or uniform.
    pub kind: CoreKind,
    /// cpufreq's maximum frequency in kHz, where the kernel exposes it.
    pub max_khz: Option<u64>,
}

/// The cores of this process and where their kinds came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// The allowed cores, ascending by CPU id.
    pub cores: Vec<Core>,
    /// Where the kinds came from: `sysfs-hybrid`, `cpuid-0x1a`, `cpufreq` or `uniform`.
    pub source: String,
}

/// Starting ratio of an E core against a P core before anything is measured (Intel's E cores
/// run attention GEMMs at roughly half a P core's speed; the scheduler corrects it).
pub const E_CORE_GUESS: f64 = 0.5;

impl Topology {
    /// The topology of this process's affinity mask.
    pub fn detect() -> Topology {
        Topology::of(&allowed_cpus())
    }

    /// The topology of the given CPUs.
    pub fn of(cpus: &[usize]) -> Topology {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let p_list = read("/sys/devices/cpu_core/cpus").and_then(|s| parse_cpu_list(&s));
        let e_list = read("/sys/devices/cpu_atom/cpus").and_then(|s| parse_cpu_list(&s));
        let max_khz = |cpu: usize| {
            read(&format!(
                "/sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq"
            ))
            .and_then(|s| s.trim().parse::<u64>().ok())
        };
        let mut cores: Vec<Core> = cpus
            .iter()
            .map(|&cpu| Core {
                cpu,
                kind: CoreKind::Uniform,
                max_khz: max_khz(cpu),
            })
            .collect();
        let source = if let (Some(p), Some(e)) = (&p_list, &e_list) {
            for c in &mut cores {
                c.kind = kind_from_lists(c.cpu, p, e);
            }
            "sysfs-hybrid"
        } else if let Some(kinds) = cpuid_kinds(cpus) {
            for (c, k) in cores.iter_mut().zip(kinds) {
                c.kind = k;
            }
            "cpuid-0x1a"
        } else if cores.iter().any(|c| c.max_khz.is_some()) {
            "cpufreq"
        } else {
            "uniform"
        };
        Topology {
            cores,
            source: source.to_string(),
        }
    }

    /// The starting performance ratio of each core (1.0 = the fastest kind): P 1, E
    /// [`E_CORE_GUESS`]; without kinds, max frequency over the fastest core's; else 1.
    pub fn initial_ratios(&self) -> Vec<f64> {
        let top_khz = self.cores.iter().filter_map(|c| c.max_khz).max();
        self.cores
            .iter()
            .map(|c| match (c.kind, c.max_khz, top_khz) {
                (CoreKind::Performance, ..) => 1.0,
                (CoreKind::Efficiency, ..) => E_CORE_GUESS,
                (CoreKind::Uniform, Some(k), Some(top)) if top > 0 => k as f64 / top as f64,
                _ => 1.0,
            })
            .collect()
    }

    /// CPU ids of the cores, in order.
    pub fn cpus(&self) -> Vec<usize> {
        self.cores.iter().map(|c| c.cpu).collect()
    }
}

fn kind_from_lists(cpu: usize, p: &[usize], e: &[usize]) -> CoreKind {
    if p.contains(&cpu) {
        CoreKind::Performance
    } else if e.contains(&cpu) {
        CoreKind::Efficiency
    } else {
        CoreKind::Uniform
    }
}

/// Core kinds from CPUID leaf 0x1A, read on each CPU by a thread pinned there; `None` when the
/// CPU is not a hybrid part (CPUID.07H:EDX bit 15) or a thread cannot be pinned.
#[cfg(target_arch = "x86_64")]
fn cpuid_kinds(cpus: &[usize]) -> Option<Vec<CoreKind>> {
    use std::arch::x86_64::__cpuid_count;
    let max_leaf = __cpuid_count(0, 0).eax;
    if max_leaf < 0x1A || __cpuid_count(7, 0).edx & (1 << 15) == 0 {
        return None;
    }
    let kinds = cpus.iter().map(|&cpu| {
        std::thread::spawn(move || {
            if !pin_current_thread(cpu) {
                return None;
            }
            Some(match __cpuid_count(0x1A, 0).eax >> 24 {
                0x40 => CoreKind::Performance,
                0x20 => CoreKind::Efficiency,
                _ => CoreKind::Uniform,
            })
        })
        .join()
        .ok()
        .flatten()
    });
    kinds.collect()
}

#[cfg(not(target_arch = "x86_64"))]
fn cpuid_kinds(_cpus: &[usize]) -> Option<Vec<CoreKind>> {
    None
}

/// Parses a Linux CPU list such as `0-3,8,10-11` into ascending, distinct CPU ids.
/// Returns `None` for malformed text (or an empty list).
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').map(str::trim) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (
                    a.trim().parse::<usize>().ok()?,
                    b.trim().parse::<usize>().ok()?,
                );
                if a > b || b - a > 1 << 20 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    (!cpus.is_empty()).then_some(cpus)
}

/// The CPU list of `Cpus_allowed_list:` in the text of /proc/self/status, if present.
pub fn cpus_from_status(status: &str) -> Option<Vec<usize>> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(parse_cpu_list)
}

/// The CPUs this process may run on: its affinity mask, or (where /proc is missing)
/// `0..available_parallelism`.
pub fn allowed_cpus() -> Vec<usize> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| cpus_from_status(&s))
        .unwrap_or_else(|| {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            (0..n).collect()
        })
}

/// Formats CPU ids as a Linux CPU list (`0-3,8`).
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Pins the calling thread to CPU `cpu`; false when the system refused.
pub fn pin_current_thread(cpu: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_lists() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list(" 5 \n"), Some(vec![5]));
        assert_eq!(parse_cpu_list("3,1-2,1"), Some(vec![1, 2, 3]));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("2-1"), None);
        assert_eq!(parse_cpu_list("a"), None);
        let status =
            "Name:\tringattn\nCpus_allowed:\tf\nCpus_allowed_list:\t0-1,4\nMems_allowed:\t1\n";
        assert_eq!(cpus_from_status(status), Some(vec![0, 1, 4]));
        assert_eq!(cpus_from_status("Name: x\n"), None);
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_cpu_list(&[]), "");
        assert!(!allowed_cpus().is_empty());
    }

    #[test]
    fn kinds_seed_the_ratios() {
        let core = |cpu, kind, max_khz| Core { cpu, kind, max_khz };
        let hybrid = Topology {
            cores: vec![
                core(0, CoreKind::Performance, None),
                core(1, CoreKind::Efficiency, None),
            ],
            source: "sysfs-hybrid".into(),
        };
        assert_eq!(hybrid.initial_ratios(), vec![1.0, E_CORE_GUESS]);
        let freq = Topology {
            cores: vec![
                core(0, CoreKind::Uniform, Some(4_000_000)),
                core(1, CoreKind::Uniform, Some(3_000_000)),
            ],
            source: "cpufreq".into(),
        };
        assert_eq!(freq.initial_ratios(), vec![1.0, 0.75]);
        assert_eq!(kind_from_lists(3, &[0, 1], &[2, 3]), CoreKind::Efficiency);
        assert_eq!(kind_from_lists(9, &[0, 1], &[2, 3]), CoreKind::Uniform);
    }

    #[test]
    fn detects_this_machine() {
        let t = Topology::detect();
        assert_eq!(t.cpus(), allowed_cpus());
        assert_eq!(t.initial_ratios().len(), t.cores.len());
        assert!(t.initial_ratios().iter().all(|&r| r > 0.0 && r <= 1.0));
    }
}
