//! `--output`: the ranks' rows put back in original token order and written atomically.

use std::path::Path;

use ringattn_runtime::io::{write_safetensors, NamedTensor};
use ringattn_runtime::{Error, Result};

use crate::job::Job;
use crate::rank::Gathered;

/// Writes `out` [H, N, D] and `lse` [H, N] in original token order to `path`.
pub fn write_output(path: &Path, job: &Job, g: &Gathered) -> Result<()> {
    let (h, n, d) = (job.heads, job.seq, job.dim);
    let mut out = vec![0.0f32; h * n * d];
    let mut lse = vec![0.0f32; h * n];
    for r in &g.ranks {
        let (Some(r_out), Some(r_lse)) = (&r.out, &r.lse) else {
            return Err(Error::Comm {
                rank: r.rank,
                reason: "rank sent no output rows".into(),
            });
        };
        let rows = r.positions.len();
        for head in 0..h {
            for (local, pos) in r.positions.iter().enumerate() {
                let src = head * rows + local;
                let dst = head * n + pos;
                out[dst * d..(dst + 1) * d].copy_from_slice(&r_out[src * d..(src + 1) * d]);
                lse[dst] = r_lse[src];
            }
        }
    }
    write_safetensors(
        path,
        &[
            NamedTensor {
                name: "out",
                shape: vec![h, n, d],
                data: &out,
            },
            NamedTensor {
                name: "lse",
                shape: vec![h, n],
                data: &lse,
            },
        ],
    )
}

/// Writes `value` as JSON to `path` atomically (pretty-printed, temporary file + rename), or to
/// stdout for `-` (one line, so repeated runs append cleanly to a JSON-lines file).
pub fn write_json<T: serde::Serialize>(path: &str, value: &T) -> Result<()> {
    if path == "-" {
        println!(
            "{}",
            serde_json::to_string(value).expect("a report always serialises")
        );
        return Ok(());
    }
    let target = Path::new(path);
    let tmp = ringattn_runtime::io::temp_path(target);
    let io = |context: String| move |e| Error::Io { context, source: e };
    let text = serde_json::to_string_pretty(value).expect("a report always serialises") + "\n";
    let result = std::fs::write(&tmp, text)
        .map_err(io(format!("writing {path}")))
        .and_then(|()| std::fs::rename(&tmp, target).map_err(io(format!("renaming to {path}"))));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
