//! Per-rank tensors: the query shard and the KV block that travels the ring.
//!
//! Layout is head-major `[heads][rows][dim]`, f32. K/V keep `kv_heads` heads (GQA is served by
//! head mapping in the kernel, never by replication), and a block carries the global positions
//! of its rows as [`Positions`] runs, so the receiver can classify tiles without any side table.

use std::ops::Range;

use half::bf16;
use half::slice::HalfFloatSliceExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
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

    /// A shard of the query heads `heads` (in the given order), same rows. Panics on a head
    /// out of range, like slice indexing.
    pub fn select_heads(&self, heads: &[usize]) -> QShard {
        let per_head = self.rows() * self.dim;
        let mut data = Vec::with_capacity(heads.len() * per_head);
        for &h in heads {
            data.extend_from_slice(&self.data[h * per_head..(h + 1) * per_head]);
        }
        QShard {
            heads: heads.len(),
            dim: self.dim,
            positions: self.positions.clone(),
            data,
        }
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

    /// A block of the KV heads `heads` (in the given order), same rows, origin and dtype.
    /// Panics on a head out of range, like slice indexing.
    pub fn select_heads(&self, heads: &[usize]) -> KvBlock {
        let per_head = self.rows() * self.dim;
        let pieces: Vec<_> = heads
            .iter()
            .map(|&h| h * per_head..(h + 1) * per_head)
            .collect();
        KvBlock {
            origin: self.origin,
            kv_heads: heads.len(),
            dim: self.dim,
            positions: self.positions.clone(),
            k: self.k.gather(&pieces),
            v: self.v.gather(&pieces),
        }
    }

    /// A block of only the rows whose global positions fall in the union of `ranges` (every
    /// head, same origin and dtype), allocated to exactly its size; an empty block when none do.
    pub fn select_rows(&self, ranges: &[Range<usize>]) -> KvBlock {
        let (positions, rows) = self.positions.intersect_ranges(ranges);
        let (n, d) = (self.rows(), self.dim);
        let pieces: Vec<_> = (0..self.kv_heads)
            .flat_map(|h| {
                rows.iter()
                    .map(move |r| (h * n + r.start) * d..(h * n + r.end) * d)
            })
            .collect();
        KvBlock {
            origin: self.origin,
            kv_heads: self.kv_heads,
            dim: d,
            positions,
            k: self.k.gather(&pieces),
            v: self.v.gather(&pieces),
        }
    }
}

/// How K and V are stored, sent and cached. Queries, the softmax state and all arithmetic are
/// f32 whatever this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Dtype {
    /// 4 bytes per element.
    #[cfg_attr(feature = "clap", value(help = "32-bit floats"))]
    F32,
    /// bfloat16: 2 bytes per element, 8 mantissa bits (half the KV bytes held and sent).
    #[cfg_attr(
        feature = "clap",
        value(help = "bfloat16 (8-bit mantissa; half the K/V bytes)")
    )]
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

    /// The elements of `pieces` (index ranges), concatenated in order into a buffer of the same
    /// dtype allocated to exactly that length.
    pub fn gather(&self, pieces: &[Range<usize>]) -> KvData {
        fn take<T: Copy>(src: &[T], pieces: &[Range<usize>]) -> Vec<T> {
            let mut out = Vec::with_capacity(pieces.iter().map(|p| p.len()).sum());
            for p in pieces {
                out.extend_from_slice(&src[p.clone()]);
            }
            out
        }
        match self {
            KvData::F32(v) => KvData::F32(take(v, pieces)),
            KvData::Bf16(v) => KvData::Bf16(take(v, pieces)),
        }
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

/// A zeroed f32 buffer of `∏ dims` elements, or a typed error naming `what` when the product
/// overflows or the allocator refuses (instead of a capacity-overflow panic or an allocation
/// abort).
pub fn zeroed_f32(dims: &[usize], what: &str) -> Result<Vec<f32>> {
    filled_f32(dims, 0.0, what)
}

/// [`zeroed_f32`] with every element `value`, each page written now.
pub fn filled_f32(dims: &[usize], value: f32, what: &str) -> Result<Vec<f32>> {
    let too_big = || {
        Error::config(format!(
            "`{what}` of {} f32 elements is too large to allocate",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(" × ")
        ))
    };
    let len = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= isize::MAX as usize / 4)
        .ok_or_else(too_big)?;
    let mut data = Vec::new();
    data.try_reserve_exact(len).map_err(|_| too_big())?;
    data.resize(len, value);
    Ok(data)
}

fn gather_rows(
    source: &dyn RowSource,
    tensor: TensorKind,
    heads: usize,
    dim: usize,
    positions: &Positions,
) -> Result<Vec<f32>> {
    let rows = positions.len();
    let mut data = zeroed_f32(&[heads, rows, dim], tensor.name())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::positions::Run;
    use crate::source::Synthetic;

    #[test]
    fn select_heads_and_rows_match_gathering_them_directly() {
        let src = Synthetic { seed: 9 };
        let positions = Positions::new([
            Run {
                start: 0,
                len: 10,
                stride: 1,
            },
            Run {
                start: 20,
                len: 8,
                stride: 3,
            },
        ])
        .unwrap();
        for dtype in [Dtype::F32, Dtype::Bf16] {
            let kv = KvBlock::from_source_as(&src, 2, 3, 4, positions.clone(), dtype).unwrap();
            let heads = kv.select_heads(&[2, 0]);
            let direct = |h: usize, pos: Positions| {
                KvBlock::from_source_as(&src, 2, 3, 4, pos, dtype)
                    .unwrap()
                    .select_heads(&[h])
            };
            assert_eq!((heads.kv_heads, heads.origin), (2, 2));
            assert_eq!(heads.select_heads(&[0]), direct(2, positions.clone()));
            assert_eq!(heads.select_heads(&[1]), direct(0, positions.clone()));

            let rows = kv.select_rows(&[3..5, 26..33, 100..200]);
            let want = Positions::new([
                Run {
                    start: 3,
                    len: 2,
                    stride: 1,
                },
                Run {
                    start: 26,
                    len: 3,
                    stride: 3,
                },
            ])
            .unwrap();
            assert_eq!(rows.positions, want);
            assert_eq!(
                rows,
                KvBlock::from_source_as(&src, 2, 3, 4, want, dtype).unwrap()
            );
            assert_eq!(rows.allocated_bytes(), rows.payload_bytes());
            let none = kv.select_rows(&[11..20, 14..19]);
            assert_eq!(
                (none.rows(), none.payload_bytes(), none.allocated_bytes()),
                (0, 0, 0)
            );
        }
        let q = QShard::from_source(&src, 4, 4, positions.clone()).unwrap();
        let sub = q.select_heads(&[3, 1]);
        assert_eq!(sub.row(0, 5), q.row(3, 5));
        assert_eq!(sub.row(1, 17), q.row(1, 17));
    }
}
