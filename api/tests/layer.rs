//! The per-layer handle and the distributed KV cache against the f64 reference: every layout,
//! P = 1..4, uneven N, GQA, several layers in a loop, and decode with a DuoAttention plan.

use ringattn::tensors::shard_rows;
use ringattn::{
    executor_for, run_threads, DistKvCache, DuoPlan, HeadKind, LayerAttention, LayerSpec,
    LayoutChoice, Mask, TileShape,
};
use ringattn_runtime::reference::reference_row;
use ringattn_runtime::Dtype;
use ringattn_testutil::random_values;

const OUT_TOL: f64 = 2e-5;
const LSE_TOL: f64 = 1e-5;

/// `[n, dim]` of head `h` of a `[heads, n, dim]` tensor.
fn head(t: &[f32], h: usize, n: usize, dim: usize) -> &[f32] {
    &t[h * n * dim..(h + 1) * n * dim]
}

struct Layer {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

fn check_rank_rows(
    spec: &LayerSpec,
    layer: &Layer,
    positions: &[usize],
    out: &[f32],
    lse: &[f32],
    what: &str,
) {
    let (n, d, group) = (spec.seq, spec.head_dim, spec.heads / spec.kv_heads);
    let mask = if spec.causal {
        Mask::Causal
    } else {
        Mask::None
    };
    for h in 0..spec.heads {
        let g = h / group;
        for (i, &p) in positions.iter().enumerate() {
            let q = &head(&layer.q, h, n, d)[p * d..(p + 1) * d];
            let (r_out, r_lse) = reference_row(
                q,
                p,
                head(&layer.k, g, n, d),
                head(&layer.v, g, n, d),
                d,
                mask.clone(),
            );
            let row = h * positions.len() + i;
            for (a, b) in out[row * d..(row + 1) * d].iter().zip(&r_out) {
                assert!(
                    (*a as f64 - b).abs() <= OUT_TOL,
                    "{what} h{h} p{p}: out {a} vs {b}"
                );
            }
            let e = (lse[row] as f64 - r_lse).abs();
            assert!(
                e <= LSE_TOL,
                "{what} h{h} p{p}: lse {} vs {r_lse}",
                lse[row]
            );
        }
    }
}

#[test]
fn a_layer_loop_matches_the_reference_on_every_layout_and_world() {
    let (heads, kv_heads, dim, layers) = (4, 2, 16, 3);
    for layout in [
        LayoutChoice::Contiguous,
        LayoutChoice::Striped,
        LayoutChoice::Zigzag,
    ] {
        for world in 1..=4 {
            for (seq, causal, tile) in [
                (37, true, Some(TileShape { q: 8, k: 8 })),
                (29, false, None),
            ] {
                let spec = LayerSpec {
                    heads,
                    kv_heads,
                    head_dim: dim,
                    seq,
                    causal,
                    layout,
                    tile,
                    dtype: Dtype::F32,
                };
                let data: Vec<Layer> = (0..layers as u64)
                    .map(|l| Layer {
                        q: random_values(heads * seq * dim, 3 * l + 1),
                        k: random_values(kv_heads * seq * dim, 3 * l + 2),
                        v: random_values(kv_heads * seq * dim, 3 * l + 3),
                    })
                    .collect();
                let results = run_threads(world, |comm| {
                    let exec = executor_for(1, Vec::new())?;
                    let mut attn = LayerAttention::new(&spec, comm.rank(), world, exec)?;
                    let pos = attn.positions().to_vec();
                    assert_eq!(pos.len(), attn.tokens());
                    let mut outs = Vec::new();
                    for l in &data {
                        let q = shard_rows(&l.q, heads, seq, dim, &pos);
                        let k = shard_rows(&l.k, kv_heads, seq, dim, &pos);
                        let v = shard_rows(&l.v, kv_heads, seq, dim, &pos);
                        outs.push(attn.forward(comm, &q, &k, &v, None)?);
                    }
                    Ok((pos, outs))
                })
                .unwrap();
                let mut covered = vec![false; seq];
                for (rank, (pos, outs)) in results.iter().enumerate() {
                    pos.iter().for_each(|&p| covered[p] = true);
                    for (l, o) in outs.iter().enumerate() {
                        let what = format!("{layout} P={world} N={seq} rank {rank} layer {l}");
                        check_rank_rows(&spec, &data[l], pos, &o.out, &o.lse, &what);
                    }
                }
                assert!(
                    covered.iter().all(|&c| c),
                    "{layout} P={world}: a token was lost"
                );
            }
        }
    }
}

#[test]
fn auto_resolves_to_one_layout_and_bad_shapes_are_typed_errors() {
    let spec = LayerSpec {
        heads: 4,
        kv_heads: 3,
        head_dim: 8,
        seq: 16,
        causal: true,
        layout: LayoutChoice::Auto,
        tile: None,
        dtype: Dtype::F32,
    };
    let exec = executor_for(1, Vec::new()).unwrap();
    let e = LayerAttention::new(&spec, 0, 2, exec.clone()).unwrap_err();
    assert_eq!(e.field(), Some("kv_heads"), "{e}");
    let spec = LayerSpec {
        kv_heads: 2,
        ..spec
    };
    let e = LayerAttention::new(&LayerSpec { seq: 0, ..spec }, 0, 2, exec.clone()).unwrap_err();
    assert_eq!(e.field(), Some("seq"), "{e}");
    let attn = LayerAttention::new(&spec, 1, 2, exec).unwrap();
    assert_eq!(attn.tokens(), 8);
    let e = run_threads(2, |comm| {
        let exec = executor_for(1, Vec::new())?;
        let mut attn = LayerAttention::new(&spec, comm.rank(), 2, exec)?;
        attn.forward(comm, &[0.0; 3], &[], &[], None).map(|_| ())
    })
    .unwrap_err();
    assert_eq!(e.field(), Some("q"), "{e}");
}

/// Prefill of `seq` tokens, then `steps` decode tokens through a [`DistKvCache`], each checked
/// against the reference over every key so far (streaming heads under their mask).
fn decode_matches(layout: LayoutChoice, world: usize, duo: Option<DuoPlan>) {
    let (heads, kv_heads, dim, seq, steps) = (4, 2, 16, 23, 7);
    let total = seq + steps;
    let spec = LayerSpec {
        heads,
        kv_heads,
        head_dim: dim,
        seq,
        causal: true,
        layout,
        tile: Some(TileShape { q: 8, k: 8 }),
        dtype: Dtype::F32,
    };
    // [heads, total, dim] tensors: the prefill is the first `seq` positions.
    let q = random_values(heads * total * dim, 11);
    let k = random_values(kv_heads * total * dim, 12);
    let v = random_values(kv_heads * total * dim, 13);
    let duo_ref = duo.as_ref();
    let results = run_threads(world, |comm| {
        let exec = executor_for(1, Vec::new())?;
        let mut attn = LayerAttention::new(&spec, comm.rank(), world, exec)?;
        let pos = attn.positions().to_vec();
        let (qs, ks, vs) = (
            shard_rows(&q, heads, total, dim, &pos),
            shard_rows(&k, kv_heads, total, dim, &pos),
            shard_rows(&v, kv_heads, total, dim, &pos),
        );
        attn.forward(comm, &qs, &ks, &vs, duo_ref)?;
        let mut cache = DistKvCache::from_prefill(&attn, &ks, &vs, duo_ref, steps)?;
        let mut outs = Vec::new();
        for p in seq..total {
            assert_eq!(cache.len(), p);
            let (kt, vt, qt) = (
                shard_rows(&k, kv_heads, total, dim, &[p]),
                shard_rows(&v, kv_heads, total, dim, &[p]),
                shard_rows(&q, heads, total, dim, &[p]),
            );
            cache.append(comm, p, &kt, &vt)?;
            outs.push(cache.attend(comm, &qt)?);
            if let Some(plan) = duo_ref {
                for g in plan.kv_heads_of(HeadKind::Streaming) {
                    let rows = cache.local().head(g).rows();
                    assert!(
                        rows <= plan.sink + plan.recent,
                        "streaming head kept {rows} rows"
                    );
                }
            }
        }
        let e = cache.append(
            comm,
            total,
            &shard_rows(&k, kv_heads, total, dim, &[0]),
            &[],
        );
        assert!(e.is_err());
        Ok((outs, cache.kv_bytes()))
    })
    .unwrap();
    let group = heads / kv_heads;
    for (rank, (outs, bytes)) in results.iter().enumerate() {
        assert!(*bytes > 0 || duo.is_some());
        for (step, out) in outs.iter().enumerate() {
            let p = seq + step;
            for h in 0..heads {
                let g = h / group;
                let mask = duo
                    .as_ref()
                    .map_or(Mask::Causal, |plan| plan.mask_of(g, Mask::Causal));
                let qrow = &head(&q, h, total, dim)[p * dim..(p + 1) * dim];
                let (r, _) = reference_row(
                    qrow,
                    p,
                    &head(&k, g, total, dim)[..(p + 1) * dim],
                    &head(&v, g, total, dim)[..(p + 1) * dim],
                    dim,
                    mask,
                );
                for (a, b) in out[h * dim..(h + 1) * dim].iter().zip(&r) {
                    assert!(
                        (*a as f64 - b).abs() <= OUT_TOL,
                        "{layout} P={world} rank {rank} pos {p} head {h}: {a} vs {b}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_distributed_cache_decodes_like_the_reference() {
    for layout in [
        LayoutChoice::Contiguous,
        LayoutChoice::Striped,
        LayoutChoice::Zigzag,
    ] {
        for world in 1..=4 {
            decode_matches(layout, world, None);
            let plan = DuoPlan {
                kinds: vec![HeadKind::Retrieval, HeadKind::Streaming],
                sink: 2,
                recent: 5,
            };
            decode_matches(layout, world, Some(plan));
        }
    }
}

#[test]
fn owners_cover_the_prefill_and_follow_the_layout_after_it() {
    let spec = LayerSpec {
        heads: 2,
        kv_heads: 1,
        head_dim: 4,
        seq: 10,
        causal: true,
        layout: LayoutChoice::Striped,
        tile: None,
        dtype: Dtype::F32,
    };
    let exec = executor_for(1, Vec::new()).unwrap();
    let attn = LayerAttention::new(&spec, 1, 4, exec).unwrap();
    let kv = vec![0.5; attn.tokens() * 4];
    let cache = DistKvCache::from_prefill(&attn, &kv, &kv, None, 4).unwrap();
    let owners: Vec<usize> = (0..14).map(|p| cache.owner(p)).collect();
    assert_eq!(owners, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1]);
}

/// A layer with packed documents and a sliding window: prefill and decode match the reference
/// under the same mask, and after each append every rank keeps at most W keys per head.
#[test]
fn documents_and_windows_through_the_layer_and_its_cache() {
    let (heads, kv_heads, dim, seq, steps, w) = (4, 2, 16, 23, 6, 4);
    let total = seq + steps;
    let docs = ringattn_runtime::Documents::from_lengths(&[1, 9, 13]).unwrap();
    let mask = Mask::span(true, Some(w), Some(docs.clone()));
    let q = random_values(heads * total * dim, 21);
    let k = random_values(kv_heads * total * dim, 22);
    let v = random_values(kv_heads * total * dim, 23);
    // Docs: uneven ranks (the 13-token document is split, the others whole) and decoded
    // tokens on the last document's owner.
    for layout in [
        LayoutChoice::Contiguous,
        LayoutChoice::Striped,
        LayoutChoice::Docs,
    ] {
        for world in 1..=3 {
            let spec = LayerSpec {
                heads,
                kv_heads,
                head_dim: dim,
                seq,
                causal: true,
                layout,
                tile: Some(TileShape { q: 4, k: 4 }),
                dtype: Dtype::F32,
            };
            let results = run_threads(world, |comm| {
                let exec = executor_for(1, Vec::new())?;
                let docs = Some(docs.clone());
                let mut attn =
                    LayerAttention::with_mask(&spec, comm.rank(), world, exec, Some(w), docs)?;
                let pos = attn.positions().to_vec();
                let shard = |t: &[f32], h: usize, p: &[usize]| shard_rows(t, h, total, dim, p);
                let (qs, ks, vs) = (
                    shard(&q, heads, &pos),
                    shard(&k, kv_heads, &pos),
                    shard(&v, kv_heads, &pos),
                );
                let prefill = attn.forward(comm, &qs, &ks, &vs, None)?;
                let mut cache = DistKvCache::from_prefill(&attn, &ks, &vs, None, steps)?;
                let mut outs = Vec::new();
                for p in seq..total {
                    cache.append(
                        comm,
                        p,
                        &shard(&k, kv_heads, &[p]),
                        &shard(&v, kv_heads, &[p]),
                    )?;
                    outs.push(cache.attend(comm, &shard(&q, heads, &[p]))?);
                    for g in 0..kv_heads {
                        assert!(cache.local().head(g).rows() <= w, "window cache grew");
                    }
                }
                Ok((pos, prefill.out, outs))
            })
            .unwrap();
            let group = heads / kv_heads;
            let reference = |h: usize, p: usize| {
                let g = h / group;
                reference_row(
                    &head(&q, h, total, dim)[p * dim..(p + 1) * dim],
                    p,
                    &head(&k, g, total, dim)[..(p + 1) * dim],
                    &head(&v, g, total, dim)[..(p + 1) * dim],
                    dim,
                    mask.clone(),
                )
                .0
            };
            for (pos, prefill, outs) in &results {
                for h in 0..heads {
                    for (i, &p) in pos.iter().enumerate() {
                        let got = &prefill[(h * pos.len() + i) * dim..][..dim];
                        for (a, b) in got.iter().zip(reference(h, p)) {
                            assert!(
                                (*a as f64 - b).abs() <= OUT_TOL,
                                "{layout} P={world} prefill {p}"
                            );
                        }
                    }
                    for (step, out) in outs.iter().enumerate() {
                        let got = &out[h * dim..(h + 1) * dim];
                        for (a, b) in got.iter().zip(reference(h, seq + step)) {
                            assert!(
                                (*a as f64 - b).abs() <= OUT_TOL,
                                "{layout} P={world} decode {step}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The documents layout needs documents: a layer without them is refused naming the field.
#[test]
fn the_documents_layout_without_documents_is_refused() {
    let spec = LayerSpec {
        heads: 2,
        kv_heads: 1,
        head_dim: 8,
        seq: 16,
        causal: true,
        layout: LayoutChoice::Docs,
        tile: None,
        dtype: Dtype::F32,
    };
    let exec = executor_for(1, Vec::new()).unwrap();
    let e = LayerAttention::new(&spec, 0, 2, exec).unwrap_err();
    assert_eq!(e.field(), Some("layout"), "{e}");
}
