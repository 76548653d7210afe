//! `generate`: a prompt prefilled through the ring on P ranks, then decoded with the 30 per-layer
//! KV caches kept distributed. [`generate_rank`] is one rank's part (any `Comm`: local threads
//! or MPI processes); [`generate`](crate::generate()) / [`generate_with`](crate::generate_with)
//! (module `local`) run P ranks as threads of this process.

use std::path::PathBuf;
use std::time::Instant;

use ringattn_runtime::{Comm, Dtype, TileShape};
use serde::{Deserialize, Serialize};

use crate::attn::{executor_for, DistKvCache, LayerAttention, LayerSpec, LayoutChoice};
use crate::block::{decode_layer, embed, logits_of_row, prefill_layer, Rope, Timing};
use crate::duo::{DuoSource, DuoSummary};
use crate::error::{ModelError, Result};
use crate::sample::{Sampler, Sampling};
use crate::tensor_parallel::{bytes_f32, f32_bytes, DecodeSplit};
use crate::tokenizer::{chat_prompt, TextStream};
use crate::{Model, WeightFormat};
use ringattn_ring::DuoPlan;

/// What to generate and how (the same on every rank).
#[derive(Clone, Debug)]
pub struct GenerateSpec {
    /// The GGUF file.
    pub model: PathBuf,
    /// How the projection weights are held.
    pub weights: WeightFormat,
    /// The prompt text.
    pub prompt: String,
    /// Wrap the prompt in the model's chat template (one user message).
    pub chat: bool,
    /// Most tokens to generate (generation also stops at EOS).
    pub max_tokens: usize,
    /// Ranks (threads for [`crate::generate()`]; the communicator's size for [`generate_rank`]).
    pub world: usize,
    /// Kernel threads per rank.
    pub threads_per_rank: usize,
    /// Token placement.
    pub layout: LayoutChoice,
    /// K/V storage type.
    pub dtype: Dtype,
    /// Kernel tile (`None`: the kernel's default).
    pub tile: Option<TileShape>,
    /// Greedy or temperature / top-p sampling.
    pub sampling: Sampling,
    /// DuoAttention heads (`None`: every head full attention).
    pub duo: Option<DuoSource>,
    /// Accept a prompt longer than the model's trained context.
    pub allow_long: bool,
    /// Keep generating past EOS until `max_tokens` (benchmarks: a fixed number of decode steps).
    pub ignore_eos: bool,
    /// CPU ids this rank's threads are pinned to (kernel and matmul threads alike; empty:
    /// unpinned). [`crate::generate_with`] fills it per rank when `pin` is set.
    pub cores: Vec<usize>,
    /// [`crate::generate_with`]: give each in-process rank `threads_per_rank` of the allowed
    /// CPUs of its own (when there are enough), so ranks and pools never share a core.
    pub pin: bool,
}

impl GenerateSpec {
    /// Greedy generation of `max_tokens` tokens for `prompt` on `world` local ranks, one kernel
    /// thread each, striped layout, f32 weights and KV.
    pub fn new(model: PathBuf, prompt: &str, max_tokens: usize, world: usize) -> Self {
        GenerateSpec {
            model,
            weights: WeightFormat::F32,
            prompt: prompt.to_string(),
            chat: false,
            max_tokens,
            world,
            threads_per_rank: 1,
            layout: LayoutChoice::Striped,
            dtype: Dtype::F32,
            tile: None,
            sampling: Sampling::default(),
            duo: None,
            allow_long: false,
            ignore_eos: false,
            cores: Vec::new(),
            pin: true,
        }
    }
}

/// One rank's share of the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RankReport {
    /// Rank.
    pub rank: usize,
    /// Prompt tokens this rank prefilled.
    pub tokens: usize,
    /// KV cache bytes this rank held at the end (all layers).
    pub kv_bytes: u64,
    /// Seconds in attention (prefill and decode).
    pub attention_s: f64,
    /// Seconds in projections, MLP, norms and the LM head.
    pub matmul_s: f64,
}

/// What a run produced and how fast (the `--json` report of `ringattn generate`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GenerateReport {
    /// `local` or `mpi`.
    pub backend: String,
    /// Ranks.
    pub world: usize,
    /// Layout that ran.
    pub layout: String,
    /// K/V storage type.
    pub dtype: String,
    /// Projection weights: `f32` (dequantized at load) or `stored` (as in the GGUF).
    pub weights: String,
    /// Kernel (and matmul) threads per rank.
    pub threads_per_rank: usize,
    /// Prompt tokens (after the chat template).
    pub prompt_tokens: usize,
    /// Tokens generated (EOS not counted).
    pub generated_tokens: usize,
    /// The generated text.
    pub text: String,
    /// The generated ids.
    pub token_ids: Vec<u32>,
    /// Seconds from the first embedding to the first token's logits.
    pub prefill_s: f64,
    /// Prompt tokens / prefill seconds.
    pub prefill_tokens_per_s: f64,
    /// Seconds from the start (tokenizing included) to the first generated token.
    pub ttft_s: f64,
    /// Seconds of the decode steps after the first token.
    pub decode_s: f64,
    /// Tokens decoded after the first / decode seconds.
    pub decode_tokens_per_s: f64,
    /// Rank 0's seconds in attention.
    pub attention_s: f64,
    /// Rank 0's seconds in projections, MLP, norms, LM head.
    pub matmul_s: f64,
    /// Per-rank measurements.
    pub ranks: Vec<RankReport>,
    /// DuoAttention heads, or null.
    pub duo: Option<DuoSummary>,
    /// Logits of the last prompt position (tests compare them to a reference).
    #[serde(skip)]
    pub prompt_logits: Vec<f32>,
}

impl GenerateReport {
    /// The one-line summary `ringattn generate` prints on stderr without `--json`: prompt and
    /// generated tokens with their rates, attention and matmul seconds, world × layout.
    pub fn summary(&self) -> String {
        format!(
            "{} prompt tokens: prefill {:.2} s ({:.1} tok/s), {} generated: {:.1} tok/s; \
             attention {:.2} s, matmul {:.2} s; {} × {}",
            self.prompt_tokens,
            self.prefill_s,
            self.prefill_tokens_per_s,
            self.generated_tokens,
            self.decode_tokens_per_s,
            self.attention_s,
            self.matmul_s,
            self.world,
            self.layout,
        )
    }
}

/// The prompt's ids after the chat template, checked against the model and world.
pub fn prompt_ids(model: &Model, spec: &GenerateSpec, world: usize) -> Result<Vec<u32>> {
    let text = if spec.chat {
        chat_prompt(&spec.prompt)
    } else {
        spec.prompt.clone()
    };
    if spec.prompt.is_empty() {
        return Err(ModelError::EmptyPrompt);
    }
    let ids = model.tokenizer.encode(&text)?;
    if ids.is_empty() {
        return Err(ModelError::EmptyPrompt);
    }
    let context = model.weights.config.context;
    if ids.len() > context && !spec.allow_long {
        return Err(ModelError::PromptTooLong {
            tokens: ids.len(),
            context,
        });
    }
    if world > ids.len() {
        return Err(ModelError::TooManyRanks {
            world,
            tokens: ids.len(),
        });
    }
    if spec.max_tokens == 0 {
        return Err(ModelError::Invalid {
            field: "max_tokens",
            reason: "must be at least 1".into(),
        });
    }
    Ok(ids)
}

/// One rank's generation (collective: every rank of `comm` calls it with the same spec).
/// Rank 0 passes each new token to `on_token(id, text piece)` and returns the full report;
/// other ranks return their own measurements in `ranks[0]`.
pub fn generate_rank(
    model: &Model,
    spec: &GenerateSpec,
    comm: &mut dyn Comm,
    on_token: &mut dyn FnMut(u32, &str),
) -> Result<GenerateReport> {
    let progress = Progress {
        on_layer: &mut |_, _| {},
        on_token,
    };
    generate_rank_progress(model, spec, comm, progress)
}

/// What a rank tells its caller while it runs (a front end's progress bar and text stream).
pub struct Progress<'a> {
    /// After each prefill layer: (layers done, layers).
    pub on_layer: &'a mut dyn FnMut(usize, usize),
    /// Rank 0, each new token: its id and the text it adds.
    pub on_token: &'a mut dyn FnMut(u32, &str),
}

/// [`generate_rank`] that also reports the prefill's progress, layer by layer.
pub fn generate_rank_progress(
    model: &Model,
    spec: &GenerateSpec,
    comm: &mut dyn Comm,
    progress: Progress<'_>,
) -> Result<GenerateReport> {
    // On the rank's own thread pool (see `rank_pool`: an MPI rank's main thread is in none).
    crate::rank_pool::run(spec, progress, |progress| {
        let res = run_rank(model, spec, comm, progress);
        if let Err(e) = &res {
            comm.abort(&e.to_string());
        }
        res
    })
}

fn run_rank(
    model: &Model,
    spec: &GenerateSpec,
    comm: &mut dyn Comm,
    progress: &mut Progress<'_>,
) -> Result<GenerateReport> {
    let start = Instant::now();
    let (rank, world) = (comm.rank(), comm.size());
    let c = &model.weights.config;
    let ids = prompt_ids(model, spec, world)?;
    let plans = match &spec.duo {
        Some(src) => Some(src.plans(c.layers, c.kv_heads)?),
        None => None,
    };
    let mut timing = Timing::default();
    let t_prefill = Instant::now();
    let mut pre = prefill(
        model,
        spec,
        comm,
        &ids,
        plans.as_deref(),
        &mut timing,
        progress.on_layer,
    )?;
    let prefill_s = t_prefill.elapsed().as_secs_f64();
    let mut sampler = Sampler::new(spec.sampling);
    let first = agree(comm, sampler.next(&pre.logits))?;
    let ttft_s = start.elapsed().as_secs_f64();
    let t_decode = Instant::now();
    let out_ids = decode(
        model,
        spec,
        comm,
        &mut pre.caches,
        first,
        &mut sampler,
        progress.on_token,
        &mut timing,
    )?;
    let decode_s = t_decode.elapsed().as_secs_f64();
    let me = RankReport {
        rank,
        tokens: pre.tokens,
        kv_bytes: pre.caches.iter().map(DistKvCache::kv_bytes).sum(),
        attention_s: timing.attention_s,
        matmul_s: timing.matmul_s,
    };
    let ranks = gather_ranks(comm, &me)?;
    let decoded = out_ids.len().saturating_sub(1);
    Ok(GenerateReport {
        backend: comm.backend().to_string(),
        world,
        layout: pre.layout,
        dtype: spec.dtype.name().to_string(),
        weights: spec.weights.name().to_string(),
        threads_per_rank: spec.threads_per_rank,
        prompt_tokens: ids.len(),
        generated_tokens: out_ids.len(),
        text: model.tokenizer.decode(&out_ids, true)?,
        token_ids: out_ids,
        prefill_s,
        prefill_tokens_per_s: ids.len() as f64 / prefill_s.max(1e-12),
        ttft_s,
        decode_s,
        decode_tokens_per_s: decoded as f64 / decode_s.max(1e-12),
        attention_s: timing.attention_s,
        matmul_s: timing.matmul_s,
        ranks: ranks.unwrap_or_else(|| vec![me]),
        duo: plans.as_deref().map(DuoSummary::of),
        prompt_logits: pre.logits,
    })
}

/// What the prefill leaves on a rank.
struct Prefilled {
    caches: Vec<DistKvCache>,
    logits: Vec<f32>,
    tokens: usize,
    layout: String,
}

/// Every layer over this rank's shard of `ids`; the last position's logits on every rank.
fn prefill(
    model: &Model,
    spec: &GenerateSpec,
    comm: &mut dyn Comm,
    ids: &[u32],
    plans: Option<&[DuoPlan]>,
    timing: &mut Timing,
    on_layer: &mut dyn FnMut(usize, usize),
) -> Result<Prefilled> {
    let (w, c) = (&*model.weights, &model.weights.config);
    let layer_spec = LayerSpec {
        heads: c.heads,
        kv_heads: c.kv_heads,
        head_dim: c.head_dim,
        seq: ids.len(),
        causal: true,
        layout: spec.layout,
        tile: spec.tile,
        dtype: spec.dtype,
    };
    let exec = executor_for(spec.threads_per_rank, spec.cores.clone())?;
    let mut attn = LayerAttention::new(&layer_spec, comm.rank(), comm.size(), exec)?;
    let mine: Vec<u32> = attn.positions().iter().map(|&p| ids[p]).collect();
    let rope = Rope::at(attn.positions(), c.head_dim, c.rope_base)?;
    let mut x = embed(w, &mine)?;
    let mut caches = Vec::with_capacity(c.layers);
    for (l, lw) in w.layers.iter().enumerate() {
        let duo = plans.map(|p| &p[l]);
        let (y, k, v) = prefill_layer(lw, c, &x, &rope, &mut attn, comm, duo, timing)?;
        caches.push(DistKvCache::from_prefill(
            &attn,
            &k,
            &v,
            duo,
            spec.max_tokens,
        )?);
        x = y;
        on_layer(l + 1, c.layers);
    }
    let last = ids.len() - 1;
    let owner = caches[0].owner(last);
    let t_head = Instant::now();
    let mine_logits = match attn.positions().iter().position(|&p| p == last) {
        Some(row) if comm.rank() == owner => f32_bytes(&logits_of_row(w, &x, row)?),
        _ => Vec::new(),
    };
    let logits = bytes_f32(&comm.broadcast(owner, mine_logits)?);
    timing.matmul_s += t_head.elapsed().as_secs_f64();
    Ok(Prefilled {
        caches,
        logits,
        tokens: attn.tokens(),
        layout: attn.layout().name().to_string(),
    })
}

/// Decode steps from the `first` token until EOS (unless `ignore_eos`) or `max_tokens`; returns
/// the tokens (a stopping EOS not included). Rank 0 streams each to `on_token`.
#[allow(clippy::too_many_arguments)]
fn decode(
    model: &Model,
    spec: &GenerateSpec,
    comm: &mut dyn Comm,
    caches: &mut [DistKvCache],
    first: u32,
    sampler: &mut Sampler,
    on_token: &mut dyn FnMut(u32, &str),
    timing: &mut Timing,
) -> Result<Vec<u32>> {
    // This rank's rows of every matrix, fixed for the whole decode.
    let split = DecodeSplit::new(&model.weights, comm.rank(), comm.size());
    let mut out_ids = Vec::new();
    let mut stream = TextStream::default();
    let mut token = first;
    while spec.ignore_eos || token != model.tokenizer.eos {
        out_ids.push(token);
        if comm.rank() == 0 {
            let piece = stream.push(&model.tokenizer, token)?;
            on_token(token, &piece);
        }
        if out_ids.len() >= spec.max_tokens {
            break;
        }
        let logits = decode_step(model, split.as_ref(), comm, caches, token, timing)?;
        token = agree(comm, logits.map_or(0, |l| sampler.next(&l)))?;
    }
    Ok(out_ids)
}

/// One decode step of `token` through every layer (collective): the next token's logits on
/// rank 0 (and, without a `split`, on every rank). With a [`DecodeSplit`] the projections and
/// the LM head are split across the ranks; without one (weights without packed blocks) every
/// rank runs all of them.
fn decode_step(
    model: &Model,
    split: Option<&DecodeSplit>,
    comm: &mut dyn Comm,
    caches: &mut [DistKvCache],
    token: u32,
    timing: &mut Timing,
) -> Result<Option<Vec<f32>>> {
    let (w, c) = (&*model.weights, &model.weights.config);
    let rope = Rope::at(&[caches[0].len()], c.head_dim, c.rope_base)?;
    let mut x = embed(w, &[token])?;
    for (lw, cache) in w.layers.iter().zip(caches.iter_mut()) {
        x = match split {
            Some(s) => s.layer(lw, c, &x, &rope, cache, comm, timing)?,
            None => decode_layer(lw, c, &x, &rope, cache, comm, timing)?,
        };
    }
    let t_head = Instant::now();
    let logits = match split {
        Some(s) => s.logits(w, &x, comm)?,
        None => Some(logits_of_row(w, &x, 0)?),
    };
    timing.matmul_s += t_head.elapsed().as_secs_f64();
    Ok(logits)
}

/// Rank 0's token, on every rank (ranks compute the same logits; this makes it certain).
fn agree(comm: &mut dyn Comm, token: u32) -> Result<u32> {
    let b = comm.broadcast(0, token.to_le_bytes().to_vec())?;
    let arr: [u8; 4] = b.as_slice().try_into().map_err(|_| {
        ModelError::Runtime(ringattn_runtime::Error::config(
            "token broadcast of the wrong size".to_string(),
        ))
    })?;
    Ok(u32::from_le_bytes(arr))
}

fn gather_ranks(comm: &mut dyn Comm, me: &RankReport) -> Result<Option<Vec<RankReport>>> {
    let bytes = serde_json::to_vec(me).unwrap_or_default();
    Ok(comm.gather(0, bytes)?.map(|parts| {
        parts
            .iter()
            .filter_map(|p| serde_json::from_slice(p).ok())
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_rates_times_and_the_world() {
        let r = GenerateReport {
            world: 2,
            layout: "striped".into(),
            prompt_tokens: 100,
            generated_tokens: 8,
            prefill_s: 0.5,
            prefill_tokens_per_s: 200.0,
            decode_tokens_per_s: 12.34,
            attention_s: 0.25,
            matmul_s: 1.0,
            ..GenerateReport::default()
        };
        assert_eq!(
            r.summary(),
            "100 prompt tokens: prefill 0.50 s (200.0 tok/s), 8 generated: 12.3 tok/s; \
             attention 0.25 s, matmul 1.00 s; 2 × striped"
        );
    }
}
