//! The blocked attention kernel.
//!
//! Work items are (query head, query tile) pairs, run in parallel; each item walks the key
//! tiles of the block, asks [`Mask::classify`] about each, skips Empty tiles without touching
//! them, computes Full tiles with no mask and blanks only the forbidden ranges of Partial tiles
//! ([`Mask::blocked_key_ranges`], no branch per element). Each item owns its slice of the
//! [`AttnState`], so the result does not depend on the thread count or on which thread ran which
//! item. GQA: query head `h` reads KV head `h / (heads / kv_heads)`.
//!
//! The per-tile arithmetic (Q·Kᵀ, online softmax, P·V) is done by micro-kernels chosen at run
//! time ([`Isa`]): AMX tiles with split-bf16 operands at f32 accuracy, AVX-512, AVX2+FMA, or
//! the portable path that tests use as the reference.

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_bf16;
#[cfg(target_arch = "x86_64")]
mod avx512_bf16_qk;
#[cfg(target_arch = "x86_64")]
mod avx512_softmax;
mod buffers;
mod driver;
mod isa;
mod pack;
mod peak;
mod portable;
mod qk_dtype;
#[cfg(all(test, target_arch = "x86_64"))]
mod softmax_rows_tests;

use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

use crate::mask::{Mask, TileClass};
use crate::positions::Positions;
use crate::sched::Executor;
use crate::state::AttnState;
use crate::tensor::{KvBlock, QShard};

use driver::{process_item, Item, Micro, Scratch};
pub use isa::{resolve_isa, resolve_isa_with, set_active_isa, Isa, IsaChoice, ISA_ENV};
use pack::PackedK;
pub use peak::{measure_peak_gflops, measure_tile_peak_gflops};
pub use qk_dtype::{
    activate_qk_dtype, bf16_dot_available, check_qk_dtype, parse_qk_dtype, qk_dtype, qk_dtype_for,
    set_qk_dtype, QK_DTYPE_ENV,
};

/// Coefficients k = 1..5 of the polynomial 2^f ≈ 1 + Σ c_k·f^k on f ∈ [−½, ½]: fitted for the
/// least largest relative error (≈ 1.9e-7 in f32 Horner form, about one f32 ulp; the degree-6
/// Taylor series it replaced: 2.4e-7) with one FMA fewer per vector. The polynomial of the SIMD
/// `exp2` after range reduction.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::approx_constant)] // c₁ is fitted (0.6931470), not ln 2 (0.6931472)
const EXP2_POLY: [f32; 5] = [
    0.693_147,
    0.240_222_42,
    0.055_507_336,
    0.009_671_513,
    0.001_326_472_7,
];

/// Rows per query tile and per key tile.
///
/// The default, 256 × 128, is set by the AMX path (measured, N = 8192, 1 thread, D = 128:
/// 64 × 128 → 164, 128 × 128 → 186, 256 × 128 → 208, 256 × 64 → 197, 512 × 128 → 205 GFLOP/s):
/// each key tile's split K and V panels (2 × 96 KiB at d = 128) are read once per query tile,
/// so tall query tiles cut the L2/L3 traffic per FLOP, and 128 keys amortise each row's
/// softmax. The item's split queries and accumulator (≈ 320 KiB) stay in L2 (2 MiB here).
/// The AVX-512 path is as fast or faster with it than with 64 × 64 (129 vs 125 GFLOP/s), so one
/// default serves every instruction set and every rank of a mixed cluster plans alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileShape {
    /// Query rows per tile.
    pub q: usize,
    /// Key rows per tile.
    pub k: usize,
}

impl Default for TileShape {
    fn default() -> Self {
        TileShape { q: 256, k: 128 }
    }
}

/// How many (query tile, key tile) pairs fell in each class: the kernel's own work count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileCounts {
    /// Tiles computed with no mask.
    pub full: u64,
    /// Tiles computed and masked element by element.
    pub partial: u64,
    /// Tiles skipped.
    pub empty: u64,
}

impl TileCounts {
    /// Tiles actually computed (Full + Partial).
    pub fn computed(&self) -> u64 {
        self.full + self.partial
    }
}

impl AddAssign for TileCounts {
    fn add_assign(&mut self, o: Self) {
        self.full += o.full;
        self.partial += o.partial;
        self.empty += o.empty;
    }
}

/// Counts tile classes for queries at `q` against keys at `k`, exactly as [`attend`] would
/// classify them (one query head). Used by the partitioner's cost model, so it must stay cheap
/// for long sequences: causal and unmasked counts take O(q tiles · log k tiles).
pub fn count_tiles(q: &Positions, k: &Positions, mask: Mask, tile: TileShape) -> TileCounts {
    let (tq, tk) = (tile.q.max(1), tile.k.max(1));
    let (nqt, nkt) = (q.len().div_ceil(tq) as u64, k.len().div_ceil(tk));
    let k_lo = |j: usize| k.get(j * tk);
    let k_hi = |j: usize| k.get(((j + 1) * tk).min(k.len()) - 1);
    let mut counts = TileCounts::default();
    if mask == Mask::None {
        counts.full = nqt * nkt as u64;
        return counts;
    }
    for qa in (0..q.len()).step_by(tq) {
        let (q_lo, q_hi) = (q.get(qa), q.get((qa + tq).min(q.len()) - 1));
        if mask == Mask::Causal {
            // Key tiles are ordered by position: a Full prefix, then Partial, then Empty.
            let full = partition_point(nkt, |j| k_hi(j) <= q_lo);
            let not_empty = partition_point(nkt, |j| k_lo(j) <= q_hi);
            counts.full += full as u64;
            counts.partial += (not_empty - full) as u64;
            counts.empty += (nkt - not_empty) as u64;
            continue;
        }
        for j in 0..nkt {
            match mask.classify(q_lo, q_hi, k_lo(j), k_hi(j)) {
                TileClass::Empty => counts.empty += 1,
                TileClass::Full => counts.full += 1,
                TileClass::Partial => counts.partial += 1,
            }
        }
    }
    counts
}

/// First index in `0..n` where the monotone predicate `pred` turns false.
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Updates `state` (the rows of `q`) with the keys and values of `kv` under `mask`, on the
/// threads of `pool` (a [`Scheduler`](crate::sched::Scheduler) or a rayon pool), with the
/// micro-kernels of [`Isa::active`] (set by [`set_active_isa`], else `RINGATTN_ISA`, else the
/// fastest of this CPU). Returns the tile counts summed over heads.
pub fn attend<E: Executor>(
    q: &QShard,
    kv: &KvBlock,
    mask: Mask,
    tile: TileShape,
    state: &mut AttnState,
    pool: &E,
) -> TileCounts {
    attend_with(Isa::active(), q, kv, mask, tile, state, pool)
}

/// Packs `kv` once with the micro-kernels [`attend`] would use, on the threads of `pool`, and
/// throws the result away: the packing buffers for blocks of this shape are then allocated and
/// touched (they wait in the kernel's buffer pool) and the threads have run. A rank calls it in
/// its setup, outside the timed region, so its first ring step costs what every later one
/// does. Nothing else changes; the call may be skipped.
pub fn warm_up<E: Executor>(kv: &KvBlock, tile: TileShape, pool: &E) {
    let tile = TileShape {
        q: tile.q.max(1),
        k: tile.k.max(1),
    };
    if kv.rows() == 0 || kv.dim == 0 {
        return;
    }
    match Isa::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Amx if amx::Amx::new().is_some() && amx::Amx::supports_dim(kv.dim) => {
            drop(amx::PackedAmx::new(kv, tile, pool));
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Amx | Isa::Avx512 => {
            if let Some(micro) = bf16_micro(kv.dtype(), tile) {
                drop(PackedK::new(micro, kv, tile, pool));
            } else if let Some(micro) = avx512::Avx512::new() {
                drop(PackedK::new(micro, kv, tile, pool));
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            if let Some(micro) = avx2::Avx2::new() {
                drop(PackedK::new(micro, kv, tile, pool));
            }
        }
        _ => drop(PackedK::new(portable::Portable, kv, tile, pool)),
    }
}

/// [`attend`] with the micro-kernels of `isa`. AMX falls back to AVX-512 without AMX or for head
/// dims that are not a multiple of 32; any other path the CPU lacks falls back to portable.
/// Results of different instruction sets agree within rounding, not bitwise. V rows near
/// `f32::MAX` are scaled by a power of two first ([`crate::vscale`]).
pub fn attend_with<E: Executor>(
    isa: Isa,
    q: &QShard,
    kv: &KvBlock,
    mask: Mask,
    tile: TileShape,
    state: &mut AttnState,
    pool: &E,
) -> TileCounts {
    match crate::vscale::prepare_block(kv, state) {
        Some(scaled) => attend_isa(isa, q, &scaled, mask, tile, state, pool),
        None => attend_isa(isa, q, kv, mask, tile, state, pool),
    }
}

/// [`attend_with`] on a block whose V is already at the state's scale.
fn attend_isa<E: Executor>(
    isa: Isa,
    q: &QShard,
    kv: &KvBlock,
    mask: Mask,
    tile: TileShape,
    state: &mut AttnState,
    pool: &E,
) -> TileCounts {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Amx => {
            if let Some(amx) = amx::Amx::new().filter(|_| amx::Amx::supports_dim(q.dim)) {
                return run_amx(amx, (q, kv, &mask, tile, state, pool));
            }
            return attend_isa(Isa::Avx512, q, kv, mask, tile, state, pool);
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            if let Some(micro) = bf16_micro(kv.dtype(), tile) {
                return run_items(micro, (q, kv, &mask, tile, state, pool));
            }
            if let Some(micro) = avx512::Avx512::new() {
                return run_items(micro, (q, kv, &mask, tile, state, pool));
            }
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            if let Some(micro) = avx2::Avx2::new() {
                return run_items(micro, (q, kv, &mask, tile, state, pool));
            }
        }
        _ => {}
    }
    run_items(portable::Portable, (q, kv, &mask, tile, state, pool))
}

/// The AVX512-BF16 micro-kernels for K/V stored as `kv` under `tile`, where they apply: bf16
/// K/V, an even key tile (P·V takes keys in pairs) and a CPU with AVX512-BF16 (P·V on
/// `vdpbf16ps`; Q·Kᵀ too when [`qk_dtype`] is bf16). `None` runs the f32 AVX-512 path.
#[cfg(target_arch = "x86_64")]
fn bf16_micro(kv: crate::tensor::Dtype, tile: TileShape) -> Option<avx512_bf16::Avx512Bf16> {
    let bf16 = crate::tensor::Dtype::Bf16;
    avx512_bf16::Avx512Bf16::new(qk_dtype() == bf16)
        .filter(|_| kv == bf16 && tile.k.is_multiple_of(2))
}

/// One call's arguments, as [`attend_with`] takes them.
type Call<'a, E> = (
    &'a QShard,
    &'a KvBlock,
    &'a Mask,
    TileShape,
    &'a mut AttnState,
    &'a E,
);

fn run_items<M: Micro, E: Executor>(micro: M, call: Call<'_, E>) -> TileCounts {
    let (q, kv, mask, _, _, pool) = call;
    run_path(
        M::ISA,
        call,
        |tile| PackedK::new(micro, kv, tile, pool),
        |tile| Scratch::new::<M>(tile),
        |packed, tile, item, scratch| process_item(micro, q, kv, packed, mask, tile, item, scratch),
    )
}

/// [`run_items`] on the AMX tiles.
#[cfg(target_arch = "x86_64")]
fn run_amx<E: Executor>(amx: amx::Amx, call: Call<'_, E>) -> TileCounts {
    let (q, kv, mask, _, _, pool) = call;
    run_path(
        Isa::Amx,
        call,
        |tile| amx::PackedAmx::new(kv, tile, pool),
        |tile| amx::Scratch::new(tile, q.dim),
        |packed, tile, item, scratch| {
            amx::process_item(amx, q, kv, packed, mask, tile, item, scratch)
        },
    )
}

/// One kernel path end to end: the items (or the all-Empty shortcut), K/V prepared once by
/// `pack`, then `process` on every item on the threads of `pool`, each thread with its own
/// `scratch`; the scheduler's kernel class names the dtype and `isa`.
fn run_path<E: Executor, P: Sync, S: Send>(
    isa: Isa,
    (q, kv, mask, tile, state, pool): Call<'_, E>,
    pack: impl FnOnce(TileShape) -> P,
    scratch: impl Fn(TileShape) -> S + Sync,
    process: impl Fn(&P, TileShape, &mut Item<'_>, &mut S) -> TileCounts + Sync,
) -> TileCounts {
    let (mut items, cost, tile) = match prepare_items(q, kv, mask, tile, state) {
        Ok(prepared) => prepared,
        Err(skipped) => return skipped,
    };
    let packed = pack(tile);
    let class = format!("attention-{}-{}", kv.dtype().name(), isa.name());
    let counts = pool.run(
        &class,
        &mut items,
        &|item: &Item<'_>| cost[item.q_start / tile.q],
        &|| (scratch(tile), TileCounts::default()),
        &|(s, counts), item| *counts += process(&packed, tile, item, s),
    );
    sum_counts(counts)
}

fn sum_counts<S>(per_thread: Vec<(S, TileCounts)>) -> TileCounts {
    per_thread
        .into_iter()
        .fold(TileCounts::default(), |mut a, (_, b)| {
            a += b;
            a
        })
}

/// Checks the shapes and cuts `state` into one [`Item`] per (head, query tile), with each
/// query tile's cost. `Err` with the tile counts when there is nothing to compute (no rows, or
/// every tile Empty): the caller returns them without touching K or V.
type Prepared<'a> = (Vec<Item<'a>>, Vec<f64>, TileShape);

fn prepare_items<'a>(
    q: &QShard,
    kv: &KvBlock,
    mask: &Mask,
    tile: TileShape,
    state: &'a mut AttnState,
) -> Result<Prepared<'a>, TileCounts> {
    assert_eq!(q.dim, kv.dim, "query and key head dims differ");
    assert_eq!(
        (state.heads, state.rows, state.dim),
        (q.heads, q.rows(), q.dim)
    );
    assert!(
        kv.kv_heads > 0 && q.heads.is_multiple_of(kv.kv_heads),
        "heads must be a multiple of kv_heads"
    );
    let (rows, dim) = (q.rows(), q.dim);
    if rows == 0 || kv.rows() == 0 || dim == 0 {
        return Err(TileCounts::default());
    }
    let tile = TileShape {
        q: tile.q.max(1),
        k: tile.k.max(1),
    };
    let cost = item_costs(q, kv, mask, tile);
    if cost.iter().all(|&c| c <= 1.0) {
        // Every tile Empty (a causal step against a later block): touch nothing, not even K/V.
        let tiles = (rows.div_ceil(tile.q) * kv.rows().div_ceil(tile.k) * q.heads) as u64;
        return Err(TileCounts {
            empty: tiles,
            ..TileCounts::default()
        });
    }
    let mut items: Vec<Item<'_>> = Vec::with_capacity(q.heads * rows.div_ceil(tile.q));
    let heads_m = state.m.chunks_mut(rows);
    let heads_l = state.l.chunks_mut(rows);
    let heads_acc = state.acc.chunks_mut(rows * dim);
    for (head, ((m, l), acc)) in heads_m.zip(heads_l).zip(heads_acc).enumerate() {
        let tiles = m
            .chunks_mut(tile.q)
            .zip(l.chunks_mut(tile.q))
            .zip(acc.chunks_mut(tile.q * dim));
        for (t, ((m, l), acc)) in tiles.enumerate() {
            items.push(Item {
                head,
                q_start: t * tile.q,
                m,
                l,
                acc,
            });
        }
    }
    Ok((items, cost, tile))
}

/// Relative cost of each query tile against `kv` under `mask` (the same for every head): one
/// unit per computed key tile, plus one for the item itself. The scheduler splits items by it,
/// so causal triangles and streaming windows are divided by work, not by count.
fn item_costs(q: &QShard, kv: &KvBlock, mask: &Mask, tile: TileShape) -> Vec<f64> {
    let (rows, k_rows) = (q.rows(), kv.rows());
    let nkt = k_rows.div_ceil(tile.k);
    (0..rows)
        .step_by(tile.q)
        .map(|qa| {
            let (q_lo, q_hi) = (
                q.positions.get(qa),
                q.positions.get((qa + tile.q).min(rows) - 1),
            );
            let computed = if *mask == Mask::None {
                nkt
            } else {
                (0..k_rows)
                    .step_by(tile.k)
                    .filter(|&ka| {
                        let k_hi = kv.positions.get((ka + tile.k).min(k_rows) - 1);
                        mask.classify(q_lo, q_hi, kv.positions.get(ka), k_hi) != TileClass::Empty
                    })
                    .count()
            };
            1.0 + computed as f64
        })
        .collect()
}
