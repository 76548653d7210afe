//! `ringattn duo calibrate` and `ringattn eval passkey|fidelity` end to end at tiny sizes: the
//! calibrated pattern is read by `duo inspect`; a passkey grid writes its results, heat map
//! and plot, and a rerun repeats nothing; fidelity writes one line per configuration.

mod common;
use common::{assert_success, json, model_file, ringattn};

#[test]
fn a_calibrated_pattern_is_read_by_duo_inspect() {
    if model_file().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pattern");
    let o = out.to_str().unwrap();
    let args = [
        "duo",
        "calibrate",
        "--method",
        "mass",
        "--context",
        "160",
        "--samples",
        "1",
    ];
    let run = ringattn(
        &[
            &args[..],
            &["--sink", "4", "--recent", "16", "-t", "1", "--out", o],
        ]
        .concat(),
    );
    assert_success(&run);
    assert!(run.stderr.contains("document 1/1"), "{}", run.describe());
    let run = ringattn(&["duo", "inspect", o, "--sparsity", "0.5", "--json", "-"]);
    assert_success(&run);
    let v = json(&run.stdout);
    assert_eq!(v["retrieval_kv_heads"], 45, "{v}");
    assert_eq!(
        (v["sink"].as_u64(), v["recent"].as_u64()),
        (Some(4), Some(16)),
        "{v}"
    );
}

#[test]
fn a_passkey_grid_writes_results_and_plots_and_a_rerun_repeats_nothing() {
    if model_file().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().to_str().unwrap();
    let args = [
        "eval",
        "passkey",
        "--random-heads",
        "2",
        "--sparsity",
        "0,0.5",
        "--context",
        "128",
        "--depth",
        "0.5",
        "--max-tokens",
        "2",
        "--sink",
        "4",
        "--recent",
        "16",
        "-t",
        "1",
        "--out",
        o,
    ];
    let run = ringattn(&args);
    assert_success(&run);
    let lines = || std::fs::read_to_string(dir.path().join("results.jsonl")).unwrap();
    assert_eq!(lines().lines().count(), 2);
    let first: serde_json::Value = serde_json::from_str(lines().lines().next().unwrap()).unwrap();
    for key in [
        "sparsity", "context", "depth", "trial", "passkey", "answer", "correct",
    ] {
        assert!(first.get(key).is_some(), "{key} missing: {first}");
    }
    assert_eq!(first["selection"], "random:2");
    assert!(dir.path().join("heatmap-random-s0.5.svg").is_file());
    assert!(dir.path().join("accuracy.svg").is_file());
    assert!(run.stdout.contains("random"), "{}", run.describe());
    let again = ringattn(&args);
    assert_success(&again);
    assert_eq!(lines().lines().count(), 2, "a rerun repeats no trial");
    assert!(
        !again.stderr.contains("passkey 1/2"),
        "{}",
        again.describe()
    );
}

#[test]
fn fidelity_writes_one_line_per_configuration() {
    if model_file().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prompt = dir.path().join("p.txt");
    let text: String = (0..60)
        .map(|i| format!("Line {i} of a short text. "))
        .collect();
    std::fs::write(&prompt, text).unwrap();
    let o = dir.path().join("f");
    let run = ringattn(&[
        "eval",
        "fidelity",
        "--random-heads",
        "1",
        "--sparsity",
        "0,1",
        "--prompt-file",
        prompt.to_str().unwrap(),
        "--context",
        "120",
        "--last",
        "4",
        "--continuation",
        "3",
        "--sink",
        "4",
        "--recent",
        "16",
        "-t",
        "1",
        "--out",
        o.to_str().unwrap(),
    ]);
    assert_success(&run);
    let text = std::fs::read_to_string(o.join("fidelity.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    // Sparsity 0 is full attention: no divergence, the whole continuation reproduced.
    assert_eq!(rows[0]["top1_agreement"], 1.0, "{}", rows[0]);
    assert_eq!(rows[0]["identical_continuation"], 3, "{}", rows[0]);
    assert!(rows[0]["kl_mean"].as_f64().unwrap() < 1e-9, "{}", rows[0]);
    assert_eq!(rows[1]["positions"], 4 + 3 - 1, "{}", rows[1]);
    assert!(rows[1]["prompt_tokens"].as_u64().unwrap() <= 120);
}
