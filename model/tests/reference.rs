//! `generate` against candle-transformers' `quantized_llama` (its weights dequantized to f32 the
//! same way, `CANDLE_DEQUANTIZE_ALL`): the same greedy tokens for P ∈ {1, 2, 3} × every layout,
//! the last prompt position's logits within 1e-3, bf16 KV's first tokens, uneven and tiny
//! shards, and the chat answer naming Paris.

mod common;

use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use ringattn_model::attn::LayoutChoice;
use ringattn_model::{default_model_path, generate_with, GenerateReport, GenerateSpec, Model};
use ringattn_runtime::Dtype;

/// Greedy tokens the tests compare.
const STEPS: usize = 24;

/// A prompt of about 700 tokens: numbered facts, then a question.
fn long_prompt() -> String {
    let facts = [
        ("France", "Paris"),
        ("Japan", "Tokyo"),
        ("Italy", "Rome"),
        ("Canada", "Ottawa"),
        ("Egypt", "Cairo"),
        ("Peru", "Lima"),
        ("Kenya", "Nairobi"),
        ("Norway", "Oslo"),
    ];
    let mut s = String::from("Here are some facts about the world.\n");
    for i in 0..29 {
        let (country, city) = facts[i % facts.len()];
        s.push_str(&format!(
            "Fact {}: the capital of {country} is {city}, a city of {} thousand people.\n",
            i + 1,
            100 + 37 * i
        ));
    }
    s.push_str("Question: What is the capital of Kenya, and how do you know?\nAnswer:");
    s
}

struct Reference {
    ids: Vec<u32>,
    tokens: Vec<u32>,
    logits: Vec<f32>,
}

/// candle's model on `ids`: the last position's logits and `steps` greedy tokens.
fn reference_run(ids: &[u32], steps: usize, eos: u32) -> (Vec<f32>, Vec<u32>) {
    // The reference's QMatMul dequantizes every weight to f32, as our default does.
    std::env::set_var("CANDLE_DEQUANTIZE_ALL", "1");
    let path = default_model_path();
    let mut file = std::fs::File::open(&path).unwrap();
    let ct = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let mut m = ModelWeights::from_gguf(ct, &mut file, &Device::Cpu).unwrap();
    let input = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits: Vec<f32> = m
        .forward(&input, 0)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut tokens = vec![ringattn_model::block::argmax(&logits)];
    while tokens.len() < steps && *tokens.last().unwrap() != eos {
        let pos = ids.len() + tokens.len() - 1;
        let x = Tensor::new(&[*tokens.last().unwrap()], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let l: Vec<f32> = m
            .forward(&x, pos)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        tokens.push(ringattn_model::block::argmax(&l));
    }
    if tokens.last() == Some(&eos) {
        tokens.pop();
    }
    (logits, tokens)
}

fn reference(model: &Model) -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| {
        let ids = model.tokenizer.encode(&long_prompt()).unwrap();
        let (logits, tokens) = reference_run(&ids, STEPS, model.tokenizer.eos);
        Reference {
            ids,
            tokens,
            logits,
        }
    })
}

fn run(model: &Model, prompt: &str, world: usize, layout: &str, dtype: Dtype) -> GenerateReport {
    let mut spec = GenerateSpec::new(default_model_path(), prompt, STEPS, world);
    spec.layout = layout.parse::<LayoutChoice>().unwrap();
    spec.dtype = dtype;
    generate_with(model, &spec, &mut |_, _| {}).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn greedy_tokens_and_logits_match_the_reference_for_every_world_and_layout() {
    let Some(model) = common::model() else { return };
    let r = reference(model);
    assert!(
        (600..=800).contains(&r.ids.len()),
        "{} prompt tokens",
        r.ids.len()
    );
    for world in [1, 2, 3] {
        for layout in ["contiguous", "striped", "zigzag"] {
            let rep = run(model, &long_prompt(), world, layout, Dtype::F32);
            assert_eq!(rep.prompt_tokens, r.ids.len());
            let diff = max_abs_diff(&rep.prompt_logits, &r.logits);
            assert!(diff < 1e-3, "P={world} {layout}: logits differ by {diff}");
            assert_eq!(
                rep.token_ids, r.tokens,
                "P={world} {layout}: {:?}",
                rep.text
            );
        }
    }
}

#[test]
fn bf16_kv_agrees_on_the_first_tokens() {
    let Some(model) = common::model() else { return };
    let r = reference(model);
    let rep = run(model, &long_prompt(), 2, "striped", Dtype::Bf16);
    assert_eq!(rep.token_ids[..8], r.tokens[..8], "{:?}", rep.text);
}

#[test]
fn short_prompts_on_more_ranks_than_a_tile_and_uneven_shards() {
    let Some(model) = common::model() else { return };
    // A dozen tokens on 3 ranks: far fewer than P · tile rows, and not divisible by 3.
    let prompt = [
        "The capital of Japan is Tokyo. The capital of France is",
        "The capital of Japan is Tokyo. The capital of France is the city of",
        "The capital of Japan is Tokyo, and the capital of France is",
    ]
    .into_iter()
    .find(|p| model.tokenizer.encode(p).unwrap().len() % 3 != 0)
    .unwrap();
    let ids = model.tokenizer.encode(prompt).unwrap();
    assert!(ids.len() < 3 * 64, "{} tokens", ids.len());
    let (logits, tokens) = reference_run(&ids, 8, model.tokenizer.eos);
    for layout in ["contiguous", "striped", "zigzag"] {
        let mut spec = GenerateSpec::new(default_model_path(), prompt, 8, 3);
        spec.layout = layout.parse().unwrap();
        let rep = generate_with(model, &spec, &mut |_, _| {}).unwrap();
        assert!(max_abs_diff(&rep.prompt_logits, &logits) < 1e-3, "{layout}");
        assert_eq!(rep.token_ids, tokens, "{layout}");
    }
}

#[test]
fn chat_answer_names_paris_and_streams_the_same_text() {
    let Some(model) = common::model() else { return };
    let mut spec = GenerateSpec::new(
        default_model_path(),
        "What is the capital of France?",
        24,
        2,
    );
    spec.chat = true;
    let mut streamed = String::new();
    let rep = generate_with(model, &spec, &mut |_, piece| streamed.push_str(piece)).unwrap();
    assert!(rep.text.contains("Paris"), "{:?}", rep.text);
    assert_eq!(streamed, rep.text);
    assert_eq!(rep.ranks.len(), 2);
    assert!(rep.ranks.iter().all(|r| r.kv_bytes > 0));
}
