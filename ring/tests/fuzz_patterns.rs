//! Seeded, deterministic fuzzing of the DuoAttention pattern loader (`DuoPattern::load` on a
//! directory with `full_attention_heads.tsv` and `config.json`).
//!
//! Valid directories (random layers × KV heads, gates in several spellings, comments, blank
//! lines, CRLF, config with plain and `deploy_` sizes) are mutated structurally (ragged rows,
//! non-numbers, NaN/inf, empty, missing or non-regular files, configs that are not objects or
//! hold negative, fractional, string or huge sizes) and byte by byte. Each case asserts: no
//! panic, and `Ok` exactly when an independent reading of the format accepts — with the same
//! gates and sizes.
//!
//! `RINGATTN_FUZZ_CASES` sets the number of cases (default 2,000); `RINGATTN_FUZZ_SEED` the seed.

use std::path::Path;

use ringattn_ring::duo::pattern::DuoPattern;
use ringattn_testutil::fuzz::{cases, seed, Rng};
use serde_json::Value;

/// Default cases per run and seed (see `ringattn_testutil::fuzz`).
const CASES: usize = 2000;
const SEED: u64 = 0x00d0_a77e;

/// A gate in one of the spellings the official files and hand edits use.
fn gate(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => format!("{:.6}", rng.below(1_000_001) as f64 / 1e6),
        1 => rng.pick(&["0", "1", "0.5", "1.0", "0.0"]).to_string(),
        2 => format!("{:e}", rng.below(1000) as f64 / 997.0),
        3 => format!("-{}", rng.below(5)),
        4 => format!("{}.25", rng.below(3)),
        _ => format!("{}", rng.next_u64() as f64 / u64::MAX as f64),
    }
}

fn valid_tsv(rng: &mut Rng) -> String {
    let (layers, heads) = (1 + rng.below(6), 1 + rng.below(6));
    let nl = if rng.below(4) == 0 { "\r\n" } else { "\n" };
    let mut text = String::new();
    if rng.below(4) == 0 {
        text.push_str("# gates");
        text.push_str(nl);
    }
    for _ in 0..layers {
        let sep = rng.pick(&["\t", " ", "\t "]);
        let row: Vec<String> = (0..heads).map(|_| gate(rng)).collect();
        text.push_str(&row.join(sep));
        text.push_str(nl);
        if rng.below(8) == 0 {
            text.push_str(nl);
        }
    }
    text
}

fn valid_config(rng: &mut Rng) -> Option<String> {
    if rng.below(4) == 0 {
        return None;
    }
    let mut obj = serde_json::Map::new();
    for key in [
        "sink_size",
        "recent_size",
        "deploy_sink_size",
        "deploy_recent_size",
    ] {
        match rng.below(4) {
            0 => {}
            1 => {
                obj.insert(key.into(), Value::Null);
            }
            _ => {
                obj.insert(key.into(), Value::from(rng.below(5000) as u64));
            }
        }
    }
    obj.insert("lr".into(), Value::from(0.02));
    Some(Value::Object(obj).to_string())
}

fn mutate_tsv(rng: &mut Rng, text: &mut String) {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let i = rng.below(lines.len());
    match rng.below(8) {
        0 => lines[i].push_str("\t0.5"),
        1 => {
            lines[i] = lines[i]
                .split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .join("\t")
        }
        2 => {
            lines[i] = format!(
                "{}\t{}",
                lines[i],
                rng.pick(&["NaN", "inf", "-inf", "x", "1e999", "0x1", "1,5"])
            )
        }
        3 => lines[i] = lines[i].replacen(char::is_numeric, "", 1),
        4 => lines.clear(),
        5 => lines = vec!["# only a comment".into(), "   ".into()],
        6 => lines.insert(i, lines[i].clone()),
        _ => {
            lines[i] = rng
                .pick(&["infinity", "-0", "+1", ".5", "5.", "1e-400"])
                .into()
        }
    }
    *text = lines.join("\n");
}

fn mutate_config(rng: &mut Rng, config: &mut Option<String>) {
    let key = rng.pick(&[
        "sink_size",
        "recent_size",
        "deploy_sink_size",
        "deploy_recent_size",
    ]);
    let value = rng.pick(&[
        "-1",
        "1.5",
        "\"64\"",
        "18446744073709551615",
        "18446744073709551616",
        "1e3",
        "true",
        "[]",
        "0",
    ]);
    *config = Some(match rng.below(5) {
        0 => format!("{{\"{key}\": {value}}}"),
        1 => rng
            .pick(&["[1, 2]", "42", "\"x\"", "null", "", "{", "true"])
            .into(),
        2 => format!("{{\"{key}\": 8, \"{key}\": {value}}}"),
        3 => "{\"sink_size\": 4, \"recent_size\": 256} trailing".into(),
        _ => format!("{{\"sink_size\": 4, \"{key}\": {value}, \"x\": {{}}}}"),
    });
}

fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        bytes.push(rng.next_u64() as u8);
        return;
    }
    let i = rng.below(bytes.len());
    match rng.below(4) {
        0 => bytes[i] ^= 1 << rng.below(8),
        1 => bytes.insert(i, b"\t\n#-.e9\xff\x00"[rng.below(9)]),
        2 => {
            bytes.remove(i);
        }
        _ => bytes.truncate(i),
    }
}

/// What an independent reading of the format accepts: (gates row-major clipped, layers,
/// heads, sink, recent) or `None`.
type Parsed = (Vec<f64>, usize, usize, Option<usize>, Option<usize>);

fn oracle(tsv: &[u8], config: Option<&[u8]>) -> Option<Parsed> {
    let text = std::str::from_utf8(tsv).ok()?;
    let mut gates = Vec::new();
    let mut widths = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let row: Vec<f64> = t
            .split_whitespace()
            .map(|f| f.parse::<f64>().ok().filter(|g| g.is_finite()))
            .collect::<Option<_>>()?;
        widths.push(row.len());
        gates.extend(row.iter().map(|g| g.clamp(0.0, 1.0)));
    }
    if widths.is_empty() || widths.iter().any(|&w| w != widths[0]) {
        return None;
    }
    let (mut sink, mut recent) = (None, None);
    if let Some(bytes) = config {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        let obj = v.as_object()?;
        let size = |k: &str| -> Option<Option<usize>> {
            match obj.get(k) {
                None | Some(Value::Null) => Some(None),
                Some(x) => x.as_u64().map(|n| Some(n as usize)),
            }
        };
        sink = size("deploy_sink_size")?.or(size("sink_size")?);
        recent = size("deploy_recent_size")?.or(size("recent_size")?);
    }
    Some((gates, widths.len(), widths[0], sink, recent))
}

fn check_case(dir: &Path, tsv: &[u8], config: Option<&[u8]>, case: usize) {
    let tsv_path = dir.join("full_attention_heads.tsv");
    let config_path = dir.join("config.json");
    std::fs::write(&tsv_path, tsv).unwrap();
    match config {
        Some(c) => std::fs::write(&config_path, c).unwrap(),
        None => {
            let _ = std::fs::remove_file(&config_path);
        }
    }
    let want = oracle(tsv, config);
    match (DuoPattern::load(dir), want) {
        (Ok(p), Some((gates, layers, heads, sink, recent))) => {
            assert_eq!((p.layers(), p.kv_heads()), (layers, heads), "case {case}");
            assert_eq!(p.gates(), &gates[..], "case {case}");
            assert_eq!(
                (p.config_sink(), p.config_recent()),
                (sink, recent),
                "case {case}"
            );
        }
        (Err(e), None) => assert!(e.is_user_error(), "case {case}: {e}"),
        (Ok(_), None) => panic!(
            "case {case}: accepted an invalid pattern {:?}",
            String::from_utf8_lossy(tsv)
        ),
        (Err(e), Some(_)) => panic!("case {case}: rejected a valid pattern: {e}"),
    }
}

#[test]
fn fuzzed_pattern_directories_load_exactly_when_valid() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed(SEED));
    let (mut ok, mut bad) = (0, 0);
    for case in 0..cases(CASES) {
        let mut tsv = valid_tsv(&mut rng);
        let mut config = valid_config(&mut rng);
        match rng.below(4) {
            0 => mutate_tsv(&mut rng, &mut tsv),
            1 => mutate_config(&mut rng, &mut config),
            _ => {}
        }
        let mut tsv = tsv.into_bytes();
        let mut config = config.map(String::into_bytes);
        if rng.below(3) == 0 {
            match (rng.below(2), config.as_mut()) {
                (0, Some(c)) => mutate_bytes(&mut rng, c),
                _ => mutate_bytes(&mut rng, &mut tsv),
            }
        }
        check_case(dir.path(), &tsv, config.as_deref(), case);
        if oracle(&tsv, config.as_deref()).is_some() {
            ok += 1;
        } else {
            bad += 1;
        }
    }
    assert!(
        ok > cases(CASES) / 5 && bad > cases(CASES) / 10,
        "{ok} valid, {bad} invalid"
    );
}

/// Non-regular pattern files are bad input, never a blocked read.
#[test]
fn fifo_and_directory_pattern_files_are_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("full_attention_heads.tsv");
    std::fs::create_dir(&tsv).unwrap();
    assert!(DuoPattern::load(dir.path()).unwrap_err().is_user_error());
    std::fs::remove_dir(&tsv).unwrap();
    let made = std::process::Command::new("mkfifo").arg(&tsv).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("mkfifo unavailable: FIFO cases skipped");
        return;
    }
    // Each load runs on a thread; a blocked one is unblocked and fails the test.
    let load = |path: std::path::PathBuf, fifo: std::path::PathBuf| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(DuoPattern::load(&path).map(|_| ()));
        });
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(r) => r,
            Err(_) => {
                let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
                panic!("loading blocked on {}", fifo.display());
            }
        }
    };
    let err = load(dir.path().to_path_buf(), tsv.clone()).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let err = load(tsv.clone(), tsv.clone()).unwrap_err();
    assert!(err.is_user_error(), "{err}");
    std::fs::remove_file(&tsv).unwrap();
    std::fs::write(&tsv, "1\t0\n").unwrap();
    let config = dir.path().join("config.json");
    std::process::Command::new("mkfifo")
        .arg(&config)
        .status()
        .unwrap();
    let err = load(dir.path().to_path_buf(), config).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}
