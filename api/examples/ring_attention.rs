//! Ring attention over 3 local workers (threads of this process) on in-memory random tensors,
//! compared with the exact f64 attention. Prints the largest error; exits 1 above 2e-5.
//!
//! `cargo run --release --example ring_attention`

use std::process::ExitCode;

use ringattn::tensors::{scatter_rows, shard_rows};
use ringattn::{
    executor_for, run_threads, ApiError, Dtype, LayerAttention, LayerSpec, LayoutChoice, Mask,
};
use ringattn_testutil::{max_abs_diff, random_values, reference_attention};

fn main() -> Result<ExitCode, ApiError> {
    let (world, heads, kv_heads, dim, seq) = (3, 8, 2, 64, 1000);
    let spec = LayerSpec {
        heads,
        kv_heads,
        head_dim: dim,
        seq,
        causal: true,
        layout: LayoutChoice::Auto,
        tile: None,
        dtype: Dtype::F32,
    };
    // Whole tensors, [heads, seq, dim]; each worker takes its own rows.
    let q = random_values(heads * seq * dim, 1);
    let k = random_values(kv_heads * seq * dim, 2);
    let v = random_values(kv_heads * seq * dim, 3);
    let shards = run_threads(world, |comm| {
        let exec = executor_for(1, Vec::new())?;
        let mut attn = LayerAttention::new(&spec, comm.rank(), world, exec)?;
        let pos = attn.positions().to_vec();
        let out = attn.forward(
            comm,
            &shard_rows(&q, heads, seq, dim, &pos),
            &shard_rows(&k, kv_heads, seq, dim, &pos),
            &shard_rows(&v, kv_heads, seq, dim, &pos),
            None,
        )?;
        Ok((pos, out, attn.layout()))
    })?;
    let (mut out, mut lse) = (vec![0.0f32; heads * seq * dim], vec![0.0f32; heads * seq]);
    for (pos, o, _) in &shards {
        scatter_rows(&o.out, &mut out, heads, seq, dim, pos);
        scatter_rows(&o.lse, &mut lse, heads, seq, 1, pos);
    }
    let (r_out, r_lse) =
        reference_attention(&q, &k, &v, (heads, kv_heads, seq, dim), |_| Mask::Causal);
    let (e_out, e_lse) = (max_abs_diff(&out, &r_out), max_abs_diff(&lse, &r_lse));
    println!(
        "ring attention: {world} workers, layout {}, N = {seq}, H = {heads} (KV {kv_heads}), D = {dim}",
        shards[0].2
    );
    println!("max |out error| = {e_out:.3e}, max |lse error| = {e_lse:.3e} (limit 2e-5)");
    Ok(if e_out <= 2e-5 && e_lse <= 2e-5 {
        ExitCode::SUCCESS
    } else {
        eprintln!("ring_attention: error larger than 2e-5");
        ExitCode::FAILURE
    })
}
