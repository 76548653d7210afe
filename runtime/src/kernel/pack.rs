//! Packing of a KV block for the micro-kernels, once per call: K per (KV head, key tile) as a
//! transposed panel and V as f32 (or the bf16 path's key pairs), both in column blocks of the
//! register tiles' width, so the slice a register block walks is one contiguous stretch.

use crate::sched::Executor;
use crate::tensor::{KvBlock, KvData};

use super::buffers::{AlignedBuf, Pooled};
use super::driver::Micro;
use super::TileShape;

/// [`Micro::pack_v`] of the f32 paths: the `nk` rows as f32 (bf16 widened) in column blocks of
/// `cols` (the last one what is left), each block a row-major `[nk][w]` stretch, blocks one
/// after another: column `c` of key `j` in the block starting at column `b` is at
/// `dst[b·nk + j·w + (c − b)]`. A P·V register block then walks a contiguous slice (rows of
/// a `[nk][d]` tile sit `d·4` bytes apart, on a few L1 sets); `cols ≥ d` is plain `[nk][d]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_v_f32(
    v: &KvData,
    head: usize,
    rows: usize,
    start: usize,
    (nk, d): (usize, usize),
    cols: usize,
    dst: &mut [f32],
) {
    let first = (head * rows + start) * d;
    if cols >= d {
        return v.read_f32(first, &mut dst[..nk * d]);
    }
    for (b, w) in column_blocks(d, cols) {
        let block = &mut dst[b * nk..(b + w) * nk];
        for (j, row) in block.chunks_exact_mut(w).enumerate() {
            v.read_f32(first + j * d + b, row);
        }
    }
}

/// The blocks `(first column, width)` of `len` columns cut every `cols` (the last one what is
/// left; `cols ≥ len` gives one block): the one walk of the packed K and V layouts.
pub(crate) fn column_blocks(len: usize, cols: usize) -> impl Iterator<Item = (usize, usize)> {
    let cols = cols.max(1);
    (0..len).step_by(cols).map(move |b| (b, cols.min(len - b)))
}

/// K and V of a whole block prepared once per call. K for Q·Kᵀ: per (KV head, key tile) a `[d][ld]`
/// panel ([`pack_transposed`]), so items read ready panels instead of each repacking them.
pub(crate) struct PackedK<V: Pooled = f32> {
    data: AlignedBuf,
    /// V of the block as f32 in one 64-byte-aligned buffer (same `[kv_heads][rows][dim]`
    /// order): full-width loads of V rows never split a cache line, and bf16 V is widened once
    /// per call instead of once per (item, tile).
    v: AlignedBuf<V>,
    /// Packed V elements per KV head.
    v_head: usize,
    /// Row stride of the score tiles and width of a K panel: the key tile padded to the lanes.
    pub(crate) ld: usize,
    panel: usize,
    tiles_per_head: usize,
}

impl<V: Pooled + Sync> PackedK<V> {
    /// Packs every key tile of every KV head of `kv` and copies V, on the threads of `pool`.
    pub(crate) fn new<M: Micro<V = V>, E: Executor>(
        micro: M,
        kv: &KvBlock,
        tile: TileShape,
        pool: &E,
    ) -> Self {
        let (rows, d) = (kv.rows(), kv.dim);
        let ld = tile.k.next_multiple_of(M::LANES);
        let tiles_per_head = rows.div_ceil(tile.k);
        let panel = d * ld;
        // Every element is written below (panels include their zero padding).
        let mut data = AlignedBuf::reused(kv.kv_heads * tiles_per_head * panel);
        let mut panels: Vec<(usize, &mut [f32])> = data
            .as_mut_slice()
            .chunks_mut(panel.max(1))
            .enumerate()
            .collect();
        pool.run(
            "pack",
            &mut panels,
            &|_| 1.0,
            &|| Vec::with_capacity(tile.k * d),
            &|widened, (idx, dst)| {
                let (head, t) = (*idx / tiles_per_head, *idx % tiles_per_head);
                let ka = t * tile.k;
                let nk = tile.k.min(rows - ka);
                let start = (head * rows + ka) * d;
                let k = f32_rows(&kv.k, start, nk * d, widened);
                micro.pack_k(k, (nk, d, ld), dst);
            },
        );
        // V per (KV head, key tile); tile.k is a multiple of KEYS_PER_V, so tiles start on
        // whole packed elements.
        let kp = M::KEYS_PER_V;
        let v_head = rows.div_ceil(kp) * d;
        let mut v = AlignedBuf::<V>::reused(kv.kv_heads * v_head);
        let mut chunks: Vec<(usize, &mut [V])> = Vec::new();
        for (head, dst) in v.as_mut_slice().chunks_mut(v_head.max(1)).enumerate() {
            let per_tile = (tile.k / kp * d).max(1);
            for (t, dst) in dst.chunks_mut(per_tile).enumerate() {
                chunks.push((head * tiles_per_head + t, dst));
            }
        }
        pool.run("pack", &mut chunks, &|_| 1.0, &|| (), &|(), (idx, dst)| {
            let (head, t) = (*idx / tiles_per_head, *idx % tiles_per_head);
            let ka = t * tile.k;
            micro.pack_v(&kv.v, head, rows, ka, tile.k.min(rows - ka), d, dst);
        });
        PackedK {
            data,
            v,
            v_head,
            ld,
            panel,
            tiles_per_head,
        }
    }

    /// Packed V of key rows `ka..ka + nk` of KV head `head` (`kp` keys per element).
    pub(crate) fn v_tile(&self, head: usize, ka: usize, nk: usize, d: usize, kp: usize) -> &[V] {
        let start = head * self.v_head + ka / kp * d;
        &self.v.as_slice()[start..start + nk.div_ceil(kp) * d]
    }

    /// The packed K panel of key tile `t` of KV head `head`.
    pub(crate) fn panel(&self, head: usize, t: usize) -> &[f32] {
        let start = (head * self.tiles_per_head + t) * self.panel;
        &self.data.as_slice()[start..start + self.panel]
    }
}

/// Elements `[start, start + len)` of `data` as f32: borrowed when stored as f32, else widened
/// into `buf` (one key tile at a time while K is packed).
fn f32_rows<'a>(data: &'a KvData, start: usize, len: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
    match data.as_f32() {
        Some(values) => &values[start..start + len],
        None => {
            buf.resize(len, 0.0);
            data.read_f32(start, buf);
            buf
        }
    }
}

/// K of a key tile packed for Q·Kᵀ, so a vector load takes one dimension of consecutive keys:
/// the `ld` columns (keys, zero past `nk`) in blocks of `cols` (the last one what is left), each
/// block a `[d][w]` row-major stretch, blocks one after another. Key `j` of dimension `p` in the
/// block starting at column `b` is at `kt[b·d + p·w + (j − b)]`; `cols ≥ ld` is plain `[d][ld]`.
pub(crate) fn pack_transposed(
    k: &[f32],
    (nk, d, ld): (usize, usize, usize),
    cols: usize,
    kt: &mut [f32],
) {
    for (b, w) in column_blocks(ld, cols) {
        let keys = nk.saturating_sub(b).min(w); // real keys in this block, zeros after them
        let block = &mut kt[b * d..(b + w) * d];
        for (p, dst) in block.chunks_exact_mut(w).enumerate() {
            for (j, slot) in dst[..keys].iter_mut().enumerate() {
                *slot = k[(b + j) * d + p];
            }
            dst[keys..].fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_k_blocks_hold_every_key_and_dimension_where_the_layout_says() {
        // (keys, dims, padded width, block width): whole blocks, a narrower last block, one
        // block wider than the panel (the plain [d][ld] layout), padding past the keys, a
        // block of padding only.
        for (nk, d, ld, cols) in [
            (128, 8, 128, 32),
            (37, 5, 48, 32),
            (20, 3, 32, usize::MAX),
            (20, 4, 64, 32),
        ] {
            let k: Vec<f32> = (0..nk * d).map(|i| i as f32 + 1.0).collect();
            let mut kt = vec![f32::NAN; d * ld];
            pack_transposed(&k, (nk, d, ld), cols, &mut kt);
            for j in 0..ld {
                let b = j - j % cols.min(ld);
                let w = cols.min(ld - b);
                for p in 0..d {
                    let want = if j < nk { k[j * d + p] } else { 0.0 };
                    assert_eq!(kt[b * d + p * w + (j - b)], want, "key {j} dim {p}");
                }
            }
        }
    }

    #[test]
    fn packed_v_blocks_hold_every_key_and_column_where_the_layout_says() {
        // Rows 3..3 + nk of head 1 (of 2, 40 rows each); f32 and bf16 storage.
        let (rows, nk, start) = (40, 29, 3);
        for (d, cols) in [(80, 64), (64, 64), (24, 16), (10, usize::MAX)] {
            let values: Vec<f32> = (0..2 * rows * d).map(|i| (i % 251) as f32).collect();
            let bf16 = values.iter().map(|&x| half::bf16::from_f32(x)).collect();
            for v in [KvData::F32(values.clone()), KvData::Bf16(bf16)] {
                let mut dst = vec![f32::NAN; nk * d];
                pack_v_f32(&v, 1, rows, start, (nk, d), cols, &mut dst);
                for c in 0..d {
                    let b = c - c % cols.min(d);
                    let w = cols.min(d - b);
                    for j in 0..nk {
                        let want = values[((rows + start + j) * d) + c];
                        assert_eq!(dst[b * nk + j * w + (c - b)], want, "key {j} column {c}");
                    }
                }
            }
        }
    }

    #[test]
    fn warm_up_leaves_the_packing_buffers_of_the_first_call_in_the_pool() {
        use crate::{positions::Positions, source::Synthetic, tensor::KvBlock};
        // An odd shape: 1 KV head × 997 rows × d 13 (no other test packs it).
        let kv = KvBlock::from_source(
            &Synthetic { seed: 2 },
            0,
            1,
            13,
            Positions::contiguous(0, 997),
        )
        .unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let tile = TileShape { q: 64, k: 64 };
        super::super::warm_up(&kv, tile, &pool);
        let (v_len, slack) = (997 * 13, 16);
        let held = f32::pool()
            .lock()
            .unwrap()
            .iter()
            .any(|b| (v_len + slack..=2 * (v_len + slack)).contains(&b.capacity()));
        assert!(held, "the V buffer of this shape waits in the pool");
    }
}
