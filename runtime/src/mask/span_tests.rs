//! Documents and sliding windows against brute force: classification, blocked ranges, pair
//! counts and the visible-key ranges that prune ring traffic.

use proptest::prelude::*;

use super::*;
use crate::positions::Run;

fn brute(mask: &Mask, q: (usize, usize), k: (usize, usize)) -> TileClass {
    let (mut any, mut all) = (false, true);
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

/// The predicate written out from its definition.
fn by_definition(
    causal: bool,
    window: Option<usize>,
    lens: Option<&[usize]>,
    q: usize,
    k: usize,
) -> bool {
    let doc = |p: usize| {
        lens.map(|l| {
            let mut at = 0;
            for (i, &n) in l.iter().enumerate() {
                at += n;
                if p < at {
                    return i;
                }
            }
            l.len() - 1
        })
    };
    let in_window = window.is_none_or(|w| q.abs_diff(k) < w.max(1));
    doc(q) == doc(k) && (!causal || k <= q) && in_window
}

fn spans() -> Vec<(bool, Option<usize>, Option<Vec<usize>>)> {
    let mut out = Vec::new();
    for causal in [true, false] {
        for window in [None, Some(1), Some(3), Some(7), Some(100)] {
            for docs in [None, Some(vec![1, 4, 2, 1, 6]), Some(vec![5, 1, 1, 9])] {
                out.push((causal, window, docs));
            }
        }
    }
    out
}

#[test]
fn span_masks_match_their_definition_and_classify_exactly() {
    for (causal, window, lens) in spans() {
        let docs = lens.as_deref().map(|l| Documents::from_lengths(l).unwrap());
        let mask = Mask::span(causal, window, docs);
        for q in 0..16 {
            for k in 0..16 {
                let want = by_definition(causal, window, lens.as_deref(), q, k);
                assert_eq!(mask.allows(q, k), want, "{mask:?} q={q} k={k}");
            }
        }
        for ql in 0..15 {
            for qh in ql..15 {
                for kl in 0..15 {
                    for kh in kl..15 {
                        assert_eq!(
                            mask.classify(ql, qh, kl, kh),
                            brute(&mask, (ql, qh), (kl, kh)),
                            "{mask:?} q=[{ql},{qh}] k=[{kl},{kh}]"
                        );
                    }
                }
            }
        }
        for n in 0..16 {
            let brute = (0..n)
                .flat_map(|q| (0..n).map(move |k| (q, k)))
                .filter(|&(q, k)| mask.allows(q, k))
                .count() as u128;
            assert_eq!(mask.allowed_pairs(n), brute, "{mask:?} n={n}");
        }
    }
}

#[test]
fn plain_span_is_the_plain_mask() {
    assert_eq!(Mask::span(true, None, None), Mask::Causal);
    assert_eq!(Mask::span(false, None, None), Mask::None);
    assert!(matches!(Mask::span(true, Some(4), None), Mask::Span(_)));
}

#[test]
fn decoded_tokens_belong_to_the_last_document() {
    let docs = Documents::from_lengths(&[3, 2]).unwrap();
    let mask = Mask::span(true, None, Some(docs));
    assert!(mask.allows(7, 3) && mask.allows(1000, 4) && !mask.allows(7, 2));
}

#[test]
fn documents_refuse_bad_lengths() {
    assert_eq!(Documents::from_lengths(&[]), Err(DocsError::NoDocuments));
    assert_eq!(
        Documents::from_lengths(&[3, 0]),
        Err(DocsError::ZeroLength { index: 1 })
    );
    assert_eq!(
        Documents::from_lengths(&[usize::MAX, 1]),
        Err(DocsError::Overflow)
    );
    let d = Documents::from_cu_seqlens(&[0, 3, 4, 10]).unwrap();
    assert_eq!(d.lengths(), vec![3, 1, 6]);
    assert_eq!(d, Documents::from_lengths(&[3, 1, 6]).unwrap());
    assert!(Documents::from_cu_seqlens(&[1, 3]).is_err());
    assert!(Documents::from_cu_seqlens(&[0, 3, 3]).is_err());
    assert!(d.check_total(10).is_ok() && d.check_total(11).is_err());
    let s = d.summary();
    assert_eq!((s.count, s.min, s.median, s.max), (3, 1, 3, 6));
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<Documents>(&json).unwrap(), d);
}

proptest! {
    /// Random documents, windows, causality and strided query runs: blocked ranges are exactly
    /// the forbidden keys, and the visible ranges hold every key some query may see.
    #[test]
    fn blocked_and_visible_keys_match_the_predicate(
        lens in proptest::collection::vec(1usize..9, 1..8),
        causal in any::<bool>(),
        window in proptest::option::of(1usize..20),
        start in 0usize..30,
        stride in 1usize..4,
        len in 1usize..8,
    ) {
        let n: usize = lens.iter().sum();
        let mask = Mask::span(causal, window, Some(Documents::from_lengths(&lens).unwrap()));
        let keys: Vec<usize> = (0..n + 3).collect();
        let queries = Positions::new(vec![Run { start, len, stride }]).unwrap();
        let visible = mask.visible_keys(&queries);
        for q in (0..len).map(|i| start + i * stride) {
            let [a, b] = mask.blocked_key_ranges(q, &keys);
            for (j, &k) in keys.iter().enumerate() {
                let allowed = mask.allows(q, k);
                prop_assert_eq!(a.contains(&j) || b.contains(&j), !allowed);
                if allowed {
                    prop_assert!(visible.iter().any(|r| r.contains(&k)), "{k} not visible");
                }
            }
        }
    }
}
