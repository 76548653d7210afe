//! Tile classification, blocked ranges and pair counts against brute force.
use super::*;

fn brute(mask: &Mask, q: (usize, usize), k: (usize, usize)) -> TileClass {
    let mut any = false;
    let mut all = true;
    for qp in q.0..=q.1 {
        for kp in k.0..=k.1 {
            let a = mask.allows(qp, kp);
            any |= a;
            all &= a;
        }
    }
    match (any, all) {
        (false, _) => TileClass::Empty,
        (true, true) => TileClass::Full,
        _ => TileClass::Partial,
    }
}

#[test]
fn classification_matches_brute_force_on_dense_tiles() {
    let masks = [
        Mask::None,
        Mask::Causal,
        Mask::Streaming { sink: 3, recent: 5 },
        Mask::Streaming { sink: 0, recent: 1 },
    ];
    for mask in masks {
        for ql in 0..12 {
            for qh in ql..12 {
                for kl in 0..12 {
                    for kh in kl..12 {
                        assert_eq!(
                            mask.classify(ql, qh, kl, kh),
                            brute(&mask, (ql, qh), (kl, kh)),
                            "{mask:?} q=[{ql},{qh}] k=[{kl},{kh}]"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn blocked_ranges_are_exactly_the_forbidden_keys() {
    let masks = [
        Mask::None,
        Mask::Causal,
        Mask::Streaming { sink: 3, recent: 4 },
        Mask::Streaming { sink: 0, recent: 1 },
        Mask::Streaming { sink: 9, recent: 2 },
    ];
    let key_sets: [Vec<usize>; 3] = [
        (0..20).collect(),
        (1..20).step_by(3).collect(),
        vec![2, 3, 4, 15, 16],
    ];
    for mask in masks {
        for keys in &key_sets {
            for q in 0..22 {
                let [a, b] = mask.blocked_key_ranges(q, keys);
                for (j, &k) in keys.iter().enumerate() {
                    let blocked = a.contains(&j) || b.contains(&j);
                    assert_eq!(
                        blocked,
                        !mask.allows(q, k),
                        "{mask:?} q={q} k={k} ranges {a:?} {b:?}"
                    );
                }
                assert!(
                    a.end <= b.start || b.is_empty() || a.is_empty(),
                    "overlapping ranges"
                );
            }
        }
    }
}

#[test]
fn allowed_pairs_matches_brute_force() {
    for mask in [
        Mask::None,
        Mask::Causal,
        Mask::Streaming { sink: 2, recent: 4 },
    ] {
        for n in [0, 1, 3, 17] {
            let brute = (0..n)
                .flat_map(|q| (0..n).map(move |k| (q, k)))
                .filter(|&(q, k)| mask.allows(q, k))
                .count() as u128;
            assert_eq!(mask.allowed_pairs(n), brute, "{mask:?} n={n}");
        }
    }
}

/// Brute-force pair count with the predicate, for masks whose sizes may be near 2^64.
fn brute_pairs(mask: &Mask, n: usize) -> u128 {
    (0..n)
        .flat_map(|q| (0..n).map(move |k| (q, k)))
        .filter(|&(q, k)| mask.allows(q, k))
        .count() as u128
}

#[test]
fn huge_windows_saturate_to_full_attention() {
    let big = [usize::MAX, usize::MAX - 1, usize::MAX / 2 + 1, 1 << 63];
    for &recent in &big {
        for sink in [0, 3, usize::MAX] {
            let mask = Mask::Streaming { sink, recent };
            for n in [0, 1, 5, 13] {
                assert_eq!(mask.allowed_pairs(n), Mask::Causal.allowed_pairs(n));
                assert_eq!(mask.allowed_pairs(n), brute_pairs(&mask, n));
            }
            for ql in 0..10 {
                for qh in ql..10 {
                    for kl in 0..10 {
                        for kh in kl..10 {
                            assert_eq!(
                                mask.classify(ql, qh, kl, kh),
                                Mask::Causal.classify(ql, qh, kl, kh),
                                "{mask:?} q=[{ql},{qh}] k=[{kl},{kh}]"
                            );
                        }
                    }
                }
            }
            let keys: Vec<usize> = (0..12).collect();
            for q in [0, 5, 11, usize::MAX] {
                let [a, b] = mask.blocked_key_ranges(q, &keys);
                for (j, &k) in keys.iter().enumerate() {
                    let blocked = a.contains(&j) || b.contains(&j);
                    assert_eq!(blocked, !mask.allows(q, k), "{mask:?} q={q} k={k}");
                    if q < usize::MAX / 2 {
                        assert_eq!(blocked, k > q, "{mask:?} q={q} k={k}");
                    }
                }
            }
        }
    }
}

#[test]
fn classification_is_exact_near_the_top_of_usize() {
    let m = usize::MAX;
    let masks = [
        Mask::Causal,
        Mask::Streaming { sink: 0, recent: 3 },
        Mask::Streaming {
            sink: m - 2,
            recent: 2,
        },
        Mask::Streaming {
            sink: 1,
            recent: m - 3,
        },
    ];
    let lo = m - 7;
    for mask in masks {
        for ql in lo..=m {
            for qh in ql..=m {
                for kl in lo..=m {
                    for kh in kl..=m {
                        assert_eq!(
                            mask.classify(ql, qh, kl, kh),
                            brute(&mask, (ql, qh), (kl, kh)),
                            "{mask:?} q=[{ql},{qh}] k=[{kl},{kh}]"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn allowed_pairs_closed_form_matches_brute_force_on_many_windows() {
    for sink in 0..6 {
        for recent in 0..9 {
            let mask = Mask::Streaming { sink, recent };
            for n in 0..15 {
                assert_eq!(
                    mask.allowed_pairs(n),
                    brute_pairs(&mask, n),
                    "{mask:?} n={n}"
                );
            }
        }
    }
    let n = usize::MAX;
    let whole = Mask::Streaming { sink: 0, recent: n };
    assert_eq!(whole.allowed_pairs(n), Mask::Causal.allowed_pairs(n));
    assert_eq!(Mask::None.allowed_pairs(n), (n as u128) * (n as u128));
}

fn any_size() -> impl proptest::strategy::Strategy<Value = usize> {
    use proptest::prelude::*;
    prop_oneof![
        0usize..40,
        (0usize..40).prop_map(|x| usize::MAX - x),
        any::<usize>(),
    ]
}

proptest::proptest! {
    /// Tile classes and blocked ranges agree exactly with the predicate for windows (≥ 1)
    /// and sinks anywhere in usize, on tiles anywhere in usize (near 0, near 2^64, in between).
    #[test]
    fn huge_windows_classify_exactly(
        sink in any_size(),
        recent in any_size(),
        base in any_size(),
        offs in proptest::array::uniform4(0usize..12),
    ) {
        // recent = 0 is refused by every plan (a query must see itself); for it the
        // classes are conservative (Partial where Empty), which the kernel masks correctly.
        let mask = Mask::Streaming { sink, recent: recent.max(1) };
        let base = base.min(usize::MAX - 24);
        let (ql, qh) = (base + offs[0].min(offs[1]), base + offs[0].max(offs[1]));
        let (kl, kh) = (base + offs[2].min(offs[3]), base + offs[2].max(offs[3]));
        proptest::prop_assert_eq!(mask.classify(ql, qh, kl, kh), brute(&mask, (ql, qh), (kl, kh)));
        let keys: Vec<usize> = (kl..=kh).collect();
        for q in ql..=qh {
            let [a, b] = mask.blocked_key_ranges(q, &keys);
            for (j, &k) in keys.iter().enumerate() {
                proptest::prop_assert_eq!(a.contains(&j) || b.contains(&j), !mask.allows(q, k));
            }
        }
    }
}
