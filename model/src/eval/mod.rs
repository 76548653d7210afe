//! Evaluation of DuoAttention on the model: needle-in-a-haystack pass key retrieval over a
//! grid of sparsities, contexts and depths ([`passkey`]), and fidelity to full attention
//! ([`fidelity`]); random head selections of the same sparsity are the chance baseline
//! ([`random`]).

pub mod fidelity;
pub mod haystack;
pub mod jsonl;
pub mod passkey;
pub mod random;
#[cfg(feature = "plot")]
pub mod report;
pub mod summary;
