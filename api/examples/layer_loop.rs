//! The per-layer handle inside a toy transformer: 4 attention layers (projections, RoPE at each
//! token's true position, residual) over 3 local workers on the striped layout, checked against
//! the same model computed in one process with exact attention. Exits 1 above 1e-4.
//!
//! `cargo run --release --example layer_loop`

use std::process::ExitCode;

use ringattn::{
    executor_for, run_threads, ApiError, Dtype, LayerAttention, LayerSpec, LayoutChoice, Mask,
};
use ringattn_testutil::{random_values, reference_attention};

const WORLD: usize = 3;
const LAYERS: usize = 4;
const SEQ: usize = 200;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const DIM: usize = 16;
const MODEL: usize = HEADS * DIM;

/// One layer's weights, row-major `[in][out]`.
struct Weights {
    wq: Vec<f32>,
    wk: Vec<f32>,
    wv: Vec<f32>,
    wo: Vec<f32>,
}

fn weights(layer: u64) -> Weights {
    let scaled = |len, seed| -> Vec<f32> {
        let s = 1.0 / (MODEL as f32).sqrt();
        random_values(len, seed).iter().map(|x| x * s).collect()
    };
    Weights {
        wq: scaled(MODEL * HEADS * DIM, 10 * layer + 1),
        wk: scaled(MODEL * KV_HEADS * DIM, 10 * layer + 2),
        wv: scaled(MODEL * KV_HEADS * DIM, 10 * layer + 3),
        wo: scaled(HEADS * DIM * MODEL, 10 * layer + 4),
    }
}

/// `x [tokens, MODEL] · w [MODEL, heads·DIM]`, returned head-major `[heads, tokens, DIM]`.
fn project(x: &[f32], w: &[f32], heads: usize) -> Vec<f32> {
    let tokens = x.len() / MODEL;
    let mut out = vec![0.0f32; heads * tokens * DIM];
    for t in 0..tokens {
        for c in 0..heads * DIM {
            let s: f32 = (0..MODEL)
                .map(|i| x[t * MODEL + i] * w[i * heads * DIM + c])
                .sum();
            let (h, d) = (c / DIM, c % DIM);
            out[(h * tokens + t) * DIM + d] = s;
        }
    }
    out
}

/// Rotary position embedding of a `[heads, tokens, DIM]` tensor at the tokens' true positions.
fn rope(t: &mut [f32], heads: usize, positions: &[usize]) {
    let (tokens, half) = (positions.len(), DIM / 2);
    for h in 0..heads {
        for (i, &p) in positions.iter().enumerate() {
            let row = &mut t[(h * tokens + i) * DIM..(h * tokens + i + 1) * DIM];
            for j in 0..half {
                let theta = p as f32 * 10000f32.powf(-((2 * j) as f32) / DIM as f32);
                let (s, c) = theta.sin_cos();
                let (a, b) = (row[j], row[j + half]);
                row[j] = a * c - b * s;
                row[j + half] = a * s + b * c;
            }
        }
    }
}

/// `x += attn [heads, tokens, DIM] (as [tokens, heads·DIM]) · wo`.
fn residual(x: &mut [f32], attn: &[f32], wo: &[f32]) {
    let tokens = x.len() / MODEL;
    for t in 0..tokens {
        for o in 0..MODEL {
            let s: f32 = (0..HEADS * DIM)
                .map(|c| attn[((c / DIM) * tokens + t) * DIM + c % DIM] * wo[c * MODEL + o])
                .sum();
            x[t * MODEL + o] += s;
        }
    }
}

/// The projections and RoPE of one layer for tokens at `positions`: q, k, v head-major.
fn qkv(x: &[f32], w: &Weights, positions: &[usize]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut q, mut k) = (project(x, &w.wq, HEADS), project(x, &w.wk, KV_HEADS));
    rope(&mut q, HEADS, positions);
    rope(&mut k, KV_HEADS, positions);
    (q, k, project(x, &w.wv, KV_HEADS))
}

fn main() -> Result<ExitCode, ApiError> {
    let layers: Vec<Weights> = (0..LAYERS as u64).map(weights).collect();
    let input = random_values(SEQ * MODEL, 99); // [SEQ, MODEL]
    let spec = LayerSpec {
        heads: HEADS,
        kv_heads: KV_HEADS,
        head_dim: DIM,
        seq: SEQ,
        causal: true,
        layout: LayoutChoice::Striped,
        tile: None,
        dtype: Dtype::F32,
    };
    // Distributed: every worker holds the hidden states of its tokens only.
    let ranks = run_threads(WORLD, |comm| {
        let exec = executor_for(1, Vec::new())?;
        let mut attn = LayerAttention::new(&spec, comm.rank(), WORLD, exec)?;
        let pos = attn.positions().to_vec();
        let mut x: Vec<f32> = pos
            .iter()
            .flat_map(|&p| input[p * MODEL..(p + 1) * MODEL].to_vec())
            .collect();
        for w in &layers {
            let (q, k, v) = qkv(&x, w, &pos);
            let out = attn.forward(comm, &q, &k, &v, None)?;
            residual(&mut x, &out.out, &w.wo);
        }
        Ok((pos, x))
    })?;
    // One process, exact attention over the whole sequence.
    let all: Vec<usize> = (0..SEQ).collect();
    let mut x = input.clone();
    for w in &layers {
        let (q, k, v) = qkv(&x, w, &all);
        let (out, _) =
            reference_attention(&q, &k, &v, (HEADS, KV_HEADS, SEQ, DIM), |_| Mask::Causal);
        let out: Vec<f32> = out.iter().map(|&o| o as f32).collect();
        residual(&mut x, &out, &w.wo);
    }
    let mut err = 0.0f32;
    for (pos, xs) in &ranks {
        for (i, &p) in pos.iter().enumerate() {
            for o in 0..MODEL {
                err = err.max((xs[i * MODEL + o] - x[p * MODEL + o]).abs());
            }
        }
    }
    println!("layer loop: {LAYERS} layers, {WORLD} workers, striped, N = {SEQ}, H = {HEADS} (KV {KV_HEADS}), D = {DIM}");
    println!("max |hidden state error| vs one process = {err:.3e} (limit 1e-4)");
    Ok(if err <= 1e-4 {
        ExitCode::SUCCESS
    } else {
        eprintln!("layer_loop: error larger than 1e-4");
        ExitCode::FAILURE
    })
}
