//! The results file of a scaling sweep (`results.jsonl`): one run report per line, appended
//! and flushed as each run finishes, so a killed sweep resumes where it stopped; each line's
//! identity ([`record_key`]) says which runs are already done.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use ringattn_runtime::{Error, Result};
use serde_json::Value;

/// Name of the results file inside the output directory.
pub const RESULTS_FILE: &str = "results.jsonl";

/// The DuoAttention part of a run's identity (see [`record_key`]; empty without a plan).
pub fn duo_key(retrieval: u64, streaming: u64, sink: u64, recent: u64) -> String {
    format!("/duo=R{retrieval}S{streaming}:{sink}:{recent}")
}

/// Identity of a run in results.jsonl: what must match for a line to count as done.
pub fn record_key(v: &Value) -> Option<String> {
    let threads = v["ranks"]
        .get(0)
        .and_then(|r| r["threads"].as_u64())
        .unwrap_or(0);
    let mode = v["sweep"]["mode"].as_str().unwrap_or("strong");
    let dtype = v["dtype"].as_str().unwrap_or("f32");
    let d = &v["duo"];
    let duo = if d.is_object() {
        duo_key(
            d["retrieval_kv_heads"].as_u64()?,
            d["streaming_kv_heads"].as_u64()?,
            d["sink"].as_u64()?,
            d["recent"].as_u64()?,
        )
    } else {
        String::new()
    };
    Some(format!(
        "{mode}/P{}/N{}/{}/causal={}/H{}/Hkv{}/D{}/T{threads}/{dtype}{duo}",
        v["world"].as_u64()?,
        v["seq"].as_u64()?,
        v["layout"].as_str()?,
        v["causal"].as_bool()?,
        v["heads"].as_u64()?,
        v["kv_heads"].as_u64()?,
        v["head_dim"].as_u64()?,
    ))
}

/// Reads results.jsonl: the parsed lines, skipping blank or cut-short ones (counted).
pub fn read_results(path: &Path) -> Result<(Vec<Value>, usize)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        // Not text at all: bad input (exit 2), not an I/O failure.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(Error::config(format!(
                "{} is not a results file: it is not UTF-8 text",
                path.display()
            )))
        }
        Err(e) => {
            return Err(Error::Io {
                context: format!("reading {}", path.display()),
                source: e,
            })
        }
    };
    let mut bad = 0;
    let mut values = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => values.push(v),
            _ => bad += 1,
        }
    }
    Ok((values, bad))
}

/// Appends one JSON line and flushes it to disk (a finished run is never lost).
pub fn append_line(path: &Path, value: &Value) -> Result<()> {
    let io = |e| Error::Io {
        context: format!("appending to {}", path.display()),
        source: e,
    };
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let mut line = serde_json::to_string(value).expect("json");
    line.push('\n');
    // A line cut short by a kill has no newline: start on a fresh line.
    let len = file.metadata().map_err(io)?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1)).map_err(io)?;
        file.read_exact(&mut last).map_err(io)?;
        if last[0] != b'\n' {
            line.insert(0, '\n');
        }
    }
    file.write_all(line.as_bytes()).map_err(io)?;
    file.sync_data().map_err(io)
}
