//! The grouped softmax of the SIMD paths (f32, and the bf16 path writing key pairs) ([`Micro::softmax_rows`]) is bitwise their one-row
//! step ([`Micro::softmax_row`]) on every row: tails, blocked rows, overflowing rows, rows
//! whose running max moves or stays, and group remainders.

use super::driver::Micro;

/// Deterministic scores in `[-span, span]` (splitmix64).
fn scores(seed: u64, n: usize, span: f32) -> Vec<f32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * span
        })
        .collect()
}

/// Row `i` of a case: ordinary, huge, blocked, partly blocked, +∞ or NaN scores.
fn fill_row(row: &mut [f32], i: usize, seed: u64) {
    let span = if i % 7 == 3 { 4e20 } else { 12.0 };
    row.copy_from_slice(&scores(seed + i as u64, row.len(), span));
    match i % 9 {
        2 => row.fill(f32::NEG_INFINITY),
        4 => row
            .iter_mut()
            .step_by(3)
            .for_each(|x| *x = f32::NEG_INFINITY),
        6 if i.is_multiple_of(2) => row[row.len() / 2] = f32::INFINITY,
        8 => row[0] = f32::NAN,
        _ => {}
    }
}

fn check<M: Micro>(micro: M) {
    for (nq, nk) in [
        (1usize, 1usize),
        (3, 7),
        (4, 16),
        (5, 33),
        (9, 128),
        (13, 100),
        (64, 128),
    ] {
        let ld = nk.next_multiple_of(M::LANES);
        for seed in [1u64, 99] {
            let mut s = vec![0.0f32; nq * ld];
            for (i, row) in s.chunks_mut(ld).enumerate() {
                fill_row(&mut row[..nk], i, seed * 1000);
            }
            // Fresh rows, rows whose max will not move and rows with a small earlier max.
            let m0: Vec<f32> = (0..nq)
                .map(|i| [f32::NEG_INFINITY, 1e3, -5.0][(i + seed as usize) % 3])
                .collect();
            let l0: Vec<f32> = (0..nq).map(|i| i as f32 * 0.5).collect();
            let (mut s1, mut m1, mut l1, mut a1) =
                (s.clone(), m0.clone(), l0.clone(), vec![0.0; nq]);
            for (i, row) in s1.chunks_mut(ld).enumerate() {
                a1[i] = micro.softmax_row(&mut row[..nk], 0.125, &mut m1[i], &mut l1[i]);
            }
            let (mut s4, mut m4, mut l4, mut a4) = (s, m0, l0, vec![0.0; nq]);
            micro.softmax_rows(&mut s4, ld, nk, 0.125, &mut m4, &mut l4, &mut a4);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let case = format!("{:?} nq {nq} nk {nk} seed {seed}", M::ISA);
            for r in 0..nq {
                let (a, b) = (&s1[r * ld..r * ld + nk], &s4[r * ld..r * ld + nk]);
                assert_eq!(bits(a), bits(b), "{case}: probabilities of row {r}");
            }
            assert_eq!(bits(&m1), bits(&m4), "{case}: running max");
            assert_eq!(bits(&l1), bits(&l4), "{case}: running sum");
            assert_eq!(bits(&a1), bits(&a4), "{case}: alpha");
        }
    }
}

#[test]
fn grouped_softmax_is_bitwise_the_one_row_step_on_every_simd_path() {
    let mut ran = vec![];
    if let Some(m) = super::avx512::Avx512::new() {
        check(m);
        ran.push("avx512");
    }
    if let Some(m) = super::avx512_bf16::Avx512Bf16::new(false) {
        check(m);
        ran.push("avx512-bf16");
    }
    if let Some(m) = super::avx2::Avx2::new() {
        check(m);
        ran.push("avx2");
    }
    check(super::portable::Portable);
    eprintln!("grouped softmax checked on: {ran:?} + portable");
}
