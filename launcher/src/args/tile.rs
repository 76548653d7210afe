//! `--tile-q` / `--tile-k`: the kernel's tile shape (`run`, `simulate`, `bench kernel`).

use clap::Args;
use ringattn_runtime::TileShape;

/// The kernel tile options.
#[derive(Clone, Copy, Debug, Args)]
pub struct TileArgs {
    /// Query rows per kernel tile.
    #[arg(long, default_value_t = TileShape::default().q)]
    pub tile_q: usize,
    /// Key rows per kernel tile.
    #[arg(long, default_value_t = TileShape::default().k)]
    pub tile_k: usize,
}

impl TileArgs {
    /// The tile shape (sizes are checked where it is used).
    pub fn shape(&self) -> TileShape {
        TileShape {
            q: self.tile_q,
            k: self.tile_k,
        }
    }
}
