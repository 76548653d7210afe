//! Benchmarks' measurements (what `ringattn bench` runs; the CLI maps arguments and prints).

pub mod kernel;
pub mod kernel_grid;
pub mod mpi_sweep;
pub mod neighbour;
pub mod scaling;
pub mod sched;

/// Refuses a single-rank benchmark (`bench kernel`, `bench sched`) whose Q/K/V, state and
/// scratch this process cannot hold (exit 2 with what it needs and has), before allocating.
pub fn check_one_rank_memory(
    seq: usize,
    heads: usize,
    kv_heads: usize,
    dim: usize,
    (threads, tile_q, tile_k): (usize, usize, usize),
) -> Result<(), crate::error::ApiError> {
    let sizes = crate::memory::JobSizes {
        world: 1,
        seq,
        heads,
        kv_heads,
        dim,
        threads,
        tile: ringattn_runtime::TileShape {
            q: tile_q,
            k: tile_k,
        },
        dtype: ringattn_runtime::Dtype::F32,
        largest_rank: None,
    };
    crate::memory::check_job_memory(&sizes, crate::memory::MemoryCheck::ONE_RANK)
}
