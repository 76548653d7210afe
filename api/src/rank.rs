//! What one rank does, on any backend: make its shard, run the ring, finalise, check, and
//! send its figures (and, for `--output`, its rows) to the root.

use std::collections::BTreeMap;
use std::time::Instant;

use std::io::{IsTerminal, Write};

use ringattn_ring::{
    duo_ring_pass, duo_ring_pass_parts, ring_pass_with_progress, HeadKind, RankStats, StepStats,
};
use ringattn_runtime::{
    AttnState, Comm, Error, KvBlock, KvHeadSubset, Positions, QShard, Result, Scheduler,
};
use serde::{Deserialize, Serialize};

use crate::check::{check_rank, CheckResult, Tolerance};
use crate::job::{Input, Job};

/// Everything a rank reports to the root.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RankResult {
    /// The rank.
    pub rank: usize,
    /// Global positions of its tokens.
    pub positions: Positions,
    /// Kernel threads it used.
    pub threads: usize,
    /// CPU ids its kernel threads were pinned to, one per thread (empty: unpinned).
    pub cores: Vec<usize>,
    /// Seconds spent making its shard (generation or file reads).
    pub setup_s: f64,
    /// Seconds waiting at the end for the slowest rank.
    pub idle_s: f64,
    /// Ring pass measurements (both head kinds together under DuoAttention).
    pub stats: RankStats,
    /// The scheduler's ratios per kernel class after the run, one per kernel thread.
    pub sched_ratios: BTreeMap<String, Vec<f64>>,
    /// KV payload bytes sent for retrieval heads (all of them without DuoAttention).
    pub bytes_sent_retrieval: u64,
    /// KV payload bytes sent for DuoAttention streaming heads.
    pub bytes_sent_streaming: u64,
    /// Accuracy check of its rows, when asked.
    pub check: Option<CheckResult>,
    /// `out[heads][rows][dim]`, only when the root writes an output file.
    pub out: Option<Vec<f32>>,
    /// `lse[heads][rows]`, only when the root writes an output file.
    pub lse: Option<Vec<f32>>,
}

/// What the root gets back from a run.
#[derive(Debug)]
pub struct Gathered {
    /// Every rank's result, in rank order.
    pub ranks: Vec<RankResult>,
    /// Wall seconds of the ring pass, from the common start to the last rank's end.
    pub wall_s: f64,
}

/// A rank's KV: one block, or DuoAttention's retrieval and streaming parts.
enum Kv {
    Whole(KvBlock),
    Parts(KvBlock, KvBlock),
}

/// Runs this rank's part of `job`; the root (rank 0) returns the gathered results.
pub fn run_rank(comm: &mut dyn Comm, job: &Job) -> Result<Option<Gathered>> {
    let (rank, world) = (comm.rank(), comm.size());
    let setup = Instant::now();
    let positions = job
        .plan
        .kind
        .build(&job.ring.mask)
        .positions(rank, world, job.seq);
    let (q, kv) = make_shard(job, rank, &positions)?;
    let cores = job.cores_of(rank).to_vec();
    let pool = kernel_sched(rank, job, &cores)?;
    // Packing buffers allocated and touched, threads started: step 0 costs what later ones do.
    match &kv {
        Kv::Whole(kv) => ringattn_runtime::kernel::warm_up(kv, job.ring.tile, &pool),
        Kv::Parts(r, s) => [r, s]
            .into_iter()
            .for_each(|kv| ringattn_runtime::kernel::warm_up(kv, job.ring.tile, &pool)),
    }
    let setup_s = setup.elapsed().as_secs_f64();

    let state = AttnState::try_new(job.heads, q.rows(), job.dim)?;
    comm.barrier()?;
    let start = Instant::now();
    let mut progress = progress_line(rank, world, start);
    let (state, stats, bytes_sent_retrieval, bytes_sent_streaming) =
        ring(comm, job, &q, kv, &pool, state, &mut progress)?;
    // Finite inputs whose result f32 cannot hold end here with a typed error (exit 1).
    let fin = state.finalize_checked(&q.positions)?;
    job.sched.save(&pool);
    let idle = Instant::now();
    comm.barrier()?;
    let idle_s = idle.elapsed().as_secs_f64();
    let wall_s = start.elapsed().as_secs_f64();

    let check = match job.check_rows {
        Some(rows) => Some(check_rank(
            &job.input,
            &q,
            &fin,
            job.seq,
            &job.kv_head_masks(),
            (rows, Tolerance::for_dtype(job.dtype)),
        )?),
        None => None,
    };
    let (out, lse) = if job.want_output {
        (Some(fin.out), Some(fin.lse))
    } else {
        (None, None)
    };
    let result = RankResult {
        rank,
        positions,
        threads: job.threads,
        cores,
        setup_s,
        idle_s,
        stats,
        sched_ratios: pool.all_ratios(),
        bytes_sent_retrieval,
        bytes_sent_streaming,
        check,
        out,
        lse,
    };
    let Some(ranks) = gather_to_root(comm, &result)? else {
        return Ok(None);
    };
    Ok(Some(Gathered { ranks, wall_s }))
}

/// This rank's query shard and KV: one block, or with DuoAttention its retrieval and streaming
/// parts made separately (the whole block is never held).
fn make_shard(job: &Job, rank: usize, positions: &Positions) -> Result<(QShard, Kv)> {
    if let Input::File(file) = &job.input {
        file.check_finite(positions)?;
    }
    let q = QShard::from_source(&job.input, job.heads, job.dim, positions.clone())?;
    let kv_of = |heads: &[usize]| {
        let source = KvHeadSubset {
            inner: &job.input,
            heads,
        };
        KvBlock::from_source_as(
            &source,
            rank,
            heads.len(),
            job.dim,
            positions.clone(),
            job.dtype,
        )
    };
    let kv = match &job.duo {
        Some(plan) if plan.retrieval_count() > 0 && plan.streaming_count() > 0 => Kv::Parts(
            kv_of(&plan.kv_heads_of(HeadKind::Retrieval))?,
            kv_of(&plan.kv_heads_of(HeadKind::Streaming))?,
        ),
        _ => Kv::Whole(kv_of(&(0..job.kv_heads).collect::<Vec<_>>())?),
    };
    Ok((q, kv))
}

/// Rank 0's progress line on a terminal (`ring step i/P`), cleared after the last step.
fn progress_line(rank: usize, world: usize, start: Instant) -> impl FnMut(usize, &StepStats) {
    let show_progress = rank == 0 && world > 1 && std::io::stderr().is_terminal();
    move |step: usize, _: &StepStats| {
        if show_progress {
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\rring step {}/{world} ({:.1} s)",
                step + 1,
                start.elapsed().as_secs_f64()
            );
            if step + 1 == world {
                let _ = write!(err, "\r\x1b[2K");
            }
            let _ = err.flush();
        }
    }
}

/// The job's ring pass (plain, or DuoAttention's) into `state`: the state, the measurements
/// and the KV bytes sent for retrieval and for streaming heads.
fn ring(
    comm: &mut dyn Comm,
    job: &Job,
    q: &QShard,
    kv: Kv,
    pool: &Scheduler,
    state: AttnState,
    progress: &mut dyn FnMut(usize, &StepStats),
) -> Result<(AttnState, RankStats, u64, u64)> {
    Ok(match (&job.duo, kv) {
        (Some(plan), kv) => {
            drop(state);
            let (state, duo) = match kv {
                Kv::Whole(kv) => duo_ring_pass(comm, q, kv, &job.ring, pool, plan, progress)?,
                Kv::Parts(r, s) => {
                    duo_ring_pass_parts(comm, q, r, s, &job.ring, pool, plan, progress)?
                }
            };
            let (ret, st) = (duo.bytes_sent_retrieval, duo.bytes_sent_streaming);
            (state, duo.total, ret, st)
        }
        (None, Kv::Parts(..)) => unreachable!("parts are made only for a DuoAttention plan"),
        (None, Kv::Whole(kv)) => {
            let (state, stats) =
                ring_pass_with_progress(comm, q, kv, &job.ring, pool, state, progress)?;
            let bytes = stats.bytes_sent;
            (state, stats, bytes, 0)
        }
    })
}

/// Sends this rank's `result` to rank 0 (bincode); rank 0 gets every rank's, in rank order.
pub fn gather_to_root<T: Serialize + serde::de::DeserializeOwned>(
    comm: &mut dyn Comm,
    result: &T,
) -> Result<Option<Vec<T>>> {
    let rank = comm.rank();
    let config = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(result, config).map_err(|e| Error::RankFailed {
        rank,
        reason: format!("encoding results: {e}"),
    })?;
    let Some(parts) = comm.gather(0, bytes)? else {
        return Ok(None);
    };
    let decoded = parts
        .iter()
        .map(|p| {
            bincode::serde::decode_from_slice(p, config)
                .map(|(r, _)| r)
                .map_err(|e| Error::Comm {
                    rank,
                    reason: format!("decoding a rank's results: {e}"),
                })
        })
        .collect::<Result<Vec<T>>>()?;
    Ok(Some(decoded))
}

/// The rank's kernel scheduler (`--sched`): `threads` pinned threads when `cores` is not empty.
pub fn kernel_sched(rank: usize, job: &Job, cores: &[usize]) -> Result<Scheduler> {
    job.sched
        .build(job.threads, cores.to_vec())
        .map_err(|e| Error::RankFailed {
            rank,
            reason: e.to_string(),
        })
}
