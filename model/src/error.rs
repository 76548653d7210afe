//! Typed errors of the model crate (they name fields and files, never CLI flags).

use std::path::PathBuf;

/// What can go wrong loading or running the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model file does not exist.
    #[error("model file {path} not found")]
    MissingModel {
        /// The path looked at.
        path: PathBuf,
    },
    /// The file is not a readable GGUF, or it ends before its tensors do.
    #[error("model file {path} is not a complete GGUF file: {reason}")]
    BadGguf {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A GGUF of an architecture other than llama.
    #[error("model file {path} has architecture `{found}`, only `llama` is supported")]
    Architecture {
        /// The file.
        path: PathBuf,
        /// `general.architecture` of the file.
        found: String,
    },
    /// A tensor stored in a type this crate does not load.
    #[error("tensor `{tensor}` is stored as {dtype}, which is not supported")]
    UnsupportedTensorType {
        /// Tensor name.
        tensor: String,
        /// Its storage type.
        dtype: String,
    },
    /// A metadata key or tensor the model needs is absent or has the wrong type or shape.
    #[error("model metadata `{key}`: {reason}")]
    Metadata {
        /// The GGUF key or tensor name.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The tokenizer could not be built or failed on an input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The prompt has no tokens.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The prompt is longer than the model's trained context.
    #[error("the prompt has {tokens} tokens, more than the model's context of {context}")]
    PromptTooLong {
        /// Prompt tokens.
        tokens: usize,
        /// The model's context length.
        context: usize,
    },
    /// More ranks than prompt tokens.
    #[error("{world} ranks but only {tokens} prompt tokens: every rank needs a token")]
    TooManyRanks {
        /// Ranks asked for.
        world: usize,
        /// Prompt tokens.
        tokens: usize,
    },
    /// A setting out of range (name of the field, and why).
    #[error("{field}: {reason}")]
    Invalid {
        /// The field of the spec.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A tensor operation failed (a bug or resource problem, not bad input).
    #[error("tensor operation: {0}")]
    Candle(#[from] candle_core::Error),
    /// The attention layer or the communication failed.
    #[error(transparent)]
    Attention(#[from] crate::attn::ApiError),
    /// A communication or runtime failure below the attention API.
    #[error(transparent)]
    Runtime(#[from] ringattn_runtime::Error),
}

impl ModelError {
    /// True when the error comes from the user's input (files, prompt, settings), which the
    /// CLI reports with exit code 2; false for runtime failures.
    pub fn is_bad_input(&self) -> bool {
        !matches!(
            self,
            ModelError::Candle(_) | ModelError::Attention(_) | ModelError::Runtime(_)
        )
    }

    /// This error as a runtime error, for front ends that report those: bad input
    /// ([`is_bad_input`](Self::is_bad_input)) is a configuration error (a missing model says
    /// how to fetch it, [`crate::FETCH_COMMAND`]), anything else a failure of rank 0.
    pub fn into_runtime(self) -> ringattn_runtime::Error {
        let text = match &self {
            ModelError::MissingModel { .. } => {
                format!("{self}; fetch it with `{}`", crate::FETCH_COMMAND)
            }
            _ => self.to_string(),
        };
        match self.is_bad_input() {
            true => ringattn_runtime::Error::config(text),
            false => ringattn_runtime::Error::RankFailed {
                rank: 0,
                reason: text,
            },
        }
    }
}

/// Result with [`ModelError`].
pub type Result<T> = std::result::Result<T, ModelError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_a_config_error_and_the_rest_a_rank_failure() {
        let missing = ModelError::MissingModel {
            path: PathBuf::from("m.gguf"),
        };
        let e = missing.into_runtime();
        assert!(e.is_user_error(), "{e}");
        assert!(e.to_string().contains(crate::FETCH_COMMAND), "{e}");
        let e = ModelError::EmptyPrompt.into_runtime();
        assert!(
            e.is_user_error() && e.to_string().contains("the prompt is empty"),
            "{e}"
        );
        let failed = ModelError::Runtime(ringattn_runtime::Error::config("x")).into_runtime();
        assert!(!failed.is_user_error(), "{failed}");
        assert!(matches!(
            failed,
            ringattn_runtime::Error::RankFailed { rank: 0, .. }
        ));
    }
}
