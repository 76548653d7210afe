//! DuoAttention in generate: an all-retrieval plan is plain attention (same tokens), a plan with
//! streaming heads runs in prefill and decode, is reported, and holds less KV; Q4_1 weights as
//! stored also run.

mod common;

use ringattn_model::{
    default_model_path, generate_with, DuoSource, GenerateSpec, Model, WeightFormat,
};

fn prompt() -> String {
    let mut s = String::from("A list of numbers and their names.\n");
    for i in 0..40 {
        s.push_str(&format!(
            "Number {i} is written as {i} and comes after {}.\n",
            i + 1000
        ));
    }
    s.push_str("The capital of France is");
    s
}

fn spec(duo: Option<DuoSource>) -> GenerateSpec {
    let mut spec = GenerateSpec::new(default_model_path(), &prompt(), 6, 2);
    spec.duo = duo;
    spec
}

#[test]
fn all_retrieval_is_plain_attention_and_streaming_heads_hold_less_kv() {
    let Some(model) = common::model() else { return };
    let plain = generate_with(model, &spec(None), &mut |_, _| {}).unwrap();
    let all = DuoSource::Ratio {
        ratio: 1.0,
        sink: 4,
        recent: 32,
    };
    let same = generate_with(model, &spec(Some(all)), &mut |_, _| {}).unwrap();
    assert_eq!(same.token_ids, plain.token_ids);
    let third = DuoSource::Ratio {
        ratio: 1.0 / 3.0,
        sink: 4,
        recent: 32,
    };
    let duo = generate_with(model, &spec(Some(third)), &mut |_, _| {}).unwrap();
    let summary = duo.duo.clone().expect("duo reported");
    assert_eq!(summary.retrieval_kv_heads, 30);
    assert_eq!(summary.streaming_kv_heads, 60);
    assert_eq!(duo.generated_tokens, 6, "{:?}", duo.text);
    let kv = |r: &ringattn_model::GenerateReport| r.ranks.iter().map(|r| r.kv_bytes).sum::<u64>();
    assert!(kv(&duo) < kv(&plain), "{} vs {}", kv(&duo), kv(&plain));
}

#[test]
fn stored_q4_1_weights_run() {
    let Some(path) = common::model_path() else {
        return;
    };
    let model = Model::load(&path, WeightFormat::Stored).unwrap();
    let mut s = spec(None);
    s.max_tokens = 3;
    let rep = generate_with(&model, &s, &mut |_, _| {}).unwrap();
    assert!(rep.generated_tokens >= 1);
}
