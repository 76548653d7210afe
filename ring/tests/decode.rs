//! Distributed decode beside its code: every decoded row against the exact f64 attention over
//! all keys so far, plain and with a DuoAttention plan, on the contiguous layout and a
//! round-robin one defined here, P = 1..4, GQA.

use ringattn_ring::duo::{decode, decode_masks, DecodeSpec};
use ringattn_ring::{Contiguous, DuoPlan, HeadKind, Layout};
use ringattn_runtime::{Comm, Dtype, Mask, Positions, Synthetic, TensorKind};
use ringattn_testutil::{max_abs_diff, on_ranks, one_thread, reference_attention, whole};

/// Token i on rank i mod P; decode positions continue the round robin.
#[derive(Debug)]
struct RoundRobin;

impl Layout for RoundRobin {
    fn name(&self) -> &'static str {
        "round-robin"
    }
    fn positions(&self, rank: usize, world: usize, seq: usize) -> Positions {
        Positions::strided(rank, (seq - rank.min(seq)).div_ceil(world), world)
    }
    fn decode_owner(&self, pos: usize, world: usize, _seq: usize) -> usize {
        pos % world
    }
}

fn check(layout: &dyn Layout, world: usize, duo: Option<&DuoPlan>) {
    let spec = DecodeSpec {
        prefill: 23,
        steps: 6,
        heads: 4,
        kv_heads: 2,
        dim: 8,
        dtype: Dtype::F32,
    };
    let total = spec.prefill + spec.steps;
    let src = Synthetic { seed: 9 };
    let outputs = on_ranks(world, |comm: &mut dyn Comm| {
        decode(
            comm,
            layout,
            &src,
            &spec,
            duo,
            &one_thread(),
            &mut |_, _| {},
        )
        .unwrap()
    });
    let (q, k, v) = (
        whole(&src, TensorKind::Q, spec.heads, total, spec.dim),
        whole(&src, TensorKind::K, spec.kv_heads, total, spec.dim),
        whole(&src, TensorKind::V, spec.kv_heads, total, spec.dim),
    );
    let masks = decode_masks(spec.kv_heads, duo);
    let (r_out, _) = reference_attention(
        &q,
        &k,
        &v,
        (spec.heads, spec.kv_heads, total, spec.dim),
        |g| masks[g].clone(),
    );
    let mut decoded = 0;
    for out in &outputs {
        for row in &out.rows {
            decoded += 1;
            for h in 0..spec.heads {
                let d = spec.dim;
                let want = (h * total + row.pos) * d;
                let e = max_abs_diff(&row.out[h * d..(h + 1) * d], &r_out[want..want + d]);
                assert!(
                    e <= 2e-5,
                    "{} P={world} pos {} head {h}: err {e}",
                    layout.name(),
                    row.pos
                );
            }
        }
    }
    assert_eq!(
        decoded, spec.steps,
        "every step decoded on exactly one owner"
    );
}

#[test]
fn decoded_rows_match_the_reference() {
    let plan = DuoPlan {
        kinds: vec![HeadKind::Streaming, HeadKind::Retrieval],
        sink: 2,
        recent: 5,
    };
    let layouts: [&dyn Layout; 2] = [&Contiguous, &RoundRobin];
    for layout in layouts {
        for world in 1..=4 {
            check(layout, world, None);
            check(layout, world, Some(&plan));
        }
    }
    assert_eq!(decode_masks(2, Some(&plan))[1], Mask::Causal);
}
