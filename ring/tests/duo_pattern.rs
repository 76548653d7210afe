//! DuoAttention patterns on the shared official gate files (Llama-2-7B MHA 32×32, Llama-3-8B and
//! Mistral-7B GQA 32×8), checked against a recomputation written independently of the library,
//! and the typed errors of malformed pattern files.
//!
//! The files are vendored in the repository (`data/duo-patterns`, MIT licence).

use std::path::{Path, PathBuf};

use ringattn_ring::duo::pattern::{DuoPattern, Selection};
use ringattn_runtime::Error;

/// (directory, layers, kv heads, gates > 0.5 as counted by REFERENCE.md)
const MODELS: [(&str, usize, usize, usize); 3] = [
    ("Llama-2-7B-32K-Instruct", 32, 32, 444),
    ("Llama-3-8B-Instruct-Gradient-1048k", 32, 8, 207),
    ("Mistral-7B-Instruct-v0.2", 32, 8, 244),
];
const RUN: &str = "lr=0.02-reg=0.05-ctx=1000_32000-multi_passkey10";

/// The official patterns, vendored in the repository's `data/duo-patterns` (MIT licence).
fn shared_patterns() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/duo-patterns")
}

/// SplitMix64 written out from its published definition (the documented tie-break order).
fn splitmix64(i: usize) -> u64 {
    let mut z = (i as u64).wrapping_add(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

/// Gates as this test reads them: whitespace-separated, clipped to [0, 1], row-major.
fn independent_gates(dir: &Path) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(dir.join("full_attention_heads.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split('\t')
                .map(|v| v.trim().parse::<f64>().unwrap().clamp(0.0, 1.0))
                .collect()
        })
        .collect()
}

/// Retrieval count per layer at sparsity `s`: sort (gate, splitmix64(index)) pairs, keep the
/// top `n - round(s·n)`.
fn independent_sparsity(gates: &[Vec<f64>], s: f64) -> Vec<usize> {
    let mut all: Vec<(f64, u64, usize)> = Vec::new(); // (gate, tie key, layer)
    for (l, row) in gates.iter().enumerate() {
        for (h, &g) in row.iter().enumerate() {
            all.push((g, splitmix64(l * row.len() + h), l));
        }
    }
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let streaming = (s * all.len() as f64).round() as usize;
    let mut per_layer = vec![0; gates.len()];
    for &(_, _, l) in &all[streaming..] {
        per_layer[l] += 1;
    }
    per_layer
}

#[test]
fn shared_patterns_match_an_independent_count() {
    let root = shared_patterns();
    for (model, layers, kv_heads, above_half) in MODELS {
        let dir = root.join(model).join(RUN);
        let p = DuoPattern::load(&dir).unwrap();
        assert_eq!((p.layers(), p.kv_heads()), (layers, kv_heads), "{model}");
        assert_eq!((p.sink_or(None), p.recent_or(None)), (128, 256), "{model}");
        let gates = independent_gates(&dir);
        let n = layers * kv_heads;

        // REFERENCE.md counts gates strictly above 0.5; the threshold keeps gates >= 0.5.
        let above = gates.iter().flatten().filter(|&&g| g > 0.5).count();
        assert_eq!(above, above_half, "{model}: gates above 0.5");
        let at_or_above: Vec<usize> = gates
            .iter()
            .map(|r| r.iter().filter(|&&g| g >= 0.5).count())
            .collect();
        let by_threshold = p.retrieval_per_layer(Selection::Threshold(0.5)).unwrap();
        assert_eq!(by_threshold, at_or_above, "{model}: threshold 0.5");
        let total: usize = by_threshold.iter().sum();
        eprintln!("{model}: threshold 0.5 -> {total} of {n} retrieval");

        for s in [0.5, 0.75] {
            let sel = Selection::Sparsity(s);
            let per_layer = p.retrieval_per_layer(sel).unwrap();
            assert_eq!(per_layer, independent_sparsity(&gates, s), "{model} s={s}");
            let retrieval: usize = per_layer.iter().sum();
            assert_eq!(
                retrieval,
                n - (s * n as f64).round() as usize,
                "{model} s={s}"
            );
            // Every streaming gate <= threshold <= every retrieval gate.
            let t = p.threshold(sel).unwrap();
            let (kinds, _) = p.select(sel).unwrap();
            for (i, &g) in p.gates().iter().enumerate() {
                assert!(if kinds[i] { g >= t } else { g <= t }, "{model} s={s}");
            }
            eprintln!("{model}: sparsity {s} -> {retrieval} retrieval, threshold {t}");
        }

        let plan = p
            .plan(layers - 1, Selection::Sparsity(0.5), 64, 256)
            .unwrap();
        assert_eq!(plan.kv_heads(), kv_heads);
        assert!(p.check_kv_heads(kv_heads).is_ok());
        let e = p.check_kv_heads(kv_heads * 2).unwrap_err();
        assert!(e.is_user_error());
        assert!(
            e.to_string()
                .contains(&format!("--kv-heads {}", kv_heads * 2)),
            "{e}"
        );
        let e = p
            .plan(layers, Selection::Sparsity(0.5), 64, 256)
            .unwrap_err();
        assert!(
            e.is_user_error() && e.to_string().contains("out of range"),
            "{e}"
        );
    }
}

fn load_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("full_attention_heads.tsv");
    std::fs::write(&file, text).unwrap();
    let e = DuoPattern::load(dir.path()).unwrap_err();
    assert!(matches!(e, Error::BadInput { .. }), "{e:?}");
    assert!(e.is_user_error());
    let shown = e.to_string();
    assert!(shown.contains(&file.display().to_string()), "{shown}");
    shown
}

#[test]
fn malformed_pattern_files_are_typed_errors() {
    let e = load_error("1.0\t0.5\n0.25\tx7\n");
    assert!(e.contains("line 2, column 2") && e.contains("x7"), "{e}");
    let e = load_error("");
    assert!(e.contains("empty"), "{e}");
    let e = load_error("1.0\tnan\n");
    assert!(e.contains("line 1, column 2") && e.contains("NaN"), "{e}");
    let e = load_error("1.0\t0.5\n0.25\n");
    assert!(e.contains("ragged"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let e = DuoPattern::load(&dir.path().join("nope")).unwrap_err();
    assert!(e.is_user_error() && e.to_string().contains("nope"), "{e}");

    // A file alone, with the wrong number of columns for the model.
    let file = dir.path().join("gates.tsv");
    std::fs::write(&file, "1.0 0.5 0.0 1.0\n").unwrap();
    let p = DuoPattern::load(&file).unwrap();
    let e = p.check_kv_heads(8).unwrap_err();
    assert!(e.to_string().contains("4 KV heads"), "{e}");
}
