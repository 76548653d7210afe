//! The simulator's limits: configurations it refuses because they would not finish (it steps
//! every rank through every ring step) or because their figures do not fit in u64.

use ringattn_runtime::{Error, Mask, Result};

use crate::simulate::SimConfig;

/// Most ranks one simulation steps through (its time grows as P²; its memory as P).
pub const MAX_SIM_WORLD: usize = 65_536;

/// Most tile classifications one simulation may need (about a minute of counting).
pub const MAX_SIM_TILE_WORK: u128 = 1 << 36;

/// Refuses simulations that would not finish or whose figures do not fit: more than
/// [`MAX_SIM_WORLD`] ranks (the engine is O(P²) in time), blocks of more than 2^64 bytes,
/// or more tile classifications than [`MAX_SIM_TILE_WORK`].
pub(crate) fn validate_cost(cfg: &SimConfig) -> Result<()> {
    if cfg.world > MAX_SIM_WORLD {
        return Err(Error::config(format!(
            "`world` {} is more ranks than the simulator handles ({MAX_SIM_WORLD}): it steps \
             every rank through every ring step (P² = {} rank-steps)",
            cfg.world,
            cfg.world as u128 * cfg.world as u128
        )));
    }
    let rows = (cfg.seq as u128).div_ceil(cfg.world as u128) + 1;
    let bytes = [2, cfg.kv_heads as u128, cfg.head_dim as u128, 4]
        .iter()
        .try_fold(rows, |a, &f| a.checked_mul(f));
    if bytes.is_none_or(|b| b > u64::MAX as u128) {
        return Err(Error::config(format!(
            "a KV block of {rows} rows × {} kv heads × {} dims does not fit in 2^64 bytes",
            cfg.kv_heads, cfg.head_dim
        )));
    }
    let (qt, kt) = (
        rows.div_ceil(cfg.tile.q as u128),
        rows.div_ceil(cfg.tile.k as u128),
    );
    let p = cfg.world as u128;
    // Streaming masks classify every tile pair of every (rank, step); the others walk
    // each query tile with a binary search over key tiles, about once per rank.
    // Saturating: rows ≤ 2^64 and p ≤ 2^16, so p² · qt fits and only · kt may not.
    let work = match cfg.mask {
        Mask::Streaming { .. } => (p * p * qt).saturating_mul(kt),
        _ => p * qt * (kt.max(2).ilog2() as u128 + 1),
    };
    if work > MAX_SIM_TILE_WORK {
        return Err(Error::config(format!(
            "simulating {} tokens over {} ranks with {}×{} tiles needs about {work} tile \
             classifications, more than the simulator's limit of {MAX_SIM_TILE_WORK}: use \
             larger tiles or a shorter sequence",
            cfg.seq, cfg.world, cfg.tile.q, cfg.tile.k
        )));
    }
    Ok(())
}
