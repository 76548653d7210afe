//! The memory check of a job, made before anything proportional to its sizes is allocated:
//! a request larger than the machine is refused with one line that says how much it needs and
//! how much there is ([`ringattn_runtime::Error::OutOfMemory`], bad input), never an
//! allocation abort half-way through.

use ringattn_runtime::memory::{check_fits, decode_bytes, run_bytes, DecodeShape, RunShape};
use ringattn_runtime::{Dtype, TileShape};

use crate::error::ApiError;

/// How many of a job's ranks share this process's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RanksHere {
    /// Every rank (the local backend: ranks are threads of this process).
    All,
    /// One rank (MPI: one process per rank).
    One,
}

/// What the memory check of a job covers: where its ranks live and, for decode, how many
/// tokens it decodes after the prefill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryCheck {
    /// Ranks in this process.
    pub ranks_here: RanksHere,
    /// Decode steps after the prefill (`None`: a prefill-only run).
    pub decode_steps: Option<usize>,
}

impl MemoryCheck {
    /// A run of the local backend (every rank in this process, no decode).
    pub const LOCAL: MemoryCheck = MemoryCheck {
        ranks_here: RanksHere::All,
        decode_steps: None,
    };
    /// One rank of an MPI job (no decode).
    pub const ONE_RANK: MemoryCheck = MemoryCheck {
        ranks_here: RanksHere::One,
        decode_steps: None,
    };

    /// The same check for a decode of `steps` tokens.
    pub fn decoding(self, steps: usize) -> MemoryCheck {
        MemoryCheck {
            decode_steps: Some(steps),
            ..self
        }
    }
}

/// The sizes of a job that decide its memory (validated: every size at least 1).
#[derive(Clone, Copy, Debug)]
pub struct JobSizes {
    /// Ranks.
    pub world: usize,
    /// Tokens (the prompt for decode).
    pub seq: usize,
    /// Query heads.
    pub heads: usize,
    /// KV heads.
    pub kv_heads: usize,
    /// Head dimension.
    pub dim: usize,
    /// Kernel threads per rank.
    pub threads: usize,
    /// Kernel tiles.
    pub tile: TileShape,
    /// K/V storage type.
    pub dtype: Dtype,
    /// Rows of Q and of KV the largest rank holds when the layout gives some rank more than
    /// ⌈N/P⌉ (the documents layout keeps documents whole, so token counts differ); `None`:
    /// about N/P per rank, as the block layouts give.
    pub largest_rank: Option<usize>,
}

/// What a rank of the local backend costs beyond its buffers: its thread's stack, its
/// kernel pool's threads and channels (an upper bound, so that thousands of ranks on threads
/// are refused up front rather than ending in the out-of-memory killer).
pub const LOCAL_RANK_OVERHEAD: u64 = 1 << 20;

/// Refuses the job when this process cannot hold its buffers (or the sizes overflow 2^64
/// bytes): [`ringattn_runtime::Error::OutOfMemory`] / `InvalidConfig`, both bad input.
/// Passes when the machine's available memory cannot be read.
pub fn check_job_memory(s: &JobSizes, check: MemoryCheck) -> Result<(), ApiError> {
    let (need, who) = job_need(s, check)?;
    check_fits(need, &who)?;
    Ok(())
}

/// Bytes this process needs for the job (its buffers and, for local ranks, their overhead) and
/// who needs them, as the refusal says it. Every rank is sized like the largest one.
pub fn job_need(s: &JobSizes, check: MemoryCheck) -> Result<(u64, String), ApiError> {
    // The runtime sizes a rank at ⌈seq / world⌉ (+1) rows: a larger rank is sized as a world
    // of one holding its rows.
    let (seq, world) = match s.largest_rank {
        Some(rows) if rows > s.seq.div_ceil(s.world.max(1)) => (rows, 1),
        _ => (s.seq, s.world),
    };
    let shape = RunShape {
        seq,
        world,
        heads: s.heads,
        kv_heads: s.kv_heads,
        head_dim: s.dim,
        kv_elem_bytes: s.dtype.size(),
        tile_q: s.tile.q,
        tile_k: s.tile.k,
        threads: s.threads,
    };
    let ranks = match check.ranks_here {
        RanksHere::All => s.world,
        RanksHere::One => 1,
    };
    let (need, what) = match check.decode_steps {
        None => (run_bytes(&shape, ranks)?, "run"),
        Some(steps) => (
            decode_bytes(
                &DecodeShape {
                    prefill: shape,
                    steps,
                },
                ranks,
            )?,
            "decode",
        ),
    };
    let who = match check.ranks_here {
        RanksHere::All if s.world > 1 => format!("this {what} ({} ranks in one process)", s.world),
        _ => format!("one rank of this {what}"),
    };
    let overhead = match check.ranks_here {
        RanksHere::All => (s.world as u128) * u128::from(LOCAL_RANK_OVERHEAD),
        RanksHere::One => 0,
    };
    let total = u64::try_from(u128::from(need.per_process) + overhead).map_err(|_| {
        ringattn_runtime::Error::config(format!(
            "{who} would need more than 2^64 bytes of memory: the sizes are too large"
        ))
    })?;
    Ok((total, who))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(world: usize, seq: usize, heads: usize) -> JobSizes {
        JobSizes {
            world,
            seq,
            heads,
            kv_heads: heads,
            dim: 8,
            threads: 1,
            tile: TileShape::default(),
            dtype: Dtype::F32,
            largest_rank: None,
        }
    }

    #[test]
    fn a_rank_larger_than_n_over_p_is_sized_by_its_rows() {
        let even = sizes(4, 8192, 2);
        let (base, _) = job_need(&even, MemoryCheck::ONE_RANK).unwrap();
        // ⌈N/P⌉ rows or fewer: the same as the even split.
        let at_block = JobSizes {
            largest_rank: Some(2048),
            ..even
        };
        assert_eq!(job_need(&at_block, MemoryCheck::ONE_RANK).unwrap().0, base);
        // A rank with twice the rows needs about twice the buffers (tile scratch aside).
        let big = JobSizes {
            largest_rank: Some(4096),
            ..even
        };
        let (need, _) = job_need(&big, MemoryCheck::ONE_RANK).unwrap();
        assert!(need > base * 19 / 10 && need < base * 2, "{need} vs {base}");
        // Local ranks: every one of the four is sized like the largest.
        let (local, who) = job_need(&big, MemoryCheck::LOCAL).unwrap();
        assert_eq!(local, 4 * need + 4 * LOCAL_RANK_OVERHEAD, "{who}");
    }

    #[test]
    fn tiny_jobs_pass_and_absurd_ones_are_bad_input() {
        assert!(check_job_memory(&sizes(2, 64, 1), MemoryCheck::LOCAL).is_ok());
        assert!(check_job_memory(&sizes(1, 64, 1), MemoryCheck::ONE_RANK.decoding(4)).is_ok());
        for (s, check) in [
            (sizes(usize::MAX, usize::MAX, 1), MemoryCheck::LOCAL),
            (sizes(1, usize::MAX, usize::MAX), MemoryCheck::ONE_RANK),
            (sizes(1, 64, 1), MemoryCheck::ONE_RANK.decoding(usize::MAX)),
        ] {
            let e = check_job_memory(&s, check).unwrap_err();
            assert!(e.is_user_error(), "{e}");
        }
    }

    #[test]
    fn local_ranks_count_their_overhead() {
        // A million ranks of one token each: tiny buffers, but a terabyte of rank overhead.
        if ringattn_runtime::memory::available().is_some() {
            let e = check_job_memory(&sizes(1 << 20, 1 << 20, 1), MemoryCheck::LOCAL).unwrap_err();
            assert!(e.to_string().contains("ranks in one process"), "{e}");
        }
    }
}
