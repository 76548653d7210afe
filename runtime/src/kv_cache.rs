//! The per-rank KV cache of decoding: per KV head, K and V rows with their absolute positions.
//!
//! Rows are kept in increasing position order (an append must come after the last row), K and V
//! row-major `[rows][dim]` in the run's storage type, so the decode kernel reads them as they are
//! (no packing per step). Capacity is reserved up front ([`KvCache::new`]): a decode run knows how
//! many rows each head will ever hold, so no buffer reallocates mid-run and
//! [`KvCache::allocated_bytes`] (the buffers' real capacities) is the run's `kv_bytes_peak`.
//!
//! A DuoAttention streaming head's cache is bounded: [`HeadCache::truncate_streaming`] keeps the
//! `sink` first positions and the `recent` last rows, exactly what `Mask::Streaming` lets the
//! next query see (plus one row that the mask blanks, dropped at the next cut).

use half::bf16;

use crate::error::{Error, Result};
use crate::tensor::{Dtype, KvData};

/// One KV head's cached rows.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadCache {
    dim: usize,
    positions: Vec<usize>,
    k: KvData,
    v: KvData,
    /// Whether a V row with |v| above [`crate::vscale::V_SCALE_THRESHOLD`] was appended (kept
    /// at append time, so the decode step need not scan V; eviction leaves it set, which only
    /// costs a scaled copy).
    v_huge: bool,
}

impl HeadCache {
    /// An empty head cache with room for `rows` rows of `dim` elements stored as `dtype`.
    pub fn with_capacity(dim: usize, rows: usize, dtype: Dtype) -> Self {
        let buffer = || match dtype {
            Dtype::F32 => KvData::F32(Vec::with_capacity(rows * dim)),
            Dtype::Bf16 => KvData::Bf16(Vec::with_capacity(rows * dim)),
        };
        HeadCache {
            dim,
            v_huge: false,
            positions: Vec::with_capacity(rows),
            k: buffer(),
            v: buffer(),
        }
    }

    /// Number of cached rows.
    pub fn rows(&self) -> usize {
        self.positions.len()
    }

    /// True when no row is cached.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Head dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Absolute positions of the rows, strictly increasing.
    pub fn positions(&self) -> &[usize] {
        &self.positions
    }

    /// Keys, `[rows][dim]`.
    pub fn k(&self) -> &KvData {
        &self.k
    }

    /// Values, `[rows][dim]`.
    pub fn v(&self) -> &KvData {
        &self.v
    }

    /// Rows the buffers can hold without reallocating.
    pub fn capacity_rows(&self) -> usize {
        capacity(&self.k).checked_div(self.dim).unwrap_or(0)
    }

    /// Appends the row at absolute position `pos` (f32 values, stored in the cache's type).
    /// Fails when `pos` does not come after the last cached position or a row has the wrong
    /// length.
    pub fn append(&mut self, pos: usize, k: &[f32], v: &[f32]) -> Result<()> {
        if k.len() != self.dim || v.len() != self.dim {
            return Err(Error::config(format!(
                "KV cache row of {} / {} elements, head dim is {}",
                k.len(),
                v.len(),
                self.dim
            )));
        }
        if let Some(&last) = self.positions.last() {
            if pos <= last {
                return Err(Error::config(format!(
                    "KV cache append at position {pos} after position {last}: positions must increase"
                )));
            }
        }
        self.positions.push(pos);
        push_f32(&mut self.k, k);
        push_f32(&mut self.v, v);
        self.v_huge |= v.iter().any(|x| x.abs() > crate::vscale::V_SCALE_THRESHOLD);
        Ok(())
    }

    /// Whether some appended V row holds |v| above [`crate::vscale::V_SCALE_THRESHOLD`] (the
    /// decode step then attends to a scaled copy, see [`crate::vscale`]).
    pub fn v_huge(&self) -> bool {
        self.v_huge
    }

    /// Cuts a streaming head back: keeps the rows at positions `< sink` and the last `recent`
    /// of the others, in order, with their absolute positions (capacity is kept).
    pub fn truncate_streaming(&mut self, sink: usize, recent: usize) {
        let sink_rows = self.positions.partition_point(|&p| p < sink);
        let others = self.rows() - sink_rows;
        if others <= recent {
            return;
        }
        let drop = sink_rows..sink_rows + (others - recent);
        let elems = drop.start * self.dim..drop.end * self.dim;
        self.positions.drain(drop);
        drain(&mut self.k, elems.clone());
        drain(&mut self.v, elems);
    }

    /// Drops the rows at positions below `min_pos` (positions ascend): a sliding window's or a
    /// document's cache keeps only the keys later queries can still see.
    pub fn evict_below(&mut self, min_pos: usize) {
        let n = self.positions.partition_point(|&p| p < min_pos);
        if n == 0 {
            return;
        }
        let elems = 0..n * self.dim;
        self.positions.drain(0..n);
        drain(&mut self.k, elems.clone());
        drain(&mut self.v, elems);
    }

    /// Bytes allocated for K and V: the buffers' capacities × element size.
    pub fn allocated_bytes(&self) -> u64 {
        self.k.allocated_bytes() + self.v.allocated_bytes()
    }
}

/// A rank's KV cache: one [`HeadCache`] per KV head (empty for heads this rank keeps nothing of).
#[derive(Clone, Debug, PartialEq)]
pub struct KvCache {
    dtype: Dtype,
    heads: Vec<HeadCache>,
}

impl KvCache {
    /// An empty cache of `capacity_rows.len()` KV heads, head `h` with room for
    /// `capacity_rows[h]` rows of `dim` elements stored as `dtype`.
    pub fn new(dim: usize, dtype: Dtype, capacity_rows: &[usize]) -> Self {
        Self::try_new(dim, dtype, capacity_rows).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`KvCache::new`], or a typed error when a head's `rows × dim` overflows or the whole
    /// cache's bytes pass what can be allocated (sizes from user input go through here; the
    /// memory check against the machine is [`crate::memory::decode_bytes`]).
    pub fn try_new(dim: usize, dtype: Dtype, capacity_rows: &[usize]) -> Result<Self> {
        let mut total: u128 = 0;
        for &rows in capacity_rows {
            let elems = rows.checked_mul(dim).ok_or_else(|| {
                Error::config(format!(
                    "a KV cache head of {rows} rows × {dim} dims is too large"
                ))
            })?;
            // K and V, plus the positions.
            total =
                total.saturating_add(2 * elems as u128 * dtype.size() as u128 + rows as u128 * 8);
        }
        if total > isize::MAX as u128 {
            return Err(Error::config(format!(
                "a KV cache of {total} bytes is too large to allocate"
            )));
        }
        Ok(KvCache {
            dtype,
            heads: capacity_rows
                .iter()
                .map(|&rows| HeadCache::with_capacity(dim, rows, dtype))
                .collect(),
        })
    }

    /// Number of KV heads.
    pub fn kv_heads(&self) -> usize {
        self.heads.len()
    }

    /// Storage type of K and V.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// KV head `h`.
    pub fn head(&self, h: usize) -> &HeadCache {
        &self.heads[h]
    }

    /// KV head `h`, mutably.
    pub fn head_mut(&mut self, h: usize) -> &mut HeadCache {
        &mut self.heads[h]
    }

    /// A copy whose V rows are multiplied by `2^−exp` (see [`crate::vscale`]).
    pub fn with_scaled_v(&self, exp: i32) -> KvCache {
        let mut copy = self.clone();
        for h in &mut copy.heads {
            h.v = crate::vscale::scaled(&h.v, exp);
        }
        copy
    }

    /// Every KV head, in order.
    pub fn heads(&self) -> &[HeadCache] {
        &self.heads
    }

    /// Rows cached over all heads.
    pub fn rows(&self) -> usize {
        self.heads.iter().map(HeadCache::rows).sum()
    }

    /// Bytes allocated for K and V over all heads (capacities × element size): what the cache
    /// really holds in memory, whether or not the rows are used yet.
    pub fn allocated_bytes(&self) -> u64 {
        self.heads.iter().map(HeadCache::allocated_bytes).sum()
    }
}

fn capacity(data: &KvData) -> usize {
    match data {
        KvData::F32(v) => v.capacity(),
        KvData::Bf16(v) => v.capacity(),
    }
}

fn push_f32(data: &mut KvData, row: &[f32]) {
    match data {
        KvData::F32(v) => v.extend_from_slice(row),
        KvData::Bf16(v) => v.extend(row.iter().map(|&x| bf16::from_f32(x))),
    }
}

fn drain(data: &mut KvData, range: std::ops::Range<usize>) {
    match data {
        KvData::F32(v) => {
            v.drain(range);
        }
        KvData::Bf16(v) => {
            v.drain(range);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::Mask;

    fn row(pos: usize, dim: usize) -> Vec<f32> {
        (0..dim).map(|i| (pos * 10 + i) as f32).collect()
    }

    #[test]
    fn append_keeps_positions_and_reserved_capacity() {
        for dtype in [Dtype::F32, Dtype::Bf16] {
            let mut cache = KvCache::new(4, dtype, &[3, 0]);
            let before = cache.allocated_bytes();
            assert_eq!(before, (2 * 3 * 4 * dtype.size()) as u64);
            for pos in [2, 5, 9] {
                cache
                    .head_mut(0)
                    .append(pos, &row(pos, 4), &row(pos, 4))
                    .unwrap();
            }
            assert_eq!(
                cache.allocated_bytes(),
                before,
                "no reallocation within capacity"
            );
            assert_eq!(cache.head(0).positions(), &[2, 5, 9]);
            assert_eq!(cache.head(0).capacity_rows(), 3);
            let mut out = [0.0f32; 4];
            cache.head(0).k().read_f32(4, &mut out);
            assert_eq!(out, [50.0, 51.0, 52.0, 53.0]);
            assert!(cache.head(1).is_empty());
            assert!(cache.head_mut(0).append(9, &row(9, 4), &row(9, 4)).is_err());
            assert!(cache
                .head_mut(0)
                .append(10, &row(1, 3), &row(1, 3))
                .is_err());
        }
    }

    #[test]
    fn streaming_truncation_keeps_sink_and_recent_rows() {
        let (sink, recent, dim) = (3, 4, 2);
        let mut head = HeadCache::with_capacity(dim, sink + recent + 1, Dtype::F32);
        let bytes = head.allocated_bytes();
        for pos in 0..30 {
            head.append(pos, &row(pos, dim), &row(pos + 100, dim))
                .unwrap();
            // Everything the next query (pos + 1) may see is still there.
            let next = pos + 1;
            let needed = (0..=pos).filter(|&k| Mask::Streaming { sink, recent }.allows(next, k));
            head.truncate_streaming(sink, recent);
            for k in needed {
                assert!(head.positions().contains(&k), "pos {pos}: lost key {k}");
            }
            assert!(head.rows() <= sink + recent);
            assert_eq!(head.allocated_bytes(), bytes);
        }
        assert_eq!(head.positions(), &[0, 1, 2, 26, 27, 28, 29]);
        let mut v = [0.0f32; 2];
        head.v().read_f32(3 * dim, &mut v);
        assert_eq!(v, [1260.0, 1261.0], "values move with their positions");
    }
}
