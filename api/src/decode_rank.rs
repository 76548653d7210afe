//! What one rank does in `ringattn decode`, on any backend: the ring prefill, the distributed
//! decode, the check of the rows it owns, and its figures sent to the root.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use ringattn_ring::duo::{
    decode_masked, decode_masks_for, prefill_for_decode_masked, DecodeOutput, DecodeSpec,
    DecodeStats, DecodedRow,
};
use ringattn_ring::{DuoPlan, RankStats};
use ringattn_runtime::reference::reference_row;
use ringattn_runtime::{Comm, Mask, Positions, Result, RowSource, Scheduler, TensorKind};
use serde::{Deserialize, Serialize};

use crate::check::{CheckResult, Tolerance};
use crate::error::ApiError;
use crate::job::{Input, Job};
use crate::rank::{gather_to_root, kernel_sched};
use crate::spec::CheckRows;

/// What `decode` adds to a [`Job`].
#[derive(Clone, Debug)]
pub struct DecodeJob {
    /// Tokens decoded after the prefill.
    pub steps: usize,
    /// DuoAttention plan (`None`: every head retrieval).
    pub duo: Option<DuoPlan>,
    /// Verify decoded rows against the reference: [`CheckRows::Auto`] every decoded row of
    /// the rank, [`CheckRows::Rows`] that many evenly spaced ones (all when fewer).
    pub check: Option<CheckRows>,
}

impl DecodeJob {
    /// Checks what the prefill's [`Job`] does not know about: at least one prefill token
    /// (`prefill`), one decode step (`steps`) and, when a number is given, one checked row
    /// (`check`).
    pub fn check_counts(&self, prefill: usize) -> std::result::Result<(), ApiError> {
        let zero = [
            ("prefill", prefill == 0),
            ("steps", self.steps == 0),
            ("check", self.check == Some(CheckRows::Rows(0))),
        ];
        match zero.into_iter().find(|&(_, is_zero)| is_zero) {
            Some((field, _)) => Err(ApiError::Zero { field }),
            None => Ok(()),
        }
    }
}

/// Everything a rank reports to the root.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecodeRankResult {
    /// The rank.
    pub rank: usize,
    /// Its prefill positions.
    pub positions: Positions,
    /// Kernel threads.
    pub threads: usize,
    /// CPU ids its kernel threads were pinned to (empty: unpinned).
    pub cores: Vec<usize>,
    /// Seconds before the common start (thread pool start-up); making the prefill shard is
    /// part of the prefill.
    pub setup_s: f64,
    /// Seconds of the prefill ring pass on this rank (from the common start).
    pub prefill_own_s: f64,
    /// Seconds from the common start to the barrier after the prefill (the prefill's wall).
    pub prefill_s: f64,
    /// Seconds waiting at the end for the slowest rank.
    pub idle_s: f64,
    /// Ring pass (prefill) measurements.
    pub prefill: RankStats,
    /// Prefill bytes sent for DuoAttention streaming heads (part of `prefill.bytes_sent`).
    pub prefill_bytes_streaming: u64,
    /// The scheduler's ratios per kernel class at the end.
    pub sched_ratios: std::collections::BTreeMap<String, Vec<f64>>,
    /// Decode measurements.
    pub decode: DecodeStats,
    /// Check of the rows it owns, when asked.
    pub check: Option<CheckResult>,
}

/// What the root gets back.
#[derive(Debug)]
pub struct DecodeGathered {
    /// Every rank's result, in rank order.
    pub ranks: Vec<DecodeRankResult>,
    /// Wall seconds from the common start to the last rank's end.
    pub wall_s: f64,
}

/// The decode spec of `job`.
pub fn spec_of(job: &Job, steps: usize) -> DecodeSpec {
    DecodeSpec {
        prefill: job.seq,
        steps,
        heads: job.heads,
        kv_heads: job.kv_heads,
        dim: job.dim,
        dtype: job.dtype,
    }
}

/// Runs this rank's part; the root (rank 0) returns the gathered results.
pub fn decode_rank(
    comm: &mut dyn Comm,
    job: &Job,
    dj: &DecodeJob,
) -> Result<Option<DecodeGathered>> {
    let (rank, world) = (comm.rank(), comm.size());
    let setup = Instant::now();
    let layout = job.plan.kind.build(&job.ring.mask);
    let positions = layout.positions(rank, world, job.seq);
    if let Input::File(file) = &job.input {
        file.check_finite(&positions)?;
    }
    let spec = spec_of(job, dj.steps);
    let cores = job.cores_of(rank).to_vec();
    let pool = kernel_sched(rank, job, &cores)?;
    let setup_s = setup.elapsed().as_secs_f64();

    comm.barrier()?;
    let start = Instant::now();
    let show = rank == 0 && std::io::stderr().is_terminal();
    let mut ring_progress = |step: usize, _: &ringattn_ring::StepStats| {
        if show {
            progress(&format!(
                "prefill ring step {}/{world} ({:.1} s)",
                step + 1,
                start.elapsed().as_secs_f64()
            ));
        }
    };
    let tile = job.ring.tile;
    let base = job.mask();
    let (_, prefill_stats, prefill_bytes_streaming) = prefill_for_decode_masked(
        comm,
        &*layout,
        &job.input,
        &spec,
        (dj.duo.as_ref(), &base),
        tile,
        &pool,
        &mut ring_progress,
    )?;
    let prefill_own_s = start.elapsed().as_secs_f64();
    // Decode starts together: the prefill's imbalance stays in the prefill's time.
    comm.barrier()?;
    let prefill_s = start.elapsed().as_secs_f64();
    let out = decode_phase(comm, job, dj, &spec, &pool, show)?;
    let idle = Instant::now();
    comm.barrier()?;
    let idle_s = idle.elapsed().as_secs_f64();
    let wall_s = start.elapsed().as_secs_f64();

    let check = decode_check(job, dj, &out, &spec, &base)?;
    let result = DecodeRankResult {
        rank,
        positions,
        threads: job.threads,
        cores,
        setup_s,
        prefill_own_s,
        prefill_s,
        idle_s,
        prefill: prefill_stats,
        prefill_bytes_streaming,
        sched_ratios: pool.all_ratios(),
        decode: out.stats,
        check,
    };
    let Some(ranks) = gather_to_root(comm, &result)? else {
        return Ok(None);
    };
    Ok(Some(DecodeGathered { ranks, wall_s }))
}

/// The check of the decoded rows against the reference, when `dj` asks for one.
fn decode_check(
    job: &Job,
    dj: &DecodeJob,
    out: &DecodeOutput,
    spec: &DecodeSpec,
    base: &Mask,
) -> Result<Option<CheckResult>> {
    let Some(rows) = dj.check else {
        return Ok(None);
    };
    let picked = checked_rows(&out.rows, rows);
    Ok(Some(check_rows(
        &job.input,
        &picked,
        spec,
        (dj.duo.as_ref(), base),
        Tolerance::for_dtype(job.dtype),
    )?))
}

/// The decode steps after the prefill, with a progress line on rank 0's terminal.
fn decode_phase(
    comm: &mut dyn Comm,
    job: &Job,
    dj: &DecodeJob,
    spec: &DecodeSpec,
    pool: &Scheduler,
    show: bool,
) -> Result<DecodeOutput> {
    let decode_start = Instant::now();
    let mut step_progress = |step: usize, _: &ringattn_ring::duo::DecodeStepStats| {
        if show {
            let rate = (step + 1) as f64 / decode_start.elapsed().as_secs_f64().max(1e-9);
            progress(&format!(
                "decode step {}/{} ({rate:.1} tokens/s)",
                step + 1,
                dj.steps
            ));
        }
    };
    let out = decode_masked(
        comm,
        &*job.plan.kind.build(&job.ring.mask),
        &job.input,
        spec,
        (dj.duo.as_ref(), &job.mask()),
        pool,
        &mut step_progress,
    )?;
    if show {
        progress("");
    }
    Ok(out)
}

/// The decoded rows `--check` verifies: all of them, or `n` evenly spaced ones (all when
/// there are at most `n`).
pub fn checked_rows(rows: &[DecodedRow], which: CheckRows) -> Vec<DecodedRow> {
    match which {
        CheckRows::Rows(n) if n < rows.len() => (0..n.max(1))
            .map(|i| rows[i * rows.len() / n.max(1)].clone())
            .collect(),
        _ => rows.to_vec(),
    }
}

/// One progress line on stderr (a terminal), overwriting the previous one; empty clears it.
fn progress(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = if line.is_empty() {
        write!(err, "\r\x1b[2K")
    } else {
        write!(err, "\r\x1b[2K{line}")
    };
    let _ = err.flush();
}

/// Compares every head of every decoded row with the f64 reference over keys `0..=p` under the
/// head's decode mask (retrieval: `base`, causal with the run's window and documents;
/// streaming: `k <= p` and (`k < sink` or `p − k < recent`)), within `tol`. K/V of one KV head are materialised at a time.
pub fn check_rows(
    source: &dyn RowSource,
    rows: &[DecodedRow],
    spec: &DecodeSpec,
    (duo, base): (Option<&DuoPlan>, &Mask),
    tol: Tolerance,
) -> Result<CheckResult> {
    let mut result = CheckResult::default();
    let Some(last) = rows.iter().map(|r| r.pos).max() else {
        return Ok(result);
    };
    let d = spec.dim;
    let masks: Vec<Mask> = decode_masks_for(spec.kv_heads, duo, base);
    let group = spec.heads / spec.kv_heads;
    let mut keys = vec![0.0f32; (last + 1) * d];
    let mut values = vec![0.0f32; (last + 1) * d];
    let mut q = vec![0.0f32; d];
    for (g, mask) in masks.iter().enumerate() {
        for (pos, (k, v)) in keys.chunks_mut(d).zip(values.chunks_mut(d)).enumerate() {
            source.fill_row(TensorKind::K, g, pos, k)?;
            source.fill_row(TensorKind::V, g, pos, v)?;
        }
        for row in rows {
            let n = (row.pos + 1) * d;
            for h in g * group..(g + 1) * group {
                source.fill_row(TensorKind::Q, h, row.pos, &mut q)?;
                let (out, lse) =
                    reference_row(&q, row.pos, &keys[..n], &values[..n], d, mask.clone());
                let got = &row.out[h * d..(h + 1) * d];
                result = result.combine(CheckResult::of_row(got, &out, row.lse[h], lse, tol));
            }
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_counts_are_refused_by_field() {
        let job = |steps, check| DecodeJob {
            steps,
            duo: None,
            check,
        };
        assert!(job(1, None).check_counts(1).is_ok());
        assert!(job(1, Some(CheckRows::Auto)).check_counts(1).is_ok());
        for (j, prefill, field) in [
            (job(1, None), 0, "prefill"),
            (job(0, None), 1, "steps"),
            (job(1, Some(CheckRows::Rows(0))), 1, "check"),
        ] {
            assert_eq!(j.check_counts(prefill).unwrap_err().field(), Some(field));
        }
    }
}
