//! The slowed-core testing aid: `CPU:FACTOR` lists that make a homogeneous machine hybrid
//! (the thread on CPU does FACTOR× the work per item), parsed and bounded.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A testing aid: the thread on `cpu` does `factor`× the work per item (it computes the item
/// once, then spins for `factor − 1` times as long), making a homogeneous machine hybrid.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlowCore {
    /// CPU id the slowed thread is pinned to (its thread index when unpinned).
    pub cpu: usize,
    /// Work multiplier, ≥ 1.
    pub factor: f64,
}

/// Parses `CPU:FACTOR,...` (e.g. `1:2` or `0:1.5,3:2`).
pub fn parse_slow_cores(text: &str) -> Result<Vec<SlowCore>> {
    let bad = |part: &str| {
        Error::config(format!(
            "--slow-cores: expected CPU:FACTOR with FACTOR >= 1 (e.g. 1:2), got '{part}'"
        ))
    };
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (cpu, factor) = part.split_once(':').ok_or_else(|| bad(part))?;
            let cpu = cpu.trim().parse::<usize>().map_err(|_| bad(part))?;
            let factor = factor.trim().parse::<f64>().map_err(|_| bad(part))?;
            if !(factor.is_finite() && factor >= 1.0) {
                return Err(bad(part));
            }
            Ok(SlowCore { cpu, factor })
        })
        .collect()
}

/// Largest slow-core factor [`parse_bounded_slow_cores`] accepts: a slowed core waits
/// `factor − 1` times its work, so a huge factor would stall the run for ever.
pub const MAX_SLOW_FACTOR: f64 = 1000.0;

/// [`parse_slow_cores`] with every factor in 1..=[`MAX_SLOW_FACTOR`].
pub fn parse_bounded_slow_cores(text: &str) -> Result<Vec<SlowCore>> {
    let slow = parse_slow_cores(text)?;
    match slow.iter().find(|s| s.factor > MAX_SLOW_FACTOR) {
        Some(s) => Err(Error::config(format!(
            "--slow-cores {}:{}: the factor must be between 1 and {MAX_SLOW_FACTOR}",
            s.cpu, s.factor
        ))),
        None => Ok(slow),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_cores_parse_and_huge_factors_are_refused() {
        let slow = parse_bounded_slow_cores("1:2, 0:1.5").unwrap();
        assert_eq!((slow[0].cpu, slow[0].factor, slow[1].cpu), (1, 2.0, 0));
        assert!(parse_bounded_slow_cores("0:1000").is_ok());
        let e = parse_bounded_slow_cores("0:1001").unwrap_err();
        assert!(
            e.is_user_error() && e.to_string().contains("between 1 and 1000"),
            "{e}"
        );
        assert!(parse_bounded_slow_cores("0:0.5").is_err());
        assert!(parse_bounded_slow_cores("x").is_err());
    }
}
