//! Loading a llama GGUF: the shape metadata ([`ModelConfig`]), the weights ([`Weights`]) and the
//! tokenizer's metadata, with typed errors for missing, truncated, foreign or unsupported files.
//!
//! Weights are dequantized to f32 at load by default ([`WeightFormat::F32`]): Q4_1 used as
//! stored makes candle re-quantize activations to 8 bits, which changes the model's answers
//! (issue 14) and is slower here. The default also keeps the Q4_1 / Q8_0 blocks packed for
//! decode ([`crate::qlinear`]: f32 activations times the same weights, ~6× fewer bytes read per
//! token). [`WeightFormat::Stored`] keeps them as stored (Q4_1) only.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::qlinear::Linear;

/// How the projection weights are held in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightFormat {
    /// Dequantized to f32 at load for prefill, plus the packed blocks for decode (the
    /// default: exact activations, the tested path).
    #[default]
    F32,
    /// Dequantized to f32 only: decode reads the f32 weights too (slower; for comparison).
    F32Dense,
    /// As stored in the file (Q4_1 for SmolLM2): smaller, activations re-quantized to 8 bits.
    Stored,
}

impl WeightFormat {
    /// The name reports use: `f32`, `f32-dense` or `stored`.
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::F32 => "f32",
            WeightFormat::F32Dense => "f32-dense",
            WeightFormat::Stored => "stored",
        }
    }
}

/// The shape of a llama model, from the GGUF metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Transformer blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// KV heads.
    pub kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Hidden size.
    pub embd: usize,
    /// MLP inner size.
    pub ffn: usize,
    /// RMSNorm epsilon.
    pub eps: f64,
    /// RoPE frequency base.
    pub rope_base: f32,
    /// Trained context length.
    pub context: usize,
    /// Vocabulary size.
    pub vocab: usize,
}

/// One transformer block's weights.
pub struct LayerWeights {
    pub(crate) attn_norm: Tensor,
    pub(crate) wq: Linear,
    pub(crate) wk: Linear,
    pub(crate) wv: Linear,
    pub(crate) wo: Linear,
    pub(crate) ffn_norm: Tensor,
    pub(crate) gate: Linear,
    pub(crate) up: Linear,
    pub(crate) down: Linear,
}

/// Everything read from the GGUF; shared (`Arc`) by the in-process ranks.
pub struct Weights {
    /// Model shape.
    pub config: ModelConfig,
    /// The GGUF metadata (tokenizer, chat template).
    pub metadata: std::collections::HashMap<String, Value>,
    pub(crate) embedding: Tensor,
    pub(crate) layers: Vec<LayerWeights>,
    pub(crate) out_norm: Tensor,
    pub(crate) lm_head: Linear,
}

/// Tensor types [`Weights::load`] accepts (candle dequantizes all of them).
const SUPPORTED: [GgmlDType; 14] = [
    GgmlDType::F32,
    GgmlDType::F16,
    GgmlDType::BF16,
    GgmlDType::Q4_0,
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_0,
    GgmlDType::Q2K,
    GgmlDType::Q3K,
    GgmlDType::Q4K,
    GgmlDType::Q5K,
    GgmlDType::Q6K,
    GgmlDType::Q8K,
];

/// Reads and checks the GGUF header of `path` (no tensor data yet).
pub fn read_content(path: &Path) -> Result<(Content, File)> {
    let mut file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ModelError::MissingModel {
            path: path.to_path_buf(),
        },
        _ => bad(path, e.to_string()),
    })?;
    let content = Content::read(&mut file).map_err(|e| {
        let msg = e.to_string();
        match msg.strip_prefix("unknown dtype for tensor ") {
            Some(code) => ModelError::UnsupportedTensorType {
                tensor: "(GGUF header)".into(),
                dtype: format!("ggml type {code}"),
            },
            None => bad(path, msg),
        }
    })?;
    let arch = content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    if arch != "llama" {
        return Err(ModelError::Architecture {
            path: path.to_path_buf(),
            found: arch,
        });
    }
    check_tensors(path, &content, &mut file)?;
    Ok((content, file))
}

/// Every tensor of a supported type and inside the file.
fn check_tensors(path: &Path, content: &Content, file: &mut File) -> Result<()> {
    let size = file
        .seek(std::io::SeekFrom::End(0))
        .map_err(|e| bad(path, e.to_string()))?;
    for (name, info) in &content.tensor_infos {
        if !SUPPORTED.contains(&info.ggml_dtype) {
            return Err(ModelError::UnsupportedTensorType {
                tensor: name.clone(),
                dtype: format!("{:?}", info.ggml_dtype),
            });
        }
        let bytes = (info.shape.elem_count() / info.ggml_dtype.block_size()
            * info.ggml_dtype.type_size()) as u64;
        let end = content.tensor_data_offset + info.offset + bytes;
        if end > size {
            return Err(bad(
                path,
                format!("tensor `{name}` ends at byte {end} but the file has {size} bytes"),
            ));
        }
    }
    Ok(())
}

fn bad(path: &Path, reason: String) -> ModelError {
    ModelError::BadGguf {
        path: PathBuf::from(path),
        reason,
    }
}

fn meta_u32(c: &Content, key: &str) -> Result<usize> {
    let v = c.metadata.get(key).ok_or_else(|| ModelError::Metadata {
        key: key.into(),
        reason: "missing".into(),
    })?;
    v.to_u32()
        .map(|x| x as usize)
        .or_else(|_| v.to_u64().map(|x| x as usize))
        .map_err(|e| ModelError::Metadata {
            key: key.into(),
            reason: e.to_string(),
        })
}

fn meta_f32(c: &Content, key: &str, default: f32) -> Result<f32> {
    match c.metadata.get(key) {
        None => Ok(default),
        Some(v) => v.to_f32().map_err(|e| ModelError::Metadata {
            key: key.into(),
            reason: e.to_string(),
        }),
    }
}

impl ModelConfig {
    /// The shape of the llama model described by `c`.
    pub fn from_content(c: &Content) -> Result<Self> {
        let heads = meta_u32(c, "llama.attention.head_count")?;
        let kv_heads = meta_u32(c, "llama.attention.head_count_kv")?;
        let embd = meta_u32(c, "llama.embedding_length")?;
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 || embd % heads != 0 {
            return Err(ModelError::Metadata {
                key: "llama.attention.head_count".into(),
                reason: format!("{heads} heads, {kv_heads} KV heads, embedding {embd}"),
            });
        }
        let vocab = match c.metadata.get("tokenizer.ggml.tokens") {
            Some(Value::Array(t)) => t.len(),
            _ => meta_u32(c, "llama.vocab_size")?,
        };
        Ok(ModelConfig {
            layers: meta_u32(c, "llama.block_count")?,
            heads,
            kv_heads,
            head_dim: embd / heads,
            embd,
            ffn: meta_u32(c, "llama.feed_forward_length")?,
            eps: f64::from(meta_f32(c, "llama.attention.layer_norm_rms_epsilon", 1e-5)?),
            rope_base: meta_f32(c, "llama.rope.freq_base", 10_000.0)?,
            context: meta_u32(c, "llama.context_length")?,
            vocab,
        })
    }
}

struct Loader<'a, R> {
    content: &'a Content,
    reader: &'a mut R,
    format: WeightFormat,
}

impl<R: Read + Seek> Loader<'_, R> {
    fn qtensor(&mut self, name: &str) -> Result<QTensor> {
        if !self.content.tensor_infos.contains_key(name) {
            return Err(ModelError::Metadata {
                key: name.into(),
                reason: "tensor missing".into(),
            });
        }
        Ok(self.content.tensor(self.reader, name, &Device::Cpu)?)
    }

    fn dense(&mut self, name: &str) -> Result<Tensor> {
        Ok(self.qtensor(name)?.dequantize(&Device::Cpu)?)
    }

    fn matmul(&mut self, name: &str) -> Result<Linear> {
        let q = self.qtensor(name)?;
        match self.format {
            WeightFormat::F32 => Linear::new(q, true, true),
            WeightFormat::F32Dense => Linear::new(q, true, false),
            WeightFormat::Stored => Linear::new(q, false, false),
        }
    }

    /// The LM head: packed only with the default format (it is applied to one row).
    fn head(&mut self, name: &str) -> Result<Linear> {
        match self.format {
            WeightFormat::F32 => Linear::head(self.qtensor(name)?),
            _ => self.matmul(name),
        }
    }

    fn layer(&mut self, i: usize) -> Result<LayerWeights> {
        let p = format!("blk.{i}");
        Ok(LayerWeights {
            attn_norm: self.dense(&format!("{p}.attn_norm.weight"))?,
            wq: self.matmul(&format!("{p}.attn_q.weight"))?,
            wk: self.matmul(&format!("{p}.attn_k.weight"))?,
            wv: self.matmul(&format!("{p}.attn_v.weight"))?,
            wo: self.matmul(&format!("{p}.attn_output.weight"))?,
            ffn_norm: self.dense(&format!("{p}.ffn_norm.weight"))?,
            gate: self.matmul(&format!("{p}.ffn_gate.weight"))?,
            up: self.matmul(&format!("{p}.ffn_up.weight"))?,
            down: self.matmul(&format!("{p}.ffn_down.weight"))?,
        })
    }
}

impl Weights {
    /// Loads the llama GGUF at `path` with projection weights in `format`.
    pub fn load(path: &Path, format: WeightFormat) -> Result<Weights> {
        let (content, mut file) = read_content(path)?;
        let config = ModelConfig::from_content(&content)?;
        let mut ld = Loader {
            content: &content,
            reader: &mut file,
            format,
        };
        let embedding = ld.dense("token_embd.weight")?;
        let layers = (0..config.layers)
            .map(|i| ld.layer(i))
            .collect::<Result<Vec<_>>>()?;
        let out_norm = ld.dense("output_norm.weight")?;
        let lm_head = if content.tensor_infos.contains_key("output.weight") {
            ld.head("output.weight")?
        } else {
            ld.head("token_embd.weight")?
        };
        if embedding.dims() != [config.vocab, config.embd] {
            return Err(ModelError::Metadata {
                key: "token_embd.weight".into(),
                reason: format!(
                    "shape {:?}, expected [{}, {}]",
                    embedding.dims(),
                    config.vocab,
                    config.embd
                ),
            });
        }
        Ok(Weights {
            config,
            metadata: content.metadata,
            embedding,
            layers,
            out_norm,
            lm_head,
        })
    }
}
