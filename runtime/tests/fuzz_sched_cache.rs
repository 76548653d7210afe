//! Seeded, deterministic fuzzing of the scheduler's ratio cache loader (`CacheFile::load`,
//! then `RatioTable::set` and `Scheduler::new` on what it loaded).
//!
//! Valid cache files (random core sets, classes and ratios) are mutated structurally (wrong
//! types, negative / zero / huge / non-finite-looking ratios, wrong lengths, missing fields,
//! non-objects) and byte by byte. The cache is only a warm start, so a file that is not valid
//! loads as the empty cache; each case asserts: no panic, the loaded content equals an
//! independent reading of the file when valid and is empty otherwise, and the ratio table
//! takes only positive finite ratios of the right length.
//!
//! `RINGATTN_FUZZ_CASES` sets the number of cases (default 2,000); `RINGATTN_FUZZ_SEED` the seed.

use std::collections::BTreeMap;

use ringattn_runtime::sched::ratios::{CacheFile, RatioTable};
use ringattn_runtime::{SchedConfig, SchedKind, Scheduler};
use ringattn_testutil::fuzz::{cases, seed, Rng};
use serde_json::{json, Value};

/// Default cases per run and seed (see `ringattn_testutil::fuzz`).
const CASES: usize = 2000;
const SEED: u64 = 0x0005_c4ed;

type Entries = BTreeMap<String, BTreeMap<String, Vec<f64>>>;

fn valid(rng: &mut Rng) -> Value {
    let mut entries = serde_json::Map::new();
    for _ in 0..rng.below(4) {
        let key = ["0-3", "unpinned-4", "0,2", "1"][rng.below(4)].to_string();
        let mut classes = serde_json::Map::new();
        for _ in 0..rng.below(4) {
            let class = ["attention-f32-avx512", "decode", "pack", "amx"][rng.below(4)];
            let n = 1 + rng.below(4);
            let ratios: Vec<f64> = (0..n)
                .map(|_| 0.1 + rng.below(1000) as f64 / 250.0)
                .collect();
            classes.insert(class.into(), json!(ratios));
        }
        entries.insert(key, Value::Object(classes));
    }
    json!({"version": 1, "entries": entries})
}

fn mutate(rng: &mut Rng, v: &mut Value) {
    let weird = [
        json!(-1.0),
        json!(0.0),
        json!(1e308),
        json!("1.0"),
        json!(null),
        json!([]),
        json!({}),
        json!(u64::MAX),
        json!(-5),
        json!(true),
    ];
    let w = weird[rng.below(weird.len())].clone();
    match rng.below(7) {
        0 => v["version"] = w,
        1 => {
            v.as_object_mut()
                .unwrap()
                .remove(["version", "entries"][rng.below(2)]);
        }
        2 => v["entries"] = w,
        3 => v["entries"]["0-3"] = w,
        4 => v["entries"]["0-3"] = json!({"decode": [1.0, w]}),
        5 => *v = w,
        _ => v["extra"] = w,
    }
}

fn mutate_bytes(rng: &mut Rng, b: &mut Vec<u8>) {
    if b.is_empty() {
        return;
    }
    let i = rng.below(b.len());
    match rng.below(4) {
        0 => b[i] ^= 1 << rng.below(8),
        1 => b.insert(i, b"{}[],:\"-e9\xff"[rng.below(11)]),
        2 => {
            b.remove(i);
        }
        _ => b.truncate(i),
    }
}

/// The independent reading: `version` a u32, `entries` an object of objects of arrays of
/// numbers (other fields ignored); `None` when the file is not that.
fn oracle(bytes: &[u8]) -> Option<(u32, Entries)> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let obj = v.as_object()?;
    let version = u32::try_from(obj.get("version")?.as_u64()?).ok()?;
    let mut entries = Entries::new();
    for (key, classes) in obj.get("entries")?.as_object()? {
        let mut map = BTreeMap::new();
        for (class, ratios) in classes.as_object()? {
            let r: Vec<f64> = ratios
                .as_array()?
                .iter()
                .map(Value::as_f64)
                .collect::<Option<_>>()?;
            map.insert(class.clone(), r);
        }
        entries.insert(key.clone(), map);
    }
    Some((version, entries))
}

#[test]
fn fuzzed_cache_files_load_exactly_when_valid_and_never_poison_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sched.json");
    let mut rng = Rng(seed(SEED));
    let (mut ok, mut bad) = (0, 0);
    for case in 0..cases(CASES) {
        let mut v = valid(&mut rng);
        if rng.below(2) == 0 {
            mutate(&mut rng, &mut v);
        }
        let mut bytes = serde_json::to_vec_pretty(&v).unwrap();
        if rng.below(3) == 0 {
            mutate_bytes(&mut rng, &mut bytes);
        }
        std::fs::write(&path, &bytes).unwrap();
        let loaded = CacheFile::load(&path);
        match oracle(&bytes) {
            Some((version, entries)) => {
                ok += 1;
                assert_eq!(
                    (loaded.version, &loaded.entries),
                    (version, &entries),
                    "case {case}"
                );
            }
            None => {
                bad += 1;
                assert!(loaded.entries.is_empty(), "case {case}: {loaded:?}");
            }
        }
        for classes in loaded.entries.values() {
            for (class, ratios) in classes {
                // Whatever the cache holds, the table keeps only positive finite ratios of
                // the right length (refused ones leave the initial ratios).
                {
                    let mut table = RatioTable::new(vec![1.0; 2], 0.3);
                    let _ = table.set(class, ratios);
                    let got = table.get(class);
                    assert_eq!(got.len(), 2);
                    assert!(
                        got.iter().all(|r| r.is_finite() && *r > 0.0),
                        "case {case}: {got:?}"
                    );
                }
            }
        }
    }
    assert!(
        ok > cases(CASES) / 5 && bad > cases(CASES) / 10,
        "{ok} valid, {bad} invalid"
    );
}

/// A hybrid scheduler starts on any cache file (it is only a warm start).
#[test]
fn scheduler_starts_on_any_cache_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sched.json");
    let mut rng = Rng(seed(SEED) ^ 1);
    for case in 0..40 {
        let mut v = valid(&mut rng);
        mutate(&mut rng, &mut v);
        if v["entries"].is_object() {
            let bad = [
                json!([-1.0, 1.0]),
                json!([0.0, 2.0]),
                json!([1.0]),
                json!([1.0, 2.0, 3.0]),
            ];
            v["entries"]["unpinned-2"] = json!({"decode": bad[case % bad.len()]});
        }
        let mut bytes = serde_json::to_vec(&v).unwrap();
        if case % 2 == 0 {
            mutate_bytes(&mut rng, &mut bytes);
        }
        std::fs::write(&path, &bytes).unwrap();
        let mut cfg = SchedConfig::new(SchedKind::Hybrid, 2, Vec::new());
        cfg.cache = Some(path.clone());
        let sched = Scheduler::new(cfg).unwrap();
        let r = sched.ratios("decode");
        assert!(
            r.iter().all(|x| x.is_finite() && *x > 0.0),
            "case {case}: {r:?}"
        );
    }
}

/// A cache entry like `[1.0, 1e308]` would normalise to `[2e-308, inf]` (or its sum overflow,
/// `[1e308, 1e308]`): `RatioTable::set` refuses it with a typed error and the class keeps its
/// ratios, so the scheduler never splits work by an infinite or subnormal ratio.
#[test]
fn ratios_whose_sum_overflows_are_refused() {
    use ringattn_runtime::sched::ratios::RatioError;
    let mut table = RatioTable::new(vec![1.0; 2], 0.3);
    for bad in [[1.0, 1e308], [1e308, 1e308], [f64::MIN_POSITIVE, 1e10]] {
        let e = table.set("decode", &bad).unwrap_err();
        assert!(
            matches!(e, RatioError::Unnormalisable { .. }),
            "{bad:?}: {e}"
        );
    }
    assert!(matches!(
        table.set("decode", &[1.0]),
        Err(RatioError::Length { got: 1, threads: 2 })
    ));
    assert!(matches!(
        table.set("decode", &[1.0, -1.0]),
        Err(RatioError::NotPositive { index: 1, .. })
    ));
    let got = table.get("decode");
    assert_eq!(got, vec![1.0, 1.0]);
    table.set("decode", &[1.0, 3.0]).unwrap();
    assert_eq!(table.get("decode"), vec![0.5, 1.5]);
}
