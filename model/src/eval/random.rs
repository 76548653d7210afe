//! The chance baseline: a pattern whose gates are seeded uniform noise, so `--sparsity S`
//! picks `S` of the heads at random (the same heads for the same seed).

use std::path::{Path, PathBuf};

use crate::calibrate::pattern_tsv;
use crate::error::{ModelError, Result};
use crate::eval::haystack::SplitMix64;

/// The selection label of random seed `seed` (`random:SEED`).
pub fn label(seed: u64) -> String {
    format!("random:{seed}")
}

/// Random gates of `layers` × `kv_heads` heads from `seed`, row-major, in [0, 1).
pub fn random_gates(seed: u64, layers: usize, kv_heads: usize) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed ^ 0xD0_0D0E);
    (0..layers * kv_heads).map(|_| rng.unit()).collect()
}

/// Writes the random pattern of `seed` under `dir/random-SEED/` (TSV and a config.json with
/// `sink` / `recent`) and returns that directory.
pub fn write_random_pattern(
    dir: &Path,
    seed: u64,
    layers: usize,
    kv_heads: usize,
    sink: usize,
    recent: usize,
) -> Result<PathBuf> {
    let sub = dir.join(format!("random-{seed}"));
    let io = |e: std::io::Error| ModelError::Invalid {
        field: "out",
        reason: format!("cannot write {}: {e}", sub.display()),
    };
    std::fs::create_dir_all(&sub).map_err(io)?;
    let tsv = pattern_tsv(&random_gates(seed, layers, kv_heads), kv_heads);
    let config = serde_json::json!({"sink_size": sink, "recent_size": recent, "random_seed": seed});
    // Atomic (temporary file, then rename): MPI ranks may write the same pattern at once.
    let write = |name: &str, text: &str| -> Result<()> {
        let tmp = sub.join(format!(".{name}.{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, sub.join(name)).map_err(io)
    };
    write("full_attention_heads.tsv", &tsv)?;
    write("config.json", &config.to_string())?;
    Ok(sub)
}
