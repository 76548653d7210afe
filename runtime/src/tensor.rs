//! Per-rank tensors: the query shard and the KV block that travels the ring.
//!
//! Layout is head-major `[heads][rows][dim]`, f32. K/V keep `kv_heads` heads (GQA is served by
//! head mapping in the kernel, never by replication), and a block carries the global positions
//! of its rows as [`Positions`] runs, so the receiver can classify tiles without any side table.

use half::bf16;
use half::slice::HalfFloatSliceExt;
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
    pub k: KvData,
    /// Values, `[kv_heads][rows][dim]`.
    pub v: KvData,
}

impl KvBlock {
    /// Gathers the K and V rows at `positions` of every KV head from `source`, stored as f32.
    pub fn from_source(
        source: &dyn RowSource,
        origin: usize,
        kv_heads: usize,
        dim: usize,
        positions: Positions,
    ) -> Result<Self> {
        Self::from_source_as(source, origin, kv_heads, dim, positions, Dtype::F32)
    }

    /// [`KvBlock::from_source`], stored as `dtype` (bf16 rounds to nearest even).
    pub fn from_source_as(
        source: &dyn RowSource,
        origin: usize,
        kv_heads: usize,
        dim: usize,
        positions: Positions,
        dtype: Dtype,
    ) -> Result<Self> {
        let k = gather_rows(source, TensorKind::K, kv_heads, dim, &positions)?;
        let v = gather_rows(source, TensorKind::V, kv_heads, dim, &positions)?;
        Ok(KvBlock {
            origin,
            kv_heads,
            dim,
            positions,
            k: KvData::from_f32(k, dtype),
            v: KvData::from_f32(v, dtype),
        })
    }

    /// Storage type of K and V.
    pub fn dtype(&self) -> Dtype {
        self.k.dtype()
    }

    /// Number of rows (tokens) in the block.
    pub fn rows(&self) -> usize {
        self.positions.len()
    }

    /// Bytes of K and V payload (what a ring hop transfers).
    pub fn payload_bytes(&self) -> u64 {
        self.k.payload_bytes() + self.v.payload_bytes()
    }

    /// Bytes actually allocated for K and V (buffer capacities).
    pub fn allocated_bytes(&self) -> u64 {
        self.k.allocated_bytes() + self.v.allocated_bytes()
    }
}

/// How K and V are stored, sent and cached. Queries, the softmax state and all arithmetic are
/// f32 whatever this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dtype {
    /// 4 bytes per element.
    F32,
    /// bfloat16: 2 bytes per element, 8 mantissa bits (half the KV bytes held and sent).
    Bf16,
}

impl Dtype {
    /// Name as written in reports (`f32`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::Bf16 => 2,
        }
    }
}

/// A K or V buffer, `[kv_heads][rows][dim]`, in its storage type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KvData {
    /// f32 values.
    F32(Vec<f32>),
    /// bf16 values.
    Bf16(Vec<bf16>),
}

impl KvData {
    /// Stores `values` as `dtype`.
    pub fn from_f32(values: Vec<f32>, dtype: Dtype) -> Self {
        match dtype {
            Dtype::F32 => KvData::F32(values),
            Dtype::Bf16 => KvData::Bf16(values.iter().map(|&x| bf16::from_f32(x)).collect()),
        }
    }

    /// A zeroed buffer of `len` elements (to receive into).
    pub fn zeros(len: usize, dtype: Dtype) -> Self {
        match dtype {
            Dtype::F32 => KvData::F32(vec![0.0; len]),
            Dtype::Bf16 => KvData::Bf16(vec![bf16::ZERO; len]),
        }
    }

    /// Storage type.
    pub fn dtype(&self) -> Dtype {
        match self {
            KvData::F32(_) => Dtype::F32,
            KvData::Bf16(_) => Dtype::Bf16,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            KvData::F32(v) => v.len(),
            KvData::Bf16(v) => v.len(),
        }
    }

    /// True when it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the elements.
    pub fn payload_bytes(&self) -> u64 {
        (self.len() * self.dtype().size()) as u64
    }

    /// Bytes allocated (capacity).
    pub fn allocated_bytes(&self) -> u64 {
        let cap = match self {
            KvData::F32(v) => v.capacity(),
            KvData::Bf16(v) => v.capacity(),
        };
        (cap * self.dtype().size()) as u64
    }

    /// The values when stored as f32.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            KvData::F32(v) => Some(v),
            KvData::Bf16(_) => None,
        }
    }

    /// Elements `[start, start + out.len())` widened to f32.
    pub fn read_f32(&self, start: usize, out: &mut [f32]) {
        match self {
            KvData::F32(v) => out.copy_from_slice(&v[start..start + out.len()]),
            KvData::Bf16(v) => v[start..start + out.len()].convert_to_f32_slice(out),
        }
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
