//! Numerics stress test (issue 13): finite inputs with extreme scores give the right softmax on
//! every instruction-set path this CPU has, against the f64 reference with tolerances relative
//! to the magnitudes involved; where f32 cannot hold the result the state says so and
//! `finalize_checked` returns a typed error naming tensor, head and position — never a NaN or
//! an infinity passed off as a result.

use ringattn_runtime::reference::reference_row;
use ringattn_runtime::{
    attend_with, AttnState, Error, Isa, KvBlock, Mask, Positions, QShard, Result, RowSource,
    TensorKind, TileShape,
};

/// Inputs given element by element: `f(tensor, head, position, index)`.
struct Elements<F>(F);

impl<F: Fn(TensorKind, usize, usize, usize) -> f32 + Sync> RowSource for Elements<F> {
    fn fill_row(&self, t: TensorKind, head: usize, pos: usize, out: &mut [f32]) -> Result<()> {
        for (i, x) in out.iter_mut().enumerate() {
            *x = (self.0)(t, head, pos, i);
        }
        Ok(())
    }
}

struct Case {
    what: &'static str,
    n: usize,
    dim: usize,
    mask: Mask,
    tile: TileShape,
}

/// Runs `case` on `isa`; returns the state and the inputs (for the reference).
fn run<F>(case: &Case, isa: Isa, f: &F) -> (AttnState, QShard, KvBlock)
where
    F: Fn(TensorKind, usize, usize, usize) -> f32 + Sync,
{
    let src = Elements(f);
    let pos = Positions::contiguous(0, case.n);
    let q = QShard::from_source(&src, 2, case.dim, pos.clone()).unwrap();
    let kv = KvBlock::from_source(&src, 0, 1, case.dim, pos).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut state = AttnState::new(2, case.n, case.dim);
    attend_with(
        isa,
        &q,
        &kv,
        case.mask.clone(),
        case.tile,
        &mut state,
        &pool,
    );
    (state, q, kv)
}

/// Every path against the f64 reference: |out − ref| ≤ 1e-5·(|ref| + max|v|) + n·2⁻¹⁴⁹·4
/// (the last term: denormal spacing) and |lse − ref| ≤ 2e-6·(|ref| + M) + 1e-5, where M is the
/// largest Σ|qᵢ·kᵢ|/√d of the row: an f32 dot product's rounding is relative to its terms, not
/// to its (possibly cancelled) sum.
fn check<F>(case: &Case, f: F)
where
    F: Fn(TensorKind, usize, usize, usize) -> f32 + Sync,
{
    let tiny = case.n as f64 * f64::from(f32::from_bits(1)) * 4.0;
    for isa in Isa::available() {
        let (state, q, kv) = run(case, isa, &f);
        let fin = state
            .finalize_checked(&q.positions)
            .unwrap_or_else(|e| panic!("{} {isa:?}: {e}", case.what));
        let (k, v) = (kv.k.as_f32().unwrap(), kv.v.as_f32().unwrap());
        let vmax = v.iter().fold(0.0f64, |a, &x| a.max(f64::from(x).abs()));
        for h in 0..2 {
            for r in 0..case.n {
                let (want, want_lse) =
                    reference_row(q.row(h, r), r, k, v, case.dim, case.mask.clone());
                let i = h * case.n + r;
                let got = &fin.out[i * case.dim..(i + 1) * case.dim];
                for (c, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    let err = (f64::from(g) - w).abs();
                    assert!(
                        err <= 1e-5 * (w.abs() + vmax) + tiny,
                        "{} {isa:?} head {h} row {r} col {c}: out {g} vs {w}",
                        case.what
                    );
                }
                let lse = f64::from(fin.lse[i]);
                let terms = k
                    .chunks_exact(case.dim)
                    .map(|key| {
                        let qr = q.row(h, r).iter().zip(key);
                        qr.map(|(&a, &b)| f64::from(a * b).abs()).sum::<f64>()
                    })
                    .fold(0.0, f64::max)
                    / (case.dim as f64).sqrt();
                assert!(
                    (lse - want_lse).abs() <= 2e-6 * (want_lse.abs() + terms) + 1e-5,
                    "{} {isa:?} head {h} row {r}: lse {lse} vs {want_lse}",
                    case.what
                );
            }
        }
    }
}

fn case(what: &'static str, n: usize, dim: usize, mask: Mask, tile: usize) -> Case {
    Case {
        what,
        n,
        dim,
        mask,
        tile: TileShape { q: tile, k: tile },
    }
}

/// A deterministic value in [−1, 1) from (tensor, head, position, index).
fn hash(t: TensorKind, h: usize, p: usize, i: usize) -> f32 {
    let mut x =
        (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((h * 7919 + p * 131 + i) as u64);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    (x % 2_000_001) as f32 / 1_000_000.0 - 1.0
}

#[test]
fn the_issue_case_gives_three_and_a_half_for_every_magnitude() {
    // q all c, k all 1, v row j = j, 8 keys, d = 16: every score 4c, out 3.5, lse 4c + ln 8.
    for c in [1e12f32, 1e20, 1e30] {
        for dim in [16, 64] {
            let f = move |t, _h, p: usize, _i| match t {
                TensorKind::Q => c,
                TensorKind::K => 1.0,
                TensorKind::V => p as f32,
            };
            for isa in Isa::available() {
                let cs = case("issue", 8, dim, Mask::None, 8);
                let (state, q, _) = run(&cs, isa, &f);
                let fin = state.finalize_checked(&q.positions).unwrap();
                assert!(
                    fin.out.iter().all(|&o| o == 3.5),
                    "{isa:?} c={c}: {:?}",
                    fin.out
                );
                let want = (c as f64) * (dim as f64).sqrt() + 8f64.ln();
                for &l in &fin.lse {
                    assert!(
                        (l as f64 - want).abs() <= 1e-6 * want,
                        "{isa:?}: {l} vs {want}"
                    );
                }
            }
            check(&case("issue", 8, dim, Mask::None, 8), f);
        }
    }
}

#[test]
fn very_negative_scores_under_a_causal_mask() {
    // Every score −4e20 (or −4e25, −4e30): row i averages v over keys 0..=i.
    for (a, b) in [(1e10f32, -1e10f32), (1e12, -1e13), (1e15, -1e15)] {
        let f = move |t, _h, p: usize, _i| match t {
            TensorKind::Q => a,
            TensorKind::K => b,
            TensorKind::V => p as f32,
        };
        check(&case("very negative", 40, 16, Mask::Causal, 16), f);
        check(&case("very negative d64", 40, 64, Mask::Causal, 16), f);
    }
}

#[test]
fn all_equal_keys_over_many_tiles() {
    // Identical key rows: every allowed score is equal, out = mean of the allowed V rows.
    for scale in [1.0f32, 1e15, 1e-15] {
        let f = move |t, h, p, i| match t {
            TensorKind::Q => hash(t, h, p, i) * scale,
            TensorKind::K => hash(t, 0, 0, i) * scale,
            TensorKind::V => hash(t, h, p, i),
        };
        check(&case("equal keys", 300, 16, Mask::Causal, 64), f);
        check(&case("equal keys unmasked", 300, 64, Mask::None, 64), f);
    }
}

#[test]
fn extreme_magnitudes_and_denormals() {
    // Huge random scores (one-hot softmax), vanishing ones (uniform), denormal Q/K and V.
    for (qk, v) in [(1e15f32, 1.0f32), (1e-15, 1.0), (1e-20, 1.0), (1.0, 1e-39)] {
        let f = move |t, h, p, i| match t {
            TensorKind::Q | TensorKind::K => hash(t, h, p, i) * qk,
            TensorKind::V => hash(t, h, p, i) * v,
        };
        check(&case("magnitudes", 200, 16, Mask::Causal, 32), f);
        check(&case("magnitudes d64", 130, 64, Mask::None, 64), f);
    }
}

#[test]
fn a_running_max_that_jumps_by_orders_of_magnitude_across_tiles() {
    // k_j = 1.5^j: each new key tile raises the max by a factor ~1e3; alpha underflows to 0.
    let f = |t, _h, p: usize, i: usize| match t {
        TensorKind::Q => 1.0,
        TensorKind::K => 1.5f32.powi(p as i32),
        TensorKind::V => (p * 3 + i) as f32,
    };
    check(&case("jumps", 96, 16, Mask::Causal, 16), f);
    check(&case("jumps unmasked", 96, 64, Mask::None, 16), f);
}

#[test]
fn overflowing_scores_and_sums_are_typed_errors_never_nan_results() {
    // q·k = 1.6e41 > f32::MAX: no f32 result exists.
    let f = |t, _h, p: usize, _i| match t {
        TensorKind::Q if p >= 5 => 1e20f32,
        TensorKind::Q => 1.0,
        TensorKind::K => 1e20,
        TensorKind::V => 1.0,
    };
    for isa in Isa::available() {
        let (state, q, _) = run(&case("overflow", 8, 16, Mask::Causal, 4), isa, &f);
        let e = state.finalize_checked(&q.positions).unwrap_err();
        let Error::Overflow {
            tensor,
            head,
            position,
            ..
        } = &e
        else {
            panic!("{isa:?}: {e}");
        };
        assert_eq!(
            (*tensor, *head, *position),
            ("scores", 0, 5),
            "{isa:?}: {e}"
        );
        assert!(!e.is_user_error());
        let fin = state.finalize();
        // Head 0: rows 0..5 are fine (scores 4e20, all equal), rows 5..8 overflowed.
        assert!(
            fin.out[5 * 16..8 * 16].iter().all(|x| x.is_nan()),
            "{isa:?}"
        );
        assert!(
            fin.out[..5 * 16].iter().all(|&x| x == 1.0),
            "{isa:?} {:?}",
            fin.out
        );
        // Merged with a normal state (the ring pass), the row stays marked.
        let mut merged = AttnState::new(2, 8, 16);
        merged.merge(&state);
        merged.merge(&run(&case("overflow", 8, 16, Mask::Causal, 4), Isa::Portable, &f).0);
        assert!(merged.finalize_checked(&q.positions).is_err());
    }
    // One key whose products overflow with both signs (q·k = ∞ − ∞ = NaN in f32) among
    // ordinary keys: the row max stays finite, the NaN shows in the row sum on every path.
    let h = |t, _h, p: usize, i: usize| match t {
        TensorKind::Q if p == 6 => 1e20f32,
        TensorKind::Q => 1.0,
        TensorKind::K if p == 3 => {
            if i.is_multiple_of(2) {
                1e20
            } else {
                -1e20
            }
        }
        TensorKind::K => 1.0,
        TensorKind::V => 1.0,
    };
    for isa in Isa::available() {
        for tile in [4, 8] {
            let (state, q, _) = run(&case("nan score", 8, 16, Mask::None, tile), isa, &h);
            match state.finalize_checked(&q.positions) {
                Err(Error::Overflow {
                    tensor,
                    head,
                    position,
                    ..
                }) => assert_eq!((tensor, head, position), ("scores", 0, 6), "{isa:?}"),
                other => panic!("{isa:?} tile {tile}: {other:?}"),
            }
        }
    }
    // V near f32::MAX: the unnormalised sum of 8 rows would exceed f32, the output (a convex
    // combination of V rows) does not; the state scales V by 2^-64 and finalize scales back.
    for (what, v) in [
        ("big v", 3e38f32),
        ("big -v", -3e38),
        ("v = f32::MAX", f32::MAX),
    ] {
        let g = move |t, _h, p: usize, i: usize| match t {
            TensorKind::V if (p + i).is_multiple_of(3) => -v,
            TensorKind::V => v,
            _ => hash(t, 0, p, i),
        };
        for mask in [Mask::None, Mask::Causal] {
            for tile in [4, 8] {
                check(&case(what, 8, 16, mask.clone(), tile), g);
            }
        }
        // All rows equal: the output is v within rounding and finite (the scale-back never
        // rounds it to ±∞, even for v = f32::MAX).
        let same = move |t, _h, _p, _i| if t == TensorKind::V { v } else { 1.0 };
        for isa in Isa::available() {
            let (state, q, _) = run(&case(what, 8, 16, Mask::None, 8), isa, &same);
            assert_eq!(
                state.v_exp,
                ringattn_runtime::vscale::V_SCALE_EXP,
                "{isa:?}"
            );
            let fin = state.finalize_checked(&q.positions).unwrap();
            let ok = |x: f32| x.is_finite() && (x - v).abs() <= 1e-6 * v.abs();
            assert!(
                fin.out.iter().all(|&x| ok(x)),
                "{what} {isa:?}: {:?}",
                &fin.out[..4]
            );
        }
    }
}

/// A huge-V block and an ordinary one, in either order and merged from separate states, give the
/// same answer as one pass over both (the state brings both to one exponent).
#[test]
fn mixed_v_scales_merge() {
    let f = |t, _h, p: usize, i: usize| match t {
        TensorKind::V if p >= 4 => 3e38 * hash(t, 0, p, i),
        _ => hash(t, 0, p, i),
    };
    let src = Elements(f);
    let q = QShard::from_source(&src, 2, 16, Positions::contiguous(0, 8)).unwrap();
    let block = |a, b| KvBlock::from_source(&src, 0, 1, 16, Positions::contiguous(a, b)).unwrap();
    let (lo, hi, all) = (block(0, 4), block(4, 4), block(0, 8));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let go = |blocks: &[&KvBlock]| {
        let mut s = AttnState::new(2, 8, 16);
        for b in blocks {
            let t = TileShape { q: 4, k: 4 };
            attend_with(Isa::Portable, &q, b, Mask::None, t, &mut s, &pool);
        }
        s
    };
    let want = go(&[&all]).finalize_checked(&q.positions).unwrap();
    let mut merged_a = go(&[&lo]);
    merged_a.merge(&go(&[&hi]));
    let mut merged_b = go(&[&hi]);
    merged_b.merge(&go(&[&lo]));
    for got in [go(&[&lo, &hi]), go(&[&hi, &lo]), merged_a, merged_b] {
        let fin = got.finalize_checked(&q.positions).unwrap();
        for (g, w) in fin.out.iter().zip(&want.out) {
            assert!((g - w).abs() <= 1e-5 * 3e38, "{g} vs {w}");
        }
        assert!(fin.out.iter().any(|x| x.abs() > 1e36));
    }
}
