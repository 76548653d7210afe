//! Seeded fuzzing of the `bench scaling` results file (`results.jsonl`): what `read_results`,
//! `record_key` and the plots' data make of valid files mutated line by line and byte by byte.
//!
//! results.jsonl is resumable by design: a line that is not a JSON object (cut short by a kill,
//! garbled) is skipped and counted, and its run is redone. Each case asserts: no panic; a file
//! that is not UTF-8 is refused (bad input, exit 2 in the CLI); otherwise the lines kept are
//! exactly the lines an independent reading parses as JSON objects, the skipped count is the
//! rest, and the identities and plot data of what was kept can be computed.
//!
//! `RINGATTN_FUZZ_CASES` sets the number of cases (default 2,000); `RINGATTN_FUZZ_SEED` the seed.

#[cfg(feature = "plot")]
use ringattn::plot::{balance_plot, scaling_plot};
use ringattn::results::{read_results, record_key};
use ringattn_testutil::fuzz::{cases, seed, Rng};
use serde_json::{json, Value};

/// One plausible run report line.
fn report(rng: &mut Rng) -> Value {
    let world = 1 + rng.below(4);
    let ranks: Vec<Value> = (0..world)
        .map(|r| {
            json!({"rank": r, "tokens": 100 + rng.below(1000), "compute_s": rng.below(100) as f64 / 10.0,
                   "comm_wait_s": 0.0, "idle_s": 0.0, "bytes_sent": rng.below(1 << 20),
                   "kv_bytes_peak": 1024, "threads": 1 + rng.below(2)})
        })
        .collect();
    let layout = ["contiguous", "striped", "zigzag"][rng.below(3)];
    let mode = ["strong", "weak"][rng.below(2)];
    json!({
        "version": 1, "backend": "local", "world": world,
        "layout": layout, "layout_reason": "fuzz",
        "seq": 1024 << rng.below(4), "heads": 8, "kv_heads": 8, "head_dim": 64,
        "causal": rng.below(2) == 1, "dtype": "f32", "duo": null,
        "wall_s": 0.1 + rng.below(100) as f64 / 100.0, "flops": 1e9, "gflops": 10.0,
        "imbalance": 1.0 + rng.below(50) as f64 / 100.0, "overlap": 1.0, "ranks": ranks,
        "check": null, "sweep": {"mode": mode, "base_seq": 1024, "cores": 2}
    })
}

/// A structural mutation of one line's JSON (wrong types, missing or absurd fields).
fn mutate_value(rng: &mut Rng, v: &mut Value) {
    let keys = [
        "world",
        "seq",
        "layout",
        "causal",
        "ranks",
        "wall_s",
        "gflops",
        "imbalance",
        "sweep",
        "duo",
        "heads",
    ];
    let key = keys[rng.below(keys.len())];
    v[key] = match rng.below(7) {
        0 => Value::Null,
        1 => json!(-1),
        2 => json!(u64::MAX),
        3 => json!("text"),
        4 => json!([1, 2, 3]),
        5 => json!({"retrieval_kv_heads": "x"}),
        _ => json!(1e308),
    };
    if rng.below(3) == 0 {
        if let Some(o) = v.as_object_mut() {
            o.remove(keys[rng.below(keys.len())]);
        }
    }
}

/// The file of one case: valid lines, some structurally mutated, then byte-level damage.
fn case_bytes(rng: &mut Rng) -> Vec<u8> {
    let mut text = String::new();
    for _ in 0..rng.below(6) {
        let mut v = report(rng);
        if rng.below(2) == 0 {
            mutate_value(rng, &mut v);
        }
        text.push_str(&v.to_string());
        text.push('\n');
    }
    let mut bytes = text.into_bytes();
    for _ in 0..rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(4) {
            0 if at < bytes.len() => bytes[at] = (rng.next_u64() & 0xff) as u8,
            1 => bytes.truncate(at),
            2 => bytes.insert(at, b"{}\n\"[,:0xA"[rng.below(10)]),
            _ if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => {}
        }
    }
    bytes
}

#[test]
fn mutated_results_files_are_read_as_an_independent_reading_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("results.jsonl");
    let mut rng = Rng(seed(0x7e5_0175));
    for case in 0..cases(2000) {
        let bytes = case_bytes(&mut rng);
        std::fs::write(&path, &bytes).expect("write");
        let got = read_results(&path);
        let Ok(text) = std::str::from_utf8(&bytes) else {
            let e = got.expect_err("non-UTF-8 must be refused");
            assert!(e.is_user_error(), "case {case}: {e}");
            continue;
        };
        let (values, bad) = got.unwrap_or_else(|e| panic!("case {case}: {e}"));
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let want: Vec<Value> = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect();
        assert_eq!(values, want, "case {case}");
        assert_eq!(bad, lines.len() - want.len(), "case {case}");
        for v in &values {
            let _ = record_key(v);
        }
        #[cfg(feature = "plot")]
        {
            let _ = scaling_plot(&values);
            let _ = balance_plot(&values);
        }
    }
}
