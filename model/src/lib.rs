//! ringattn-model: a real LLM (SmolLM2-135M-Instruct, a llama GGUF) whose attention runs
//! through the ring, layer by layer.
//!
//! - [`weights`]: the GGUF's shape and weights (dequantized to f32 by default), typed errors;
//! - [`qlinear`]: the projections: f32 for prefill, packed GGUF blocks for decode;
//! - [`bench`](mod@bench): the model benchmark (`ringattn bench model`), llama.cpp beside it;
//! - [`tokenizer`]: the byte-level BPE tokenizer built from the GGUF, the chat template;
//! - [`block`]: the Llama block on one rank's token shard (RoPE at true global positions,
//!   attention through the per-layer handle, GQA without KV replication);
//! - [`generate`](mod@generate): prefill on P ranks, decode with distributed KV caches,
//!   greedy or seeded temperature / top-p sampling, DuoAttention plans ([`duo`]);
//! - [`tensor_parallel`]: decode's projections and LM head split across the ranks by output
//!   rows (each rank reads ~1/P of the weights per token).
//!
//! Threads: the projections run on the rank's rayon pool ([`generate_with`] gives each
//! in-process rank its own; [`generate_rank`] called outside any pool, as an MPI rank is,
//! starts one of `threads_per_rank` threads), the attention on the rank's scheduler; candle's own busy-waiting
//! element-wise pool is kept to one thread ([`quiet_candle_pool`]) so it never competes with
//! the scheduler's pinned threads.

#![warn(missing_docs)]

pub mod bench;
pub mod block;
pub mod calibrate;
pub mod duo;
pub mod error;
pub mod eval;
pub mod generate;
pub mod local;
pub mod qlinear;
mod rank_pool;
pub mod sample;
pub mod tensor_parallel;
pub mod tokenizer;
pub mod weights;

/// The per-layer attention API of the library the model is written against.
pub use ringattn as attn;

use std::path::Path;
use std::sync::Arc;

pub use duo::{DuoSource, DuoSummary};
pub use error::{ModelError, Result};
pub use generate::{
    generate_rank, generate_rank_progress, prompt_ids, GenerateReport, GenerateSpec, Progress,
    RankReport,
};
pub use local::{generate, generate_with};
pub use sample::{Sampler, Sampling};
pub use tokenizer::{chat_prompt, Tokenizer};
pub use weights::{ModelConfig, WeightFormat, Weights};

/// The command that fetches the default model (printed when it is missing).
pub const FETCH_COMMAND: &str = "bash scripts/get-model.sh";

/// File name of the default model.
pub const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Where `scripts/get-model.sh` puts the model: `$RINGATTN_MODEL_DIR` or
/// `~/.cache/ringattn/models`, plus [`MODEL_FILE`].
pub fn default_model_path() -> std::path::PathBuf {
    let dir = std::env::var_os("RINGATTN_MODEL_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            Path::new(&home).join(".cache/ringattn/models")
        });
    dir.join(MODEL_FILE)
}

/// A loaded model: weights (shared by the in-process ranks) and tokenizer.
pub struct Model {
    /// The weights.
    pub weights: Arc<Weights>,
    /// The tokenizer.
    pub tokenizer: Arc<Tokenizer>,
}

impl Model {
    /// Loads the GGUF at `path`.
    pub fn load(path: &Path, format: WeightFormat) -> Result<Model> {
        quiet_candle_pool();
        let weights = Weights::load(path, format)?;
        let tokenizer = Tokenizer::from_metadata(&weights.metadata)?;
        Ok(Model {
            weights: Arc::new(weights),
            tokenizer: Arc::new(tokenizer),
        })
    }
}

/// Keeps candle's element-wise thread pool (which busy-waits between calls) at one thread,
/// unless `CANDLE_NUM_THREADS` is set: the model's heavy work (f32 matmuls) runs on the
/// caller's rayon pool and its attention on the scheduler's pinned threads. Call before any
/// tensor op. (Quantized matmuls, [`WeightFormat::Stored`], also run on that pool: set
/// `CANDLE_NUM_THREADS` to the cores they may use.)
pub fn quiet_candle_pool() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Limits rayon's global pool, where the projections run, to `threads` (at least 1): one MPI
/// rank's share, where by default every process of a node would take all its cores and
/// oversubscribe them. Only the first call of a process (before any rayon work) has an effect.
pub fn limit_rayon_pool(threads: usize) {
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build_global();
}
