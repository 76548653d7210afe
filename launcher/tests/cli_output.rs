//! Integration tests of the `ringattn` binary's `--output` file: the tensors it writes match an
//! f64 causal reference for every layout and world size, and a single worker's output is bitwise
//! independent of its thread count. Every invocation runs under a deadline (see `common`).

use std::path::Path;

mod common;
use common::*;

const H: usize = 4;
const HKV: usize = 2;
const N: usize = 37;
const D: usize = 16;

/// f64 causal attention of query (head, pos): (out[D], lse).
fn reference(q: &[f32], k: &[f32], v: &[f32], head: usize, pos: usize) -> (Vec<f64>, f64) {
    let kv_head = head / (H / HKV);
    let qrow = &q[(head * N + pos) * D..][..D];
    let scale = 1.0 / (D as f64).sqrt();
    let scores: Vec<f64> = (0..=pos)
        .map(|j| {
            let krow = &k[(kv_head * N + j) * D..][..D];
            qrow.iter()
                .zip(krow)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>()
                * scale
        })
        .collect();
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    let mut out = vec![0.0f64; D];
    for (j, s) in scores.iter().enumerate() {
        let w = (s - max).exp();
        sum += w;
        let vrow = &v[(kv_head * N + j) * D..][..D];
        for (o, &x) in out.iter_mut().zip(vrow) {
            *o += w * x as f64;
        }
    }
    out.iter_mut().for_each(|o| *o /= sum);
    (out, max + sum.ln())
}

/// Runs with `--input`/`--output` and returns (out, lse) after checking names, shapes, dtype.
fn run_to_output(input: &Path, output: &Path, extra: &[&str]) -> (Vec<f32>, Vec<f32>) {
    let mut args = vec!["run", "--input", p(input), "--output", p(output)];
    args.extend_from_slice(extra);
    let run = ringattn(&args);
    assert_success(&run);
    let (out_shape, out) = read_f32(output, "out");
    let (lse_shape, lse) = read_f32(output, "lse");
    assert_eq!(out_shape, vec![H, N, D], "shape of `out`");
    assert_eq!(lse_shape, vec![H, N], "shape of `lse`");
    (out, lse)
}

fn max_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).abs())
        .fold(0.0, f64::max)
}

#[test]
fn output_file_matches_reference_and_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("qkv.safetensors");
    let (q, k, v) = (
        rand_tensor(11, &[H, N, D]),
        rand_tensor(12, &[HKV, N, D]),
        rand_tensor(13, &[HKV, N, D]),
    );
    write_raw(
        &input,
        &[
            raw_f32("q", &[H, N, D], &q),
            raw_f32("k", &[HKV, N, D], &k),
            raw_f32("v", &[HKV, N, D], &v),
        ],
    );

    let zig_path = dir.path().join("zigzag.safetensors");
    let (zig_out, zig_lse) = run_to_output(
        &input,
        &zig_path,
        &[
            "--workers",
            "3",
            "--causal",
            "--layout",
            "zigzag",
            "--check",
        ],
    );

    // Every row against the f64 reference (37 · 4 rows: cheap).
    let (mut out_err, mut lse_err) = (0.0f64, 0.0f64);
    for head in 0..H {
        for pos in 0..N {
            let (r_out, r_lse) = reference(&q, &k, &v, head, pos);
            let i = head * N + pos;
            for (d, r) in r_out.iter().enumerate() {
                out_err = out_err.max((zig_out[i * D + d] as f64 - r).abs());
            }
            lse_err = lse_err.max((zig_lse[i] as f64 - r_lse).abs());
        }
    }
    assert!(
        out_err <= 2e-5,
        "out differs from the reference by {out_err}"
    );
    assert!(
        lse_err <= 1e-5,
        "lse differs from the reference by {lse_err}"
    );
    // Row 0 attends only key 0: out = v[kv_head][0] exactly (up to rounding).
    for head in 0..H {
        let kv_head = head / (H / HKV);
        let got = &zig_out[head * N * D..][..D];
        let want = &v[kv_head * N * D..][..D];
        assert!(max_diff(got, want) <= 1e-6, "head {head} row 0");
    }

    for (name, extra) in [
        (
            "contiguous.safetensors",
            ["--workers", "2", "--causal", "--layout", "contiguous"],
        ),
        (
            "striped.safetensors",
            ["--workers", "3", "--causal", "--layout", "striped"],
        ),
    ] {
        let path = dir.path().join(name);
        let (out, lse) = run_to_output(&input, &path, &extra);
        let d_out = max_diff(&out, &zig_out);
        let d_lse = max_diff(&lse, &zig_lse);
        assert!(d_out <= 2e-5, "{name}: out differs from zigzag by {d_out}");
        assert!(d_lse <= 2e-5, "{name}: lse differs from zigzag by {d_lse}");
    }

    // No temporary files left beside the outputs.
    assert_no_temporary_files(dir.path());
}

#[test]
fn single_worker_output_is_bitwise_independent_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("qkv.safetensors");
    write_qkv(&input, &[H, N, D], &[HKV, N, D], &[HKV, N, D]);
    for tiles in [&[][..], &["--tile-q", "8", "--tile-k", "8"][..]] {
        let mut results = Vec::new();
        for threads in ["1", "3"] {
            let path = dir.path().join(format!("t{threads}.safetensors"));
            let mut extra = vec![
                "--workers",
                "1",
                "--threads",
                threads,
                "--oversubscribe",
                "--causal",
            ];
            extra.extend_from_slice(tiles);
            results.push(run_to_output(&input, &path, &extra));
        }
        let (a, b) = (&results[0], &results[1]);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(
            bits(&a.0) == bits(&b.0),
            "out differs between --threads 1 and 3 (tiles {tiles:?})"
        );
        assert!(
            bits(&a.1) == bits(&b.1),
            "lse differs between --threads 1 and 3 (tiles {tiles:?})"
        );
    }
}
