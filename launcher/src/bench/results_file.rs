//! results.jsonl of `bench scaling`: reading it (cut-short lines skipped) and appending one
//! run report per line, flushed, so a finished run is never lost.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use ringattn_runtime::{Error, Result};
use serde_json::{json, Value};

use super::scaling::{Combo, ScalingArgs};

/// Reads results.jsonl: the parsed lines, skipping blank or cut-short ones (counted).
pub fn read_results(path: &Path) -> Result<(Vec<Value>, usize)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
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

/// Adds the `sweep` object to one run report, appends it to `results` and returns the line
/// that tells the user.
pub fn record(
    args: &ScalingArgs,
    results: &Path,
    combo: &Combo,
    mut value: Value,
    cores: usize,
    label: &str,
) -> Result<String> {
    value["sweep"] = json!({
        "mode": args.mode.name(),
        "base_seq": combo.base_seq,
        "cores": cores,
    });
    append_line(results, &value)?;
    Ok(format!(
        "{label}: wall {:.3} s · {:.2} GFLOP/s · imbalance {:.3}",
        value["wall_s"].as_f64().unwrap_or(f64::NAN),
        value["gflops"].as_f64().unwrap_or(f64::NAN),
        value["imbalance"].as_f64().unwrap_or(f64::NAN)
    ))
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
