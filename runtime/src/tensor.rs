//! Per-rank tensors: the query shard and the KV block that travels the ring.
//!
//! Layout is head-major `[heads][rows][dim]`, f32. K/V keep `kv_heads` heads (GQA is served by
//! head mapping in the kernel, never by replication), and a block carries the global positions
//! of its rows as [`Positions`] runs, so the receiver can classify tiles without any side table.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::positions::Positions;
use crate::source::{RowSource, TensorKind};

/// The query rows one rank owns: `data[head][row][dim]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QShard {
    /// Number of query heads.
    pub heads: usize,
    /// Head dimension.
    pub dim: usize,
    /// Global positions of the rows.
    pub positions: Positions,
    /// Row-major `[heads][rows][dim]` values.
    pub data: Vec<f32>,
}

impl QShard {
    /// Gathers the rows at `positions` of every head from `source`.
    pub fn from_source(
        source: &dyn RowSource,
        heads: usize,
        dim: usize,
        positions: Positions,
    ) -> Result<Self> {
        let data = gather_rows(source, TensorKind::Q, heads, dim, &positions)?;
        Ok(QShard {
            heads,
            dim,
            positions,
            data,
        })
    }

    /// Number of local rows.
    pub fn rows(&self) -> usize {
        self.positions.len()
    }

    /// Row `row` of head `head`.
    pub fn row(&self, head: usize, row: usize) -> &[f32] {
        let start = (head * self.rows() + row) * self.dim;
        &self.data[start..start + self.dim]
    }
}

/// A block of keys and values with their global positions: what the ring passes around.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvBlock {
    /// The rank whose shard this block is.
    pub origin: usize,
    /// Number of KV heads.
    pub kv_heads: usize,
    /// Head dimension.
    pub dim: usize,
    /// Global positions of the rows.
    pub positions: Positions,
    /// Keys, `[kv_heads][rows][dim]`.
    pub k: Vec<f32>,
    /// Values, `[kv_heads][rows][dim]`.
    pub v: Vec<f32>,
}

impl KvBlock {
    /// Gathers the K and V rows at `positions` of every KV head from `source`.
    pub fn from_source(
        source: &dyn RowSource,
        origin: usize,
        kv_heads: usize,
        dim: usize,
        positions: Positions,
    ) -> Result<Self> {
        let k = gather_rows(source, TensorKind::K, kv_heads, dim, &positions)?;
        let v = gather_rows(source, TensorKind::V, kv_heads, dim, &positions)?;
        Ok(KvBlock {
            origin,
            kv_heads,
            dim,
            positions,
            k,
            v,
        })
    }

    /// Number of rows (tokens) in the block.
    pub fn rows(&self) -> usize {
        self.positions.len()
    }

    /// Bytes of K and V payload (what a ring hop transfers).
    pub fn payload_bytes(&self) -> u64 {
        ((self.k.len() + self.v.len()) * std::mem::size_of::<f32>()) as u64
    }

    /// Bytes actually allocated for K and V (buffer capacities).
    pub fn allocated_bytes(&self) -> u64 {
        ((self.k.capacity() + self.v.capacity()) * std::mem::size_of::<f32>()) as u64
    }
}

fn gather_rows(
    source: &dyn RowSource,
    tensor: TensorKind,
    heads: usize,
    dim: usize,
    positions: &Positions,
) -> Result<Vec<f32>> {
    let rows = positions.len();
    let mut data = vec![0.0f32; heads * rows * dim];
    if dim == 0 || rows == 0 {
        return Ok(data);
    }
    for (h, head_rows) in data.chunks_mut((rows * dim).max(1)).enumerate().take(heads) {
        for (row, pos) in head_rows.chunks_mut(dim).zip(positions.iter()) {
            source.fill_row(tensor, h, pos, row)?;
        }
    }
    Ok(data)
}
