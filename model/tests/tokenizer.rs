//! The tokenizer against ids made by an independent implementation (llama.cpp's tokenizer via
//! `llama-cpp-python`, scripts/make-tokenizer-fixture.py), and encode → decode round trips.

mod common;

use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Fixture {
    tool: String,
    cases: Vec<Case>,
}

fn fixture() -> Fixture {
    let text = include_str!("fixtures/tokenizer.json");
    serde_json::from_str(text).expect("fixture parses")
}

#[test]
fn ids_match_the_independent_tokenizer() {
    let Some(model) = common::model() else { return };
    let fx = fixture();
    assert!(fx.cases.len() >= 30, "{} cases", fx.cases.len());
    let mut wrong = Vec::new();
    for case in &fx.cases {
        let ids = model.tokenizer.encode(&case.text).unwrap();
        if ids != case.ids {
            wrong.push(format!("{:?}: ours {:?} vs {:?}", case.text, ids, case.ids));
        }
    }
    assert!(
        wrong.is_empty(),
        "differ from {}:\n{}",
        fx.tool,
        wrong.join("\n")
    );
}

#[test]
fn encode_decode_round_trips() {
    let Some(model) = common::model() else { return };
    let mut texts: Vec<String> = fixture()
        .cases
        .into_iter()
        .map(|c| c.text)
        .filter(|t| !t.contains("<|"))
        .collect();
    texts.extend([
        "plain ASCII text.".to_string(),
        "Ünïcödé ✓ — “quotes” 中文 😀".to_string(),
        "   whitespace \t\t runs \n\n\n   ".to_string(),
        "fn f<T: Copy>(x: &[T]) -> Option<T> { x.first().copied() }\r\n".to_string(),
    ]);
    for t in &texts {
        let ids = model.tokenizer.encode(t).unwrap();
        assert_eq!(&model.tokenizer.decode(&ids, false).unwrap(), t);
    }
}

#[test]
fn chat_tags_are_single_special_tokens() {
    let Some(model) = common::model() else { return };
    let ids = model
        .tokenizer
        .encode("<|im_start|>user<|im_end|>")
        .unwrap();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(ids[2], model.tokenizer.eos, "<|im_end|> is the EOS token");
    assert_eq!(model.tokenizer.decode(&ids, true).unwrap(), "user");
}
