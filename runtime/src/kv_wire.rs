//! The wire format of a KV block header: what a byte transport (the MPI backend) sends before
//! the K and V payload so the receiver can allocate and describe the block. Pure functions,
//! tested without MPI.

use crate::error::{Error, Result};
use crate::positions::{Positions, Run};
use crate::tensor::{Dtype, KvBlock, KvData};

/// Fixed part of the header: origin, kv_heads, dim, k length, v length, number of runs, dtype.
pub const HEADER_FIXED: usize = 7;

/// The header of a KV block on the wire: fixed fields, then `(start, len, stride)` per run.
pub fn encode_header(block: &KvBlock) -> Vec<u64> {
    let runs = block.positions.runs();
    let mut h = Vec::with_capacity(HEADER_FIXED + 3 * runs.len());
    h.extend(
        [
            block.origin,
            block.kv_heads,
            block.dim,
            block.k.len(),
            block.v.len(),
            runs.len(),
            dtype_code(block.dtype()),
        ]
        .map(|x| x as u64),
    );
    for r in runs {
        h.extend([r.start as u64, r.len as u64, r.stride as u64]);
    }
    h
}

/// Rebuilds a block from its header, with zeroed K and V buffers of the announced lengths ready
/// to receive the payload. Rejects inconsistent headers.
pub fn decode_header(h: &[u64]) -> Result<KvBlock> {
    let bad = |what: &str| Error::config(format!("malformed KV block header: {what}"));
    let field = |i: usize| -> Result<usize> {
        h.get(i)
            .and_then(|&x| usize::try_from(x).ok())
            .ok_or_else(|| bad("truncated or out of range"))
    };
    let (origin, kv_heads, dim, k_len, v_len, n_runs) = (
        field(0)?,
        field(1)?,
        field(2)?,
        field(3)?,
        field(4)?,
        field(5)?,
    );
    let dtype = match field(6)? {
        0 => Dtype::F32,
        1 => Dtype::Bf16,
        _ => return Err(bad("unknown dtype code")),
    };
    if h.len() != HEADER_FIXED + n_runs.saturating_mul(3) {
        return Err(bad("length does not match its number of runs"));
    }
    let runs = (0..n_runs)
        .map(|i| {
            let at = HEADER_FIXED + 3 * i;
            Ok(Run {
                start: field(at)?,
                len: field(at + 1)?,
                stride: field(at + 2)?,
            })
        })
        .collect::<Result<Vec<Run>>>()?;
    let positions = Positions::new(runs)?;
    let expect = kv_heads
        .checked_mul(positions.len())
        .and_then(|n| n.checked_mul(dim))
        .ok_or_else(|| bad("sizes overflow"))?;
    if k_len != expect || v_len != expect {
        return Err(bad("K/V lengths do not match kv_heads × rows × dim"));
    }
    Ok(KvBlock {
        origin,
        kv_heads,
        dim,
        positions,
        k: KvData::zeros(k_len, dtype),
        v: KvData::zeros(v_len, dtype),
    })
}

/// Wire code of a storage type.
fn dtype_code(dtype: Dtype) -> usize {
    match dtype {
        Dtype::F32 => 0,
        Dtype::Bf16 => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_inconsistent_sizes() {
        let positions = Positions::new([
            Run {
                start: 0,
                len: 3,
                stride: 1,
            },
            Run {
                start: 10,
                len: 2,
                stride: 1,
            },
        ])
        .unwrap();
        let block = KvBlock {
            origin: 3,
            kv_heads: 2,
            dim: 4,
            positions,
            k: KvData::F32(vec![1.0; 2 * 5 * 4]),
            v: KvData::F32(vec![2.0; 2 * 5 * 4]),
        };
        let header = encode_header(&block);
        let got = decode_header(&header).unwrap();
        assert_eq!(got.origin, 3);
        assert_eq!((got.kv_heads, got.dim), (2, 4));
        assert_eq!(got.positions, block.positions);
        assert_eq!((got.k.len(), got.v.len()), (40, 40));

        let mut wrong = header.clone();
        wrong[3] += 1;
        assert!(decode_header(&wrong).is_err());
        assert!(decode_header(&header[..header.len() - 1]).is_err());
        assert!(decode_header(&[]).is_err());

        let bf16_block = KvBlock {
            k: KvData::from_f32(vec![1.0; 40], Dtype::Bf16),
            v: KvData::from_f32(vec![2.0; 40], Dtype::Bf16),
            ..block
        };
        let got = decode_header(&encode_header(&bf16_block)).unwrap();
        assert_eq!(
            (got.k.dtype(), got.v.dtype(), got.k.len()),
            (Dtype::Bf16, Dtype::Bf16, 40)
        );
    }
}
