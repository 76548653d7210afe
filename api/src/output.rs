//! A job's output: the ranks' rows put back in original token order, and written to a
//! safetensors file atomically.

use std::path::Path;

use ringattn_runtime::io::{write_safetensors, NamedTensor};
use ringattn_runtime::{Error, Result};

use crate::job::Job;
use crate::rank::Gathered;

/// Writes `out` [H, N, D] and `lse` [H, N] in original token order to `path`.
pub fn write_output(path: &Path, job: &Job, g: &Gathered) -> Result<()> {
    let (h, n, d) = (job.heads, job.seq, job.dim);
    let (out, lse) = reassemble(job, g)?;
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

/// Every rank's output rows put back in original token order: `out` [H, N, D], `lse` [H, N].
/// Fails when a rank sent no rows (the job did not ask for them).
pub fn reassemble(job: &Job, g: &Gathered) -> Result<(Vec<f32>, Vec<f32>)> {
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
    Ok((out, lse))
}
