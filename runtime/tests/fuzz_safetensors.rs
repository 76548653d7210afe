//! Seeded, deterministic fuzzing of the safetensors input loader (`io::FileSource::open`).
//!
//! Valid Q/K/V files (random shapes, extra tensors of other dtypes, random order, optional
//! `__metadata__`) are mutated at the byte level (flips, inserts, deletes, truncation, trailing
//! bytes, header-length rewrites) and structurally (header JSON: offsets wrapped around 2^64,
//! overlapping, gapped, swapped; shapes, dtypes, missing tensors, bad metadata). Each case
//! asserts: no panic, and `Ok` exactly when the file is valid by an independent oracle (the
//! `safetensors` crate's own `SafeTensors::deserialize` plus ringattn's q/k/v rules); every row
//! of an accepted file reads back as the crate sees it.
//!
//! `RINGATTN_FUZZ_CASES` sets the number of cases (default 2,000); `RINGATTN_FUZZ_SEED` the seed.

use std::path::Path;
use std::time::Duration;

use ringattn_runtime::io::FileSource;
use ringattn_runtime::{Error, RowSource, TensorKind};
use ringattn_testutil::fuzz::{cases, seed, Rng};
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use serde_json::{json, Map, Value};

/// Default cases per run and seed (see `ringattn_testutil::fuzz`).
const CASES: usize = 2000;
const SEED: u64 = 0x5afe_7e45;

/// Cases per run: `RINGATTN_FUZZ_CASES` or 2,000.
/// A tensor of a file being built: name, dtype, shape, raw bytes.
struct Part {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn f32_part(rng: &mut Rng, name: &str, shape: Vec<usize>) -> Part {
    let n: usize = shape.iter().product();
    let bytes = (0..n)
        .flat_map(|_| ((rng.next_u64() % 2001) as f32 / 100.0 - 10.0).to_le_bytes())
        .collect();
    Part {
        name: name.into(),
        dtype: "F32",
        shape,
        bytes,
    }
}

/// A valid q/k/v file's tensors (maybe with extras), in random order.
fn valid_parts(rng: &mut Rng) -> Vec<Part> {
    let kv_heads = 1 + rng.below(3);
    let heads = kv_heads * (1 + rng.below(3));
    let (seq, dim) = (1 + rng.below(6), 1 + rng.below(5));
    let mut parts = vec![
        f32_part(rng, "q", vec![heads, seq, dim]),
        f32_part(rng, "k", vec![kv_heads, seq, dim]),
        f32_part(rng, "v", vec![kv_heads, seq, dim]),
    ];
    if rng.chance(3) {
        let n = rng.below(5);
        parts.push(Part {
            name: "extra".into(),
            dtype: ["I32", "U8", "F16", "BF16", "F64"][rng.below(5)],
            shape: vec![n, 2],
            bytes: vec![7; 0],
        });
        let last = parts.last_mut().unwrap();
        let size = match last.dtype {
            "U8" => 1,
            "F16" | "BF16" => 2,
            "F64" => 8,
            _ => 4,
        };
        last.bytes = vec![0x3c; n * 2 * size];
    }
    // Random order of data in the file.
    for i in (1..parts.len()).rev() {
        parts.swap(i, rng.below(i + 1));
    }
    parts
}

/// The header object and the data of `parts`, laid out contiguously in order.
fn header_and_data(rng: &mut Rng, parts: &[Part]) -> (Map<String, Value>, Vec<u8>) {
    let mut header = Map::new();
    if rng.chance(3) {
        header.insert("__metadata__".into(), json!({"format": "pt"}));
    }
    let mut data = Vec::new();
    for p in parts {
        let begin = data.len();
        data.extend_from_slice(&p.bytes);
        header.insert(
            p.name.clone(),
            json!({"dtype": p.dtype, "shape": p.shape, "data_offsets": [begin, data.len()]}),
        );
    }
    (header, data)
}

fn assemble(header: &Value, data: &[u8], pad: usize) -> Vec<u8> {
    let mut text = serde_json::to_vec(header).unwrap();
    text.extend(std::iter::repeat_n(b' ', pad));
    let mut file = (text.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&text);
    file.extend_from_slice(data);
    file
}

/// One structural mutation of the header (or the data length).
fn mutate_structure(rng: &mut Rng, header: &mut Map<String, Value>, data: &mut Vec<u8>) {
    let names: Vec<String> = header
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    let name = names[rng.below(names.len())].clone();
    let entry = header.get_mut(&name).unwrap();
    let off = |e: &Value, i: usize| e["data_offsets"][i].as_u64().unwrap_or(0);
    match rng.below(14) {
        // Wrap-around: begin near 2^64 (q read from the header bytes in the old loader).
        0 => {
            let (b, e) = (off(entry, 0), off(entry, 1));
            let wrap = u64::MAX - rng.below(64) as u64;
            entry["data_offsets"] = json!([b.wrapping_add(wrap), e.wrapping_add(wrap)]);
        }
        1 => {
            let (b, e) = (off(entry, 0), off(entry, 1));
            let d = 1 + rng.below(8) as u64;
            entry["data_offsets"] = json!([b.saturating_sub(d), e.saturating_sub(d)]);
        }
        2 => {
            let (b, e) = (off(entry, 0), off(entry, 1));
            let d = 1 + rng.below(8) as u64;
            entry["data_offsets"] = json!([b + d, e + d]);
        }
        3 => {
            let (b, e) = (off(entry, 0), off(entry, 1));
            entry["data_offsets"] = json!([e, b]);
        }
        4 => entry["data_offsets"] = json!([off(entry, 0), off(entry, 1) + 4]),
        5 => {
            let dims = entry["shape"].as_array().unwrap().len();
            if dims > 0 {
                let i = rng.below(dims);
                entry["shape"][i] = json!(rng.below(4));
            }
        }
        6 => entry["shape"] = json!([entry["shape"][0], 1]),
        7 => entry["dtype"] = json!(["I32", "F64", "BF16", "U32", "F32", "X9"][rng.below(6)]),
        8 => {
            header.remove(&name);
        }
        9 => {
            header.insert("__metadata__".into(), json!({"n": rng.below(3)}));
        }
        10 => data.extend(std::iter::repeat_n(0u8, 1 + rng.below(8))),
        11 => {
            let cut = 1 + rng.below(8).min(data.len());
            data.truncate(data.len() - cut.min(data.len()));
        }
        12 => entry["shape"] = json!([usize::MAX, 2, 1usize << 63]),
        _ => entry["data_offsets"] = json!([off(entry, 0)]),
    }
}

/// One byte-level mutation.
fn mutate_bytes(rng: &mut Rng, file: &mut Vec<u8>) {
    let n = file.len();
    match rng.below(7) {
        0 => {
            let i = rng.below(n);
            file[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = rng.below(n + 1);
            file.insert(i, rng.next_u64() as u8);
        }
        2 => {
            if n > 0 {
                file.remove(rng.below(n));
            }
        }
        3 => file.truncate(rng.below(n)),
        4 => file.extend((0..1 + rng.below(9)).map(|_| rng.next_u64() as u8)),
        5 => {
            let len = [
                0u64,
                1,
                7,
                u64::MAX,
                u64::MAX - 7,
                (n as u64) * 2,
                100_000_001,
            ];
            file[..8.min(n)].copy_from_slice(&len[rng.below(len.len())].to_le_bytes()[..8.min(n)]);
        }
        _ => {
            // Overwrite one header byte with a JSON-significant character.
            let i = 8 + rng.below(n.saturating_sub(8));
            if i < n {
                file[i] = b"{}[],:\"0-9 e"[rng.below(12)];
            }
        }
    }
}

/// The oracle, independent of the loader: the crate accepts the whole buffer, and q/k/v are
/// present, f32, rank 3 without empty dims, with matching seq/dim, k == v, heads divisible.
fn oracle(bytes: &[u8]) -> bool {
    let Ok(st) = SafeTensors::deserialize(bytes) else {
        return false;
    };
    let mut shapes = Vec::new();
    for name in ["q", "k", "v"] {
        let Ok(t) = st.tensor(name) else {
            return false;
        };
        if t.dtype() != Dtype::F32 || t.shape().len() != 3 || t.shape().contains(&0) {
            return false;
        }
        shapes.push(t.shape().to_vec());
    }
    let (q, k, v) = (&shapes[0], &shapes[1], &shapes[2]);
    k == v && q[1] == k[1] && q[2] == k[2] && q[0] % k[0] == 0
}

/// Every row of an accepted file equals the crate's view of it.
fn rows_match(src: &FileSource, bytes: &[u8]) {
    let st = SafeTensors::deserialize(bytes).unwrap();
    for (kind, name) in [
        (TensorKind::Q, "q"),
        (TensorKind::K, "k"),
        (TensorKind::V, "v"),
    ] {
        let t = st.tensor(name).unwrap();
        let (heads, seq, dim) = (t.shape()[0], t.shape()[1], t.shape()[2]);
        let want: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mut row = vec![0.0f32; dim];
        for h in 0..heads {
            for p in 0..seq {
                src.fill_row(kind, h, p, &mut row).unwrap();
                let at = (h * seq + p) * dim;
                assert_eq!(
                    row.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    want[at..at + dim]
                        .iter()
                        .map(|x| x.to_bits())
                        .collect::<Vec<_>>()
                );
            }
        }
    }
}

fn check_case(path: &Path, bytes: &[u8], case: usize) {
    std::fs::write(path, bytes).unwrap();
    let valid = oracle(bytes);
    match FileSource::open(path) {
        Ok(src) => {
            assert!(valid, "case {case}: loader accepted an invalid file");
            rows_match(&src, bytes);
        }
        Err(e) => {
            assert!(!valid, "case {case}: loader rejected a valid file: {e}");
            assert!(
                matches!(e, Error::BadInput { .. }),
                "case {case}: not a bad-input error: {e}"
            );
        }
    }
}

#[test]
fn fuzzed_safetensors_inputs_are_accepted_exactly_when_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.safetensors");
    let mut rng = Rng(seed(SEED));
    let (mut accepted, mut rejected) = (0, 0);
    for case in 0..cases(CASES) {
        let parts = valid_parts(&mut rng);
        let (mut header, mut data) = header_and_data(&mut rng, &parts);
        let structural = rng.below(3);
        for _ in 0..structural {
            mutate_structure(&mut rng, &mut header, &mut data);
        }
        let pad = if rng.chance(4) { rng.below(9) } else { 0 };
        let mut file = assemble(&Value::Object(header), &data, pad);
        if structural == 0 || rng.chance(3) {
            for _ in 0..rng.below(3) {
                mutate_bytes(&mut rng, &mut file);
            }
        }
        check_case(&path, &file, case);
        if oracle(&file) {
            accepted += 1;
        } else {
            rejected += 1;
        }
    }
    // The generator reaches both sides of the oracle.
    assert!(
        accepted > cases(CASES) / 20 && rejected > cases(CASES) / 4,
        "{accepted} ok, {rejected} bad"
    );
}

/// Hand-written cases of the issue: wrap-around, overlap, gap, trailing bytes, truncation.
#[test]
fn named_malformations_are_rejected_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.safetensors");
    let mut rng = Rng(1);
    let parts = vec![
        f32_part(&mut rng, "q", vec![2, 3, 4]),
        f32_part(&mut rng, "k", vec![1, 3, 4]),
        f32_part(&mut rng, "v", vec![1, 3, 4]),
    ];
    let (header, data) = header_and_data(&mut Rng(3), &parts);
    let good = assemble(&Value::Object(header.clone()), &data, 0);
    check_case(&path, &good, 0);
    let with = |f: &dyn Fn(&mut Map<String, Value>)| {
        let mut h = header.clone();
        f(&mut h);
        assemble(&Value::Object(h), &data, 0)
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            with(&|h| h["q"]["data_offsets"] = json!([u64::MAX - 7, 88u64])),
            "data_offsets",
        ),
        (
            with(&|h| h["k"]["data_offsets"] = json!([90, 138])),
            "contiguous",
        ),
        (
            with(&|h| h["v"]["data_offsets"] = json!([150, 198])),
            "contiguous",
        ),
        (
            {
                let mut f = good.clone();
                f.extend_from_slice(&[0; 4]);
                f
            },
            "trailing bytes",
        ),
        (good[..good.len() - 3].to_vec(), "past the end of the file"),
        (with(&|h| h["v"]["dtype"] = json!("I32")), "tensor `v`"),
    ];
    for (i, (bytes, fragment)) in cases.iter().enumerate() {
        std::fs::write(&path, bytes).unwrap();
        assert!(!oracle(bytes), "case {i} should be invalid");
        let err = FileSource::open(&path).unwrap_err();
        assert!(
            err.is_user_error() && err.to_string().contains(fragment),
            "case {i}: {err}"
        );
    }
}

/// A directory or a FIFO is bad input, and a FIFO with no writer does not block the open.
#[test]
fn non_regular_inputs_are_bad_input_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let err = FileSource::open(dir.path()).unwrap_err();
    assert!(
        err.is_user_error() && err.to_string().contains("directory"),
        "{err}"
    );
    let fifo = dir.path().join("fifo.safetensors");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("mkfifo unavailable: FIFO case skipped");
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(FileSource::open(&path).map(|_| ()));
    });
    // Generous: a correct loader answers at once; only a blocked open waits this long.
    let got = rx.recv_timeout(Duration::from_secs(60));
    if got.is_err() {
        // Unblock the opener so the test process can exit, then fail.
        let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
        panic!("opening a FIFO blocked");
    }
    let err = got.unwrap().unwrap_err();
    assert!(
        err.is_user_error() && err.to_string().contains("FIFO"),
        "{err}"
    );
}
