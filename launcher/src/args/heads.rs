//! `--heads`, `--kv-heads`, `--head-dim` with fixed defaults (`simulate`, `bench scaling`).

use clap::Args;

/// The head shape of a job that has no input file.
#[derive(Clone, Copy, Debug, Args)]
pub struct HeadArgs {
    /// Query heads H.
    #[arg(long, default_value_t = 8)]
    pub heads: usize,
    /// Key/value heads (GQA when fewer than --heads; must divide it) [default: --heads].
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// Head dimension D.
    #[arg(short = 'd', long, default_value_t = 128)]
    pub head_dim: usize,
}

impl HeadArgs {
    /// KV heads: `--kv-heads`, else `--heads`.
    pub fn kv_heads(&self) -> usize {
        self.kv_heads.unwrap_or(self.heads)
    }
}
