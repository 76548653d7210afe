//! `ring_attention` under MPI: one process per rank. Rank 0 then runs the same job on local
//! threads and checks that the MPI result is bitwise the same. Exits 1 otherwise.
//!
//! `cargo build --release --features mpi --example mpi_ring`, then
//! `mpirun -n 3 target/release/examples/mpi_ring`

use std::process::ExitCode;

use ringattn::tensors::shard_rows;
use ringattn::{
    executor_for, run_threads, ApiError, Comm, Dtype, LayerAttention, LayerSpec, LayoutChoice,
    MpiComm,
};
use ringattn_testutil::random_values;

const HEADS: usize = 8;
const KV_HEADS: usize = 2;
const DIM: usize = 64;
const SEQ: usize = 1000;

/// This rank's output rows (`out` then `lse`, in shard order).
fn rank_rows(comm: &mut dyn Comm, spec: &LayerSpec) -> Result<Vec<f32>, ApiError> {
    let (q, k, v) = (
        random_values(HEADS * SEQ * DIM, 1),
        random_values(KV_HEADS * SEQ * DIM, 2),
        random_values(KV_HEADS * SEQ * DIM, 3),
    );
    let exec = executor_for(1, Vec::new())?;
    let mut attn = LayerAttention::new(spec, comm.rank(), comm.size(), exec)?;
    let pos = attn.positions().to_vec();
    let out = attn.forward(
        comm,
        &shard_rows(&q, HEADS, SEQ, DIM, &pos),
        &shard_rows(&k, KV_HEADS, SEQ, DIM, &pos),
        &shard_rows(&v, KV_HEADS, SEQ, DIM, &pos),
        None,
    )?;
    Ok([out.out, out.lse].concat())
}

fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn main() -> Result<ExitCode, ApiError> {
    let spec = LayerSpec {
        heads: HEADS,
        kv_heads: KV_HEADS,
        head_dim: DIM,
        seq: SEQ,
        causal: true,
        layout: LayoutChoice::Auto,
        tile: None,
        dtype: Dtype::F32,
    };
    let mut comm = MpiComm::init()?;
    let world = comm.size();
    let mine = rank_rows(&mut comm, &spec)?;
    let Some(parts) = comm.gather(0, to_bytes(&mine))? else {
        return Ok(ExitCode::SUCCESS);
    };
    let local = run_threads(world, |c| rank_rows(c, &spec))?;
    let same = parts.iter().zip(&local).all(|(p, l)| *p == to_bytes(l));
    println!(
        "mpi ring: {world} ranks; outputs {} the local backend's",
        if same { "bitwise equal" } else { "DIFFER from" }
    );
    Ok(if same {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
