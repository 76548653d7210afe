//! `ringattn generate` and `ringattn bench model` as a user runs them (the binary): the greedy
//! chat answer and its report, the same tokens on two workers, bad input exiting 2 with one
//! line, and a tiny resumable model benchmark. Tests that need the model skip when it is
//! absent, unless CI=true (CI fetches it with scripts/get-model.sh: missing is a failure).

mod common;
use common::{assert_success, assert_user_error, model_file, ringattn, Run};

/// The JSON report `--json -` prints as the last line of stdout.
fn report(run: &Run) -> serde_json::Value {
    let last = run.stdout.lines().rev().find(|l| !l.trim().is_empty());
    common::json(last.unwrap_or(""))
}

fn chat(model: &str, workers: &str) -> Run {
    ringattn(&[
        "generate",
        "--model",
        model,
        "--chat",
        "--prompt",
        "What is the capital of France?",
        "--max-tokens",
        "12",
        "--workers",
        workers,
        "--threads",
        "1",
        "--json",
        "-",
    ])
}

#[test]
fn chat_answer_names_paris_with_the_same_tokens_on_one_and_two_workers() {
    let Some(path) = model_file() else { return };
    let model = path.to_str().unwrap();
    let one = chat(model, "1");
    assert_success(&one);
    assert!(one.stdout.contains("Paris"), "{}", one.describe());
    let r1 = report(&one);
    assert_eq!(r1["world"], 1);
    assert!(r1["prompt_tokens"].as_u64().unwrap() > 5);
    let n = r1["generated_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&n), "{}", one.describe());
    assert_eq!(r1["weights"], "f32");
    assert!(r1["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    let two = chat(model, "2");
    assert_success(&two);
    let r2 = report(&two);
    assert_eq!(r2["world"], 2);
    assert_eq!(r1["token_ids"], r2["token_ids"], "{}", two.describe());
}

#[test]
fn a_missing_model_exits_2_naming_it_and_the_fetch_command() {
    assert_user_error(
        &[
            "generate",
            "--model",
            "/nonexistent/m.gguf",
            "--prompt",
            "hi",
        ],
        &["/nonexistent/m.gguf", "get-model.sh"],
    );
}

#[test]
fn bad_prompts_and_counts_exit_2_with_one_line() {
    let Some(path) = model_file() else { return };
    let model = path.to_str().unwrap();
    assert_user_error(&["generate", "--model", model, "--prompt", ""], &["empty"]);
    assert_user_error(
        &[
            "generate",
            "--model",
            model,
            "--prompt",
            "hi",
            "--max-tokens",
            "0",
        ],
        &["max"],
    );
    assert_user_error(
        &[
            "generate",
            "--model",
            model,
            "--prompt",
            "hi",
            "--workers",
            "9",
        ],
        &["9 ranks"],
    );
}

#[test]
fn bench_model_records_each_case_once_and_draws_the_plot() {
    let Some(path) = model_file() else { return };
    let dir = tempfile::tempdir().unwrap();
    let prompt = dir.path().join("text.txt");
    std::fs::write(&prompt, "The quick brown fox jumps over the lazy dog. ").unwrap();
    let out = dir.path().join("out");
    let args = [
        "bench",
        "model",
        "--model",
        path.to_str().unwrap(),
        "--context",
        "40",
        "--workers",
        "1,2",
        "--layouts",
        "striped,zigzag",
        "--max-tokens",
        "2",
        "--threads",
        "1",
        "--prompt-file",
        prompt.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let first = ringattn(&args);
    assert_success(&first);
    let results = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = results.lines().map(common::json).collect();
    // P = 1 runs one layout; P = 2 both.
    assert_eq!(lines.len(), 3, "{results}");
    for l in &lines {
        assert_eq!(l["tool"], "ringattn");
        assert_eq!(l["decode_tokens"], 2);
        assert!(l["prefill_tokens_per_s"].as_f64().unwrap() > 0.0);
        let kv = l["kv_bytes_per_rank"].as_array().unwrap();
        assert_eq!(kv.len() as u64, l["workers"].as_u64().unwrap());
        assert!(kv.iter().all(|b| b.as_u64().unwrap() > 0));
    }
    assert!(out.join("model.svg").is_file() && out.join("model.png").is_file());
    assert!(first.stderr.contains("[3/3]"), "{}", first.describe());
    // Resumed: nothing is run again.
    let again = ringattn(&args);
    assert_success(&again);
    assert!(again.stderr.contains("skipped"), "{}", again.describe());
    let after = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    assert_eq!(after.lines().count(), 3);
}
