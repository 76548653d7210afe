//! Shared by the model tests: where the model is, and one load of it per test binary.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use ringattn_model::{default_model_path, Model, WeightFormat, FETCH_COMMAND};

/// The model file, or `None` (with a printed line) when it is absent locally. Under `CI=true`
/// a missing model is a failure that names the command fetching it.
pub fn model_path() -> Option<PathBuf> {
    let path = default_model_path();
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "model {} is missing; fetch it with `{FETCH_COMMAND}`",
            path.display()
        );
    }
    eprintln!(
        "SKIPPED: model {} not found (fetch it with `{FETCH_COMMAND}`)",
        path.display()
    );
    None
}

/// The model with f32 weights, loaded once per test binary.
pub fn model() -> Option<&'static Model> {
    static MODEL: OnceLock<Option<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            model_path().map(|p| Model::load(&p, WeightFormat::F32).expect("model loads"))
        })
        .as_ref()
}
