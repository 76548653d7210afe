//! DuoAttention evaluation on the real model at tiny sizes: sparsity 0 through a pattern is
//! bitwise full attention; a streaming head's cache never exceeds sink + recent (plus the
//! append slot); the passkey
//! haystack builder fits its budget and puts the needle at its depth; a killed passkey grid
//! resumes without repeating a trial.

mod common;

use ringattn_model::eval::haystack::{passkey_of, passkey_prompt};
use ringattn_model::eval::passkey::{load_results, run_passkey, Heads, PasskeySpec};
use ringattn_model::eval::random::write_random_pattern;
use ringattn_model::{default_model_path, generate_with, DuoSource, GenerateReport, GenerateSpec};
use ringattn_ring::Selection;

fn prompt() -> String {
    let mut s = String::from("Numbers and their successors.\n");
    for i in 0..30 {
        s.push_str(&format!("After {i} comes {}.\n", i + 1));
    }
    s.push_str("After 30 comes");
    s
}

fn pattern_source(dir: &std::path::Path, sparsity: f64) -> DuoSource {
    DuoSource::Pattern {
        path: dir.to_path_buf(),
        selection: Selection::Sparsity(sparsity),
        sink: None,
        recent: None,
    }
}

#[test]
fn sparsity_zero_through_a_pattern_is_bitwise_full_attention() {
    let Some(model) = common::model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pat = write_random_pattern(dir.path(), 5, 30, 3, 4, 16).unwrap();
    let mut spec = GenerateSpec::new(default_model_path(), &prompt(), 5, 2);
    let full = generate_with(model, &spec, &mut |_, _| {}).unwrap();
    spec.duo = Some(pattern_source(&pat, 0.0));
    let duo = generate_with(model, &spec, &mut |_, _| {}).unwrap();
    assert_eq!(duo.token_ids, full.token_ids);
    let bits = |r: &GenerateReport| {
        r.prompt_logits
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&duo), bits(&full), "prompt logits differ");
    assert_eq!(duo.duo.as_ref().unwrap().streaming_kv_heads, 0);
}

#[test]
fn a_streaming_heads_cache_never_exceeds_sink_plus_recent() {
    let Some(model) = common::model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (sink, recent) = (4, 16);
    let pat = write_random_pattern(dir.path(), 5, 30, 3, sink, recent).unwrap();
    let (layers, kv_heads, d, f32_bytes) = (30u64, 3u64, 64u64, 4u64);
    for world in [1, 2] {
        let mut spec = GenerateSpec::new(default_model_path(), &prompt(), 8, world);
        spec.ignore_eos = true;
        spec.duo = Some(pattern_source(&pat, 1.0));
        let rep = generate_with(model, &spec, &mut |_, _| {}).unwrap();
        assert!(
            rep.prompt_tokens > 4 * (sink + recent),
            "{}",
            rep.prompt_tokens
        );
        // Per rank (each rank allocates its own window; the rows held across ranks are the
        // window once). The cache allocates sink + recent rows plus the one slot a new token is appended to
        // before the window is cut back (DistKvCache::append): never more, whatever the prompt.
        let bound = layers * kv_heads * (sink + recent + 1) as u64 * 2 * d * f32_bytes;
        for r in &rep.ranks {
            let held = r.kv_bytes;
            assert!(
                held <= bound,
                "world {world}: {held} bytes > sink + recent (+1) = {bound}"
            );
        }
        let held: u64 = rep.ranks.iter().map(|r| r.kv_bytes).sum();
        let full = layers * kv_heads * (rep.prompt_tokens as u64 + 8) * 2 * d * f32_bytes;
        assert!(held * 4 < full);
    }
}

#[test]
fn the_haystack_fits_its_budget_and_the_needle_sits_at_its_depth() {
    let Some(model) = common::model() else { return };
    let key = passkey_of(0, 0);
    for context in [128, 512] {
        let mut at = Vec::new();
        for depth in [0.0, 0.5, 1.0] {
            let h = passkey_prompt(&model.tokenizer, context, depth, &key).unwrap();
            assert!(
                h.ids.len() <= context && h.ids.len() + 16 > context,
                "{}",
                h.ids.len()
            );
            assert_eq!(model.tokenizer.encode(&h.text).unwrap(), h.ids);
            assert!(h.text.ends_with("The pass key is"));
            at.push(h.text.find(&key).unwrap() as f64 / h.text.len() as f64);
        }
        assert!(
            at[0] < 0.35 && at[0] < at[1] && at[1] < at[2] && at[2] > 0.6,
            "{at:?}"
        );
    }
    assert!(passkey_prompt(&model.tokenizer, 20, 0.5, &key).is_err());
}

#[test]
fn a_killed_grid_resumes_without_repeating_trials() {
    let Some(model) = common::model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let spec = PasskeySpec {
        heads: Heads::Random(1),
        sparsities: vec![0.0, 0.5],
        contexts: vec![128],
        depths: vec![0.0, 1.0],
        trials: 2,
        seed: 9,
        world: 1,
        threads_per_rank: 1,
        sink: Some(4),
        recent: Some(16),
        out: dir.path().to_path_buf(),
        max_tokens: 4,
        pin: false,
    };
    // A stand-in for generation that answers the trial's key and counts the runs.
    let mut runs = 0;
    let mut fake = |g: &GenerateSpec| {
        runs += 1;
        let key = (0..2)
            .map(|t| passkey_of(9, t))
            .find(|k| g.prompt.contains(k.as_str()));
        Ok(GenerateReport {
            text: format!(" {}.", key.unwrap()),
            prompt_tokens: 100,
            world: 1,
            ..Default::default()
        })
    };
    let path = default_model_path();
    let all = run_passkey(model, &path, &spec, &mut fake, true, &mut |_, _, _| {}).unwrap();
    assert_eq!(all.len(), 8);
    assert!(all
        .iter()
        .all(|r| r.correct == 1 && r.selection == "random:1"));
    let file = dir.path().join("results.jsonl");
    // Kill mid-write: the last line is torn.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, &text[..text.len() - 10]).unwrap();
    let mut runs2 = 0;
    let mut count = |g: &GenerateSpec| {
        runs2 += 1;
        fake(g)
    };
    let again = run_passkey(model, &path, &spec, &mut count, true, &mut |_, _, _| {}).unwrap();
    assert_eq!(runs2, 1, "only the torn trial reruns");
    assert_eq!(again.len(), 8);
    assert_eq!(load_results(&file).unwrap().len(), 8);
    assert_eq!(runs, 9);
}

#[test]
fn a_ring_of_ranks_walks_the_grid_and_only_rank_0_writes_and_reports() {
    use ringattn_model::eval::passkey::run_passkey_rank;
    let Some(model) = common::model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let spec = PasskeySpec {
        heads: Heads::Full,
        sparsities: vec![0.0],
        contexts: vec![128],
        depths: vec![0.5],
        trials: 1,
        seed: 3,
        world: 2,
        threads_per_rank: 1,
        sink: None,
        recent: None,
        out: dir.path().to_path_buf(),
        max_tokens: 4,
        pin: false,
    };
    let path = default_model_path();
    let ranks: Vec<(usize, Vec<_>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = ringattn_runtime::local::local_world(2)
            .into_iter()
            .map(|mut comm| {
                let (spec, path) = (&spec, &path);
                s.spawn(move || {
                    let mut seen = 0;
                    let rank = ringattn_runtime::Comm::rank(&comm);
                    let r =
                        run_passkey_rank(model, path, spec, &mut comm, &mut |_, _, _| seen += 1)
                            .unwrap();
                    (rank, r, seen)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let root = ranks.iter().find(|r| r.0 == 0).unwrap();
    let other = ranks.iter().find(|r| r.0 == 1).unwrap();
    assert_eq!(
        (root.1.len(), root.2),
        (1, 1),
        "rank 0 ran and reported the trial"
    );
    assert_eq!(other.2, 0, "rank 1 reports nothing");
    assert_eq!(root.1[0].world, 2);
    let lines = std::fs::read_to_string(dir.path().join("results.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 1, "one line, written once: {lines}");
}
