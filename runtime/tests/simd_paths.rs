//! Every SIMD micro-kernel path against the portable path and the f64 reference, on every tile
//! class: Full, Partial at every diagonal offset and window edge, Empty; odd head dims (tails
//! of 16- and 8-lane vectors; multiples of 32 for the AMX path), sequences that are not
//! multiples of the tile, GQA.

use ringattn_runtime::{
    attend_with, count_tiles, AttnState, Isa, KvBlock, Mask, Positions, QShard, RowSource,
    Synthetic, TensorKind, TileShape,
};

const OUT_TOL: f64 = 2e-5;
const LSE_TOL: f64 = 1e-5;
/// SIMD vs portable: both are f32 with different rounding (FMA, polynomial exp, sum order).
const PATH_TOL: f32 = 1e-5;

struct Case {
    q_pos: Positions,
    k_pos: Positions,
    n: usize,
    heads: usize,
    kv_heads: usize,
    dim: usize,
    mask: Mask,
    tile: TileShape,
}

fn run(
    isa: Isa,
    case: &Case,
    src: &Synthetic,
) -> (ringattn_runtime::Finalized, ringattn_runtime::TileCounts) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let q = QShard::from_source(src, case.heads, case.dim, case.q_pos.clone()).unwrap();
    let kv = KvBlock::from_source(src, 0, case.kv_heads, case.dim, case.k_pos.clone()).unwrap();
    let mut state = AttnState::new(case.heads, q.rows(), case.dim);
    let counts = attend_with(
        isa,
        &q,
        &kv,
        case.mask.clone(),
        case.tile,
        &mut state,
        &pool,
    );
    (state.finalize(), counts)
}

fn check(case: &Case) {
    let src = Synthetic { seed: 11 };
    let (portable, portable_counts) = run(Isa::Portable, case, &src);
    let (d, rows) = (case.dim, case.q_pos.len());
    // Reference over exactly the keys of the block (k_pos), by global position.
    let mut keys = vec![0.0f32; case.n * d];
    let mut values = vec![0.0f32; case.n * d];
    let key_set: Vec<usize> = case.k_pos.iter().collect();
    for isa in Isa::available() {
        let (got, counts) = run(isa, case, &src);
        assert_eq!(counts, portable_counts, "{isa:?}: tile counts differ");
        let expected = count_tiles(&case.q_pos, &case.k_pos, case.mask.clone(), case.tile);
        assert_eq!(counts.computed(), expected.computed() * case.heads as u64);
        for (a, b) in got.out.iter().zip(&portable.out) {
            assert!(
                (a - b).abs() <= PATH_TOL,
                "{isa:?} vs portable out: {a} vs {b}"
            );
        }
        for (a, b) in got.lse.iter().zip(&portable.lse) {
            assert!(
                a == b || (a - b).abs() <= PATH_TOL,
                "{isa:?} vs portable lse: {a} vs {b}"
            );
        }
        for kv_head in 0..case.kv_heads {
            keys.fill(0.0);
            values.fill(0.0);
            for &pos in &key_set {
                src.fill_row(
                    TensorKind::K,
                    kv_head,
                    pos,
                    &mut keys[pos * d..(pos + 1) * d],
                )
                .unwrap();
                src.fill_row(
                    TensorKind::V,
                    kv_head,
                    pos,
                    &mut values[pos * d..(pos + 1) * d],
                )
                .unwrap();
            }
            let group = case.heads / case.kv_heads;
            for head in kv_head * group..(kv_head + 1) * group {
                for (row, qp) in case.q_pos.iter().enumerate() {
                    let mut q_row = vec![0.0f32; d];
                    src.fill_row(TensorKind::Q, head, qp, &mut q_row).unwrap();
                    // Keys outside the block must not count: restrict the mask to the block.
                    let block_mask = |k: usize| key_set.binary_search(&k).is_ok();
                    let (out, lse) = reference_subset(
                        &q_row,
                        qp,
                        &keys,
                        &values,
                        d,
                        case.mask.clone(),
                        &block_mask,
                    );
                    let i = head * rows + row;
                    let err = got.out[i * d..(i + 1) * d]
                        .iter()
                        .zip(&out)
                        .map(|(&g, &r)| (g as f64 - r).abs())
                        .fold(0.0, f64::max);
                    assert!(err <= OUT_TOL, "{isa:?} head {head} q {qp}: out err {err}");
                    if lse.is_finite() {
                        let e = (got.lse[i] as f64 - lse).abs();
                        assert!(e <= LSE_TOL, "{isa:?} head {head} q {qp}: lse err {e}");
                    } else {
                        assert_eq!(got.lse[i], f32::NEG_INFINITY, "{isa:?}: a row with no key");
                    }
                }
            }
        }
    }
}

/// The f64 definition of attention over the keys of one block only (the library's
/// `reference_row` always uses every key of the sequence).
fn reference_subset(
    q: &[f32],
    q_pos: usize,
    keys: &[f32],
    values: &[f32],
    d: usize,
    mask: Mask,
    in_block: &dyn Fn(usize) -> bool,
) -> (Vec<f64>, f64) {
    let n = keys.len() / d;
    let scale = 1.0 / (d as f64).sqrt();
    let mut best = f64::NEG_INFINITY;
    let scores: Vec<Option<f64>> = (0..n)
        .map(|k| {
            (in_block(k) && mask.allows(q_pos, k)).then(|| {
                let s = q
                    .iter()
                    .zip(&keys[k * d..(k + 1) * d])
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()
                    * scale;
                best = best.max(s);
                s
            })
        })
        .collect();
    if best == f64::NEG_INFINITY {
        return (vec![0.0; d], f64::NEG_INFINITY);
    }
    let mut out = vec![0.0f64; d];
    let mut sum = 0.0;
    for (k, s) in scores.iter().enumerate() {
        if let Some(s) = s {
            let p = (s - best).exp();
            sum += p;
            for (o, &v) in out.iter_mut().zip(&values[k * d..(k + 1) * d]) {
                *o += p * v as f64;
            }
        }
    }
    out.iter_mut().for_each(|o| *o /= sum);
    (out, best + sum.ln())
}

#[test]
fn full_tiles_with_odd_dims_and_ragged_tiles() {
    for dim in [16, 64, 80, 100, 128, 7] {
        check(&Case {
            q_pos: Positions::contiguous(0, 70),
            k_pos: Positions::contiguous(0, 83),
            n: 83,
            heads: 4,
            kv_heads: 2,
            dim,
            mask: Mask::None,
            tile: TileShape { q: 16, k: 32 },
        });
    }
}

#[test]
fn default_tiles_with_row_blocks_and_constant_strides() {
    // The default 256 × 128 tiles: 64-row blocks inside the tile, re-classified on Partial tiles
    // (Empty blocks skipped, Full ones not blanked), and the register blocks specialised for
    // D = 64/128 and a P stride of 128. 300 rows: a full and a ragged query tile.
    let masks = [
        Mask::None,
        Mask::Causal,
        Mask::Streaming {
            sink: 4,
            recent: 100,
        },
    ];
    for (mask, dim) in masks.into_iter().flat_map(|m| [(m.clone(), 64), (m, 128)]) {
        check(&Case {
            q_pos: Positions::contiguous(0, 300),
            k_pos: Positions::contiguous(0, 300),
            n: 300,
            heads: 2,
            kv_heads: 1,
            dim,
            mask,
            tile: TileShape::default(),
        });
    }
}

#[test]
fn partial_tiles_at_every_diagonal_offset() {
    // Queries [off, off + 40) against keys [0, 80): the causal diagonal crosses the key tiles
    // at every offset, including tiles that become Full or Empty. D = 32 runs the AMX path too.
    for (off, dim) in (0..48).flat_map(|off| [(off, 24), (off, 32)]) {
        check(&Case {
            q_pos: Positions::contiguous(off, 40),
            k_pos: Positions::contiguous(0, 80),
            n: 120,
            heads: 2,
            kv_heads: 1,
            dim,
            mask: Mask::Causal,
            tile: TileShape { q: 16, k: 16 },
        });
    }
}

#[test]
fn partial_tiles_at_window_and_sink_edges() {
    let windows = [(0, 1), (1, 1), (4, 16), (3, 17), (16, 16), (0, 33), (40, 5)];
    for ((sink, recent), dim) in windows.into_iter().flat_map(|w| [(w, 48), (w, 64)]) {
        check(&Case {
            q_pos: Positions::contiguous(0, 97),
            k_pos: Positions::contiguous(0, 97),
            n: 97,
            heads: 3,
            kv_heads: 1,
            dim,
            mask: Mask::Streaming { sink, recent },
            tile: TileShape { q: 16, k: 16 },
        });
    }
}

#[test]
fn empty_tiles_and_strided_positions() {
    // Keys entirely after the queries (Empty everywhere), and striped positions where every
    // diagonal tile is Partial.
    check(&Case {
        q_pos: Positions::contiguous(0, 20),
        k_pos: Positions::contiguous(40, 30),
        n: 70,
        heads: 2,
        kv_heads: 2,
        dim: 32,
        mask: Mask::Causal,
        tile: TileShape { q: 8, k: 8 },
    });
    check(&Case {
        q_pos: Positions::strided(1, 50, 3),
        k_pos: Positions::strided(2, 50, 3),
        n: 152,
        heads: 6,
        kv_heads: 3,
        dim: 96,
        mask: Mask::Causal,
        tile: TileShape { q: 16, k: 16 },
    });
}

#[test]
fn isa_list_is_consistent() {
    let all = Isa::available();
    assert_eq!(all.last(), Some(&Isa::Portable));
    assert_eq!(all[0], Isa::best());
}

#[test]
fn bf16_kv_on_every_path_is_within_2e_2_and_halves_the_bytes() {
    // D = 80 runs the vector paths; D = 64 also the AMX path (one bf16 part per K/V value).
    for dim in [80, 64] {
        bf16_case(dim);
    }
}

fn bf16_case(dim: usize) {
    use ringattn_runtime::reference::reference_row;
    use ringattn_runtime::Dtype;
    let src = Synthetic { seed: 5 };
    let (n, heads, kv_heads) = (150, 4, 2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let pos = Positions::contiguous(0, n);
    let q = QShard::from_source(&src, heads, dim, pos.clone()).unwrap();
    let f32_kv = KvBlock::from_source(&src, 0, kv_heads, dim, pos.clone()).unwrap();
    let kv = KvBlock::from_source_as(&src, 0, kv_heads, dim, pos, Dtype::Bf16).unwrap();
    assert_eq!(kv.dtype(), Dtype::Bf16);
    assert_eq!(2 * kv.payload_bytes(), f32_kv.payload_bytes());
    assert_eq!(2 * kv.allocated_bytes(), f32_kv.allocated_bytes());
    let tile = TileShape { q: 32, k: 48 };
    let run = |isa: Isa| {
        let mut state = AttnState::new(heads, n, dim);
        attend_with(isa, &q, &kv, Mask::Causal, tile, &mut state, &pool);
        state.finalize()
    };
    let portable = run(Isa::Portable);
    let all_keys = |t: TensorKind, h: usize| {
        let mut out = vec![0.0f32; n * dim];
        for (p, row) in out.chunks_mut(dim).enumerate() {
            src.fill_row(t, h, p, row).unwrap();
        }
        out
    };
    for isa in Isa::available() {
        let got = run(isa);
        // The AVX512-BF16 path rounds the probabilities to bf16 for vdpbf16ps: 2⁻⁹·max|v|.
        let bf16_dot = isa == Isa::Avx512 && std::arch::is_x86_feature_detected!("avx512bf16");
        let tol = if bf16_dot { 1.0 / 512.0 } else { PATH_TOL };
        for (a, b) in got.out.iter().zip(&portable.out) {
            assert!(
                (a - b).abs() <= tol,
                "{isa:?} vs portable (bf16): {a} vs {b}"
            );
        }
        let (mut max_out, mut max_lse) = (0.0f64, 0.0f64);
        for head in 0..heads {
            let kvh = head / (heads / kv_heads);
            let (keys, values) = (all_keys(TensorKind::K, kvh), all_keys(TensorKind::V, kvh));
            for row in [0, 1, 63, 64, 100, n - 1] {
                let (out, lse) =
                    reference_row(q.row(head, row), row, &keys, &values, dim, Mask::Causal);
                let i = head * n + row;
                for (g, r) in got.out[i * dim..(i + 1) * dim].iter().zip(&out) {
                    max_out = max_out.max((*g as f64 - r).abs());
                }
                max_lse = max_lse.max((got.lse[i] as f64 - lse).abs());
            }
        }
        assert!(
            max_out <= 2e-2 && max_lse <= 2e-2,
            "{isa:?}: bf16 errors out {max_out} lse {max_lse}"
        );
        // bf16 really rounds: the result is not the f32 one.
        assert!(
            max_out > 1e-6,
            "{isa:?}: bf16 path looks like f32 ({max_out})"
        );
    }
}

#[test]
fn each_path_runs_under_its_own_kernel_class_and_amx_falls_back_only_for_odd_dims() {
    use ringattn_runtime::{SchedConfig, SchedKind, Scheduler};
    let sched = Scheduler::new(SchedConfig::new(SchedKind::Static, 1, Vec::new())).unwrap();
    let src = Synthetic { seed: 3 };
    let class_of = |isa: Isa, dim: usize| {
        let pos = Positions::contiguous(0, 70);
        let q = QShard::from_source(&src, 2, dim, pos.clone()).unwrap();
        let kv = KvBlock::from_source(&src, 0, 1, dim, pos).unwrap();
        let mut state = AttnState::new(2, 70, dim);
        let tile = TileShape { q: 32, k: 32 };
        attend_with(isa, &q, &kv, Mask::Causal, tile, &mut state, &sched);
        sched.last_call().class
    };
    for isa in Isa::available() {
        let want = format!("attention-f32-{}", isa.name());
        assert_eq!(class_of(isa, 64), want, "{isa:?} at D = 64");
    }
    if Isa::Amx.is_available() {
        // Head dims that are not a multiple of 32 take the AVX-512 path.
        assert_eq!(class_of(Isa::Amx, 80), "attention-f32-avx512");
    }
}

/// The kernel paths the CPU advertises (Linux `/proc/cpuinfo` flags), or `None` where they
/// cannot be read.
fn cpu_isas() -> Option<Vec<Isa>> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let flags: Vec<&str> = info
        .lines()
        .find(|l| l.starts_with("flags"))?
        .split_whitespace()
        .collect();
    let has = |f: &str| flags.contains(&f);
    let mut isas = Vec::new();
    if has("amx_tile") && has("amx_bf16") && has("avx512f") {
        isas.push(Isa::Amx);
    }
    if has("avx512f") {
        isas.push(Isa::Avx512);
    }
    if has("avx2") && has("fma") {
        isas.push(Isa::Avx2);
    }
    isas.push(Isa::Portable);
    Some(isas)
}

/// Says which paths the tests above ran (they run every path of `Isa::available()`), and under
/// CI (`CI=true`) fails when the CPU advertises one they could not run (e.g. AMX without the
/// operating system's permission), so a CI machine never passes with a path untested.
#[test]
fn reports_the_paths_it_ran_and_misses_none_under_ci() {
    let ran = Isa::available();
    let names = |isas: &[Isa]| isas.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ");
    println!("simd_paths: ran the {} paths", names(&ran));
    let Some(cpu) = cpu_isas() else {
        println!("simd_paths: cannot read the CPU's flags; nothing more to check");
        return;
    };
    let missed: Vec<Isa> = cpu.into_iter().filter(|i| !ran.contains(i)).collect();
    if missed.is_empty() {
        return;
    }
    let msg = format!(
        "simd_paths: the CPU advertises {} but the tests could not run it",
        names(&missed)
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    println!("{msg} (a failure under CI=true)");
}
