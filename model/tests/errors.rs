//! Bad model files and bad prompts give typed errors (never a panic): missing, truncated, another
//! architecture, an unsupported tensor type; an empty prompt, a prompt over the context, more
//! ranks than prompt tokens.

mod common;

use std::io::Write;
use std::path::Path;

use ringattn_model::{
    default_model_path, generate_with, GenerateSpec, Model, ModelError, WeightFormat,
};

/// A minimal GGUF v3: `arch` as `general.architecture`, one 32-element tensor of ggml type
/// `dtype` (0 = F32, 9 = Q8_1) with `data_bytes` bytes of data.
fn tiny_gguf(arch: &str, dtype: u32, data_bytes: usize) -> Vec<u8> {
    let mut b = Vec::new();
    let string = |b: &mut Vec<u8>, s: &str| {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    };
    b.extend(b"GGUF");
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(1u64.to_le_bytes()); // metadata entries
    string(&mut b, "general.architecture");
    b.extend(8u32.to_le_bytes()); // string
    string(&mut b, arch);
    string(&mut b, "t.weight");
    b.extend(1u32.to_le_bytes());
    b.extend(32u64.to_le_bytes());
    b.extend(dtype.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    while b.len() % 32 != 0 {
        b.push(0);
    }
    b.extend(vec![0u8; data_bytes]);
    b
}

fn load_bytes(bytes: &[u8]) -> ModelError {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    match Model::load(f.path(), WeightFormat::F32) {
        Err(e) => e,
        Ok(_) => panic!("loaded a bad GGUF"),
    }
}

#[test]
fn missing_model_is_named() {
    let e = Model::load(Path::new("/nonexistent/model.gguf"), WeightFormat::F32).err();
    assert!(matches!(e, Some(ModelError::MissingModel { .. })), "{e:?}");
}

#[test]
fn not_a_gguf_and_truncated_files_are_bad_gguf() {
    assert!(matches!(load_bytes(b"hello"), ModelError::BadGguf { .. }));
    // A llama header whose tensor data is cut short.
    let e = load_bytes(&tiny_gguf("llama", 0, 16));
    assert!(matches!(e, ModelError::BadGguf { .. }), "{e}");
    assert!(e.to_string().contains("t.weight"), "{e}");
}

#[test]
fn other_architecture_is_refused() {
    let e = load_bytes(&tiny_gguf("gpt2", 0, 128));
    match e {
        ModelError::Architecture { found, .. } => assert_eq!(found, "gpt2"),
        other => panic!("{other}"),
    }
}

#[test]
fn unsupported_tensor_types_are_refused() {
    // Q8_1 (type 9): 32 elements = one 36-byte block.
    let e = load_bytes(&tiny_gguf("llama", 9, 64));
    assert!(matches!(e, ModelError::UnsupportedTensorType { .. }), "{e}");
    // A type code candle does not know.
    let e = load_bytes(&tiny_gguf("llama", 77, 64));
    assert!(matches!(e, ModelError::UnsupportedTensorType { .. }), "{e}");
}

#[test]
fn a_truncated_real_model_is_bad_gguf() {
    let Some(path) = common::model_path() else {
        return;
    };
    let bytes = std::fs::read(path).unwrap();
    let e = load_bytes(&bytes[..bytes.len() / 2]);
    assert!(matches!(e, ModelError::BadGguf { .. }), "{e}");
}

#[test]
fn bad_prompts_are_typed_errors() {
    let Some(model) = common::model() else { return };
    let run = |prompt: &str, world: usize| {
        let spec = GenerateSpec::new(default_model_path(), prompt, 4, world);
        generate_with(model, &spec, &mut |_, _| {}).err()
    };
    assert!(matches!(run("", 1), Some(ModelError::EmptyPrompt)));
    match run("Hi there", 5) {
        Some(ModelError::TooManyRanks { world, tokens }) => assert_eq!((world, tokens), (5, 2)),
        other => panic!("{other:?}"),
    }
    let long = "word ".repeat(9000);
    match run(&long, 1) {
        Some(e @ ModelError::PromptTooLong { .. }) => {
            let tokens = model.tokenizer.encode(&long).unwrap().len();
            let msg = e.to_string();
            assert!(
                msg.contains(&tokens.to_string()) && msg.contains("8192"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
}
