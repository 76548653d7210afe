//! Filling a rank's decode cache after the prefill: the retrieval heads' own rows, and the
//! streaming heads' sink and last `recent` rows gathered on the stream rank.

use ringattn_runtime::{Comm, Error, KvCache, Result, RowSource, TensorKind};
use serde::{Deserialize, Serialize};

use super::{DecodeRoles, DecodeSpec};
use crate::duo::plan::{DuoPlan, HeadKind};
use crate::layout::Layout;

/// Rows of KV head `g` this rank will ever hold, so the cache is allocated once.
fn capacities(
    rank: usize,
    own: usize,
    spec: &DecodeSpec,
    duo: Option<&DuoPlan>,
    roles: &DecodeRoles,
) -> Vec<usize> {
    let owned_steps = roles.owners.iter().filter(|&&o| o == rank).count();
    (0..spec.kv_heads)
        .map(|g| match duo.map(|plan| (plan.kinds[g], plan)) {
            Some((HeadKind::Streaming, plan)) if rank == roles.stream_rank => spec
                .prefill
                .saturating_add(spec.steps)
                .min(plan.sink.saturating_add(plan.recent).saturating_add(1)),
            Some((HeadKind::Streaming, _)) => 0,
            _ => own + owned_steps,
        })
        .collect()
}

/// Streaming heads' rows moving to the stream rank: `(kv head, position)` with their K and V.
#[derive(Default, Serialize, Deserialize)]
struct StreamRows {
    rows: Vec<(usize, usize)>,
    k: Vec<f32>,
    v: Vec<f32>,
}

/// Fills the retrieval heads with this rank's prefill rows and gathers the streaming heads'
/// sink and last `recent` rows on the stream rank. Returns the cache and the bytes sent.
pub(super) fn build_cache(
    comm: &mut dyn Comm,
    layout: &dyn Layout,
    source: &dyn RowSource,
    spec: &DecodeSpec,
    duo: Option<&DuoPlan>,
    roles: &DecodeRoles,
) -> Result<(KvCache, u64)> {
    let (rank, world, dim) = (comm.rank(), comm.size(), spec.dim);
    let own = layout.positions(rank, world, spec.prefill);
    let mut cache = KvCache::try_new(
        dim,
        spec.dtype,
        &capacities(rank, own.len(), spec, duo, roles),
    )?;
    let (mut k, mut v) = (vec![0.0f32; dim], vec![0.0f32; dim]);
    let mut outgoing = StreamRows::default();
    for g in 0..spec.kv_heads {
        let kind = duo.map_or(HeadKind::Retrieval, |plan| plan.kinds[g]);
        for pos in own.iter() {
            let keep = match (kind, duo) {
                (HeadKind::Streaming, Some(plan)) => {
                    pos < plan.sink || pos.saturating_add(plan.recent) >= spec.prefill
                }
                _ => true,
            };
            if !keep {
                continue;
            }
            source.fill_row(TensorKind::K, g, pos, &mut k)?;
            source.fill_row(TensorKind::V, g, pos, &mut v)?;
            match kind {
                HeadKind::Retrieval => cache.head_mut(g).append(pos, &k, &v)?,
                HeadKind::Streaming => {
                    outgoing.rows.push((g, pos));
                    outgoing.k.extend_from_slice(&k);
                    outgoing.v.extend_from_slice(&v);
                }
            }
        }
    }
    if duo.is_none_or(|plan| plan.streaming_count() == 0) {
        return Ok((cache, 0));
    }
    let bytes = encode(rank, &outgoing)?;
    let sent = if rank == roles.stream_rank {
        0
    } else {
        bytes.len() as u64
    };
    if let Some(parts) = comm.gather(roles.stream_rank, bytes)? {
        let mut rows: Vec<(usize, usize, usize, usize)> = Vec::new(); // (head, pos, part, index)
        let parts: Vec<StreamRows> = parts
            .iter()
            .map(|p| decode_bytes(rank, p))
            .collect::<Result<_>>()?;
        for (i, part) in parts.iter().enumerate() {
            rows.extend(
                part.rows
                    .iter()
                    .enumerate()
                    .map(|(j, &(g, pos))| (g, pos, i, j)),
            );
        }
        rows.sort_unstable();
        for (g, pos, i, j) in rows {
            let r = j * dim..(j + 1) * dim;
            cache
                .head_mut(g)
                .append(pos, &parts[i].k[r.clone()], &parts[i].v[r])?;
        }
    }
    Ok((cache, sent))
}

/// `value` as bytes for a collective.
pub(super) fn encode<T: Serialize>(rank: usize, value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| Error::Comm {
        rank,
        reason: format!("encoding a decode message: {e}"),
    })
}

/// The value `encode` made of `bytes`.
pub(super) fn decode_bytes<T: for<'de> Deserialize<'de>>(rank: usize, bytes: &[u8]) -> Result<T> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| Error::Comm {
            rank,
            reason: format!("decoding a decode message: {e}"),
        })
}
