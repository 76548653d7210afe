//! The model's tokenizer, built from the GGUF with the `tokenizers` crate, and its chat template.
//!
//! candle's own GGUF tokenizer gets this model wrong (issue 14). What matches llama.cpp's
//! "smollm" pre-tokenizer: a byte-level `BPE` from `tokenizer.ggml.tokens` and `merges`, the
//! pre-tokenizer `Sequence[Digits(individual), ByteLevel(add_prefix_space = false,
//! use_regex = true)]` (every digit alone, then the GPT-2 regex), a `ByteLevel` decoder, and
//! every token of `token_type` 3 (control) as a special token, so chat tags are single tokens.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper};

use crate::error::{ModelError, Result};

/// SmolLM2's default system message, used by its chat template when none is given.
pub const DEFAULT_SYSTEM: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// The GGUF `token_type` of control tokens (`<|im_start|>`, `<|endoftext|>`, ...).
const CONTROL: i32 = 3;

/// Text ↔ token ids for the model, plus its special ids.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Beginning-of-sequence id.
    pub bos: u32,
    /// End-of-sequence id (generation stops there).
    pub eos: u32,
}

fn strings(md: &HashMap<String, Value>, key: &str) -> Result<Vec<String>> {
    let missing = |reason: &str| ModelError::Metadata {
        key: key.into(),
        reason: reason.into(),
    };
    let arr = md
        .get(key)
        .ok_or_else(|| missing("missing"))?
        .to_vec()
        .map_err(|_| missing("not an array"))?;
    arr.iter()
        .map(|v| v.to_string().cloned().map_err(|_| missing("not strings")))
        .collect()
}

fn id_of(md: &HashMap<String, Value>, key: &str) -> Result<u32> {
    md.get(key)
        .and_then(|v| v.to_u32().ok())
        .ok_or_else(|| ModelError::Metadata {
            key: key.into(),
            reason: "missing or not a u32".into(),
        })
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF's metadata.
    pub fn from_metadata(md: &HashMap<String, Value>) -> Result<Self> {
        let tokens = strings(md, "tokenizer.ggml.tokens")?;
        let merges = strings(md, "tokenizer.ggml.merges")?;
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a.iter().map(|v| v.to_i32().unwrap_or(1)).collect(),
            _ => vec![1; tokens.len()],
        };
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| ModelError::Tokenizer(format!("merge `{m}` has no space")))
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let pre: Vec<PreTokenizerWrapper> = vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ];
        inner.with_pre_tokenizer(Some(Sequence::new(pre)));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == CONTROL)
            .map(|(s, _)| AddedToken::from(s.clone(), true))
            .collect();
        inner
            .add_special_tokens(special)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(Tokenizer {
            inner,
            bos: id_of(md, "tokenizer.ggml.bos_token_id")?,
            eos: id_of(md, "tokenizer.ggml.eos_token_id")?,
        })
    }

    /// The ids of `text` (special tokens written in the text become their single ids; no BOS
    /// is added: SmolLM2 adds none).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    /// The text of `ids`; special tokens are dropped when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))
    }
}

/// The model's chat template for one user message and the assistant's turn, as SmolLM2's
/// GGUF template renders it (default system message, `<|im_start|>` / `<|im_end|>` tags).
pub fn chat_prompt(user: &str) -> String {
    format!(
        "<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n\
         <|im_start|>user\n{user}<|im_end|>\n\
         <|im_start|>assistant\n"
    )
}

/// Emits the text of a growing token list piece by piece: each call returns what the newest
/// tokens add, holding back an incomplete UTF-8 character until it is complete.
#[derive(Default)]
pub struct TextStream {
    ids: Vec<u32>,
    shown: usize,
}

impl TextStream {
    /// Adds `id` and returns the new text that is ready to show (may be empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = tok.decode(&self.ids, true)?;
        if text.ends_with('\u{FFFD}') || text.len() < self.shown {
            return Ok(String::new());
        }
        let piece = text.get(self.shown..).unwrap_or_default().to_string();
        self.shown = text.len();
        Ok(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_prompt_renders_the_gguf_template() {
        assert_eq!(
            chat_prompt("Hi"),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
             Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
