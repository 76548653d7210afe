//! The AMX path: Q·Kᵀ and P·V on Intel AMX tiles with f32 accuracy ("bf16x6").
//!
//! AMX-BF16 multiplies 16×32 by 32×16 bf16 tiles into f32 in one instruction, ~14× the f32 FMA
//! rate of AVX-512 on one core here. Each f32 operand is split into three bf16 parts
//! ([`split`]); each product is the sum of the six part products that matter, so the result
//! keeps f32 accuracy (tested against the f64 reference at the f32 tolerances). K and V are
//! split and packed once per call ([`PackedAmx`]), the query rows once per item, the
//! probabilities once per tile; masking and the online softmax are the AVX-512 ones of the
//! other paths. bf16 K/V need no split (one part), so they take three products, not six.
//!
//! Used when the CPU has AMX-BF16, the OS grants the tile state (`arch_prctl`) and the head dim
//! is a multiple of 32; otherwise [`super::Isa::Amx`] falls back to AVX-512.

mod item;
mod split;
mod tiles;

use std::sync::OnceLock;

use crate::sched::Executor;
use crate::tensor::{Dtype, KvBlock};

use super::avx512::Avx512;
use super::driver::AlignedBuf;
use super::TileShape;

pub(crate) use item::{process_item, Scratch};
use split::PARTS;

/// Proof that this CPU runs AMX-BF16 and AVX-512F/BW (softmax and splitting use it) and that
/// the process may use the tile registers; the only way to reach the tile code.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Amx {
    _detected: (),
}

impl Amx {
    /// `Some` when AMX-TILE, AMX-BF16 and AVX-512F are present and Linux granted the tile data
    /// state to this process (asked once).
    pub(crate) fn new() -> Option<Self> {
        static GRANTED: OnceLock<bool> = OnceLock::new();
        Avx512::new()?;
        if !is_x86_feature_detected!("avx512bw") {
            return None;
        }
        GRANTED
            .get_or_init(|| cpu_has_amx_bf16() && request_tile_permission())
            .then_some(Amx { _detected: () })
    }

    /// Whether this path handles head dim `d` (A and B tiles take 32 bf16 of it at a time).
    pub(crate) fn supports_dim(d: usize) -> bool {
        d > 0 && d.is_multiple_of(32)
    }
}

/// CPUID leaf 7: EDX bit 22 (AMX-BF16) and bit 24 (AMX-TILE).
fn cpu_has_amx_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // CPUID is safe on every x86_64 CPU; leaf 7 exists when the max leaf is ≥ 7.
        if std::arch::x86_64::__cpuid(0).eax < 7 {
            return false;
        }
        let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
        edx & (1 << 22) != 0 && edx & (1 << 24) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: Linux (≥ 5.16) hands out the 8 KiB
/// tile state only on request; without it the first tile instruction faults.
fn request_tile_permission() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        const SYS_ARCH_PRCTL: i64 = 158;
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let ret: i64;
        // SAFETY: a plain system call; it reads no user memory and only changes which xstate
        // components the process may use.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack)
            );
        }
        ret == 0
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    false
}

/// The bf16 rate of the tile unit on this thread: four independent 16×16×32 products in a
/// loop, best of short rounds for about `budget`. `None` without AMX.
pub(crate) fn measure_tile_peak_gflops(budget: std::time::Duration) -> Option<f64> {
    let proof = Amx::new()?;
    let start = std::time::Instant::now();
    let mut best = 0.0f64;
    while start.elapsed() < budget || best == 0.0 {
        let rounds = 100_000;
        let t0 = std::time::Instant::now();
        tiles::product_loop(proof, rounds);
        let flops = (rounds * 4 * 16 * 16 * 32 * 2) as f64;
        best = best.max(flops / t0.elapsed().as_secs_f64() / 1e9);
    }
    Some(best)
}

/// K and V of a block split and packed for the tiles, once per call: per (KV head, key tile)
/// a K panel `[part][d/2][ld][2]` and a V panel `[part][ld/2][d][2]` ([`split`]).
pub(crate) struct PackedAmx {
    k: AlignedBuf<u16>,
    v: AlignedBuf<u16>,
    /// Keys per tile rounded up to 32 (the panels' key stride).
    ld: usize,
    /// Parts stored per operand: 3 for f32 K/V, 1 for bf16 (exact in one part).
    parts: usize,
    tiles_per_head: usize,
    dim: usize,
}

impl PackedAmx {
    /// Splits and packs every key tile of every KV head of `kv` on the threads of `pool`.
    pub(crate) fn new<E: Executor>(kv: &KvBlock, tile: TileShape, pool: &E) -> Self {
        let (rows, d) = (kv.rows(), kv.dim);
        let ld = tile.k.next_multiple_of(32);
        let tiles_per_head = rows.div_ceil(tile.k);
        let parts = if kv.dtype() == Dtype::Bf16 { 1 } else { PARTS };
        // Only the parts that exist are stored: bf16 K/V take a third of the f32 panels.
        let panel = parts * d * ld;
        let mut packed = PackedAmx {
            k: AlignedBuf::zeroed(kv.kv_heads * tiles_per_head * panel),
            v: AlignedBuf::zeroed(kv.kv_heads * tiles_per_head * panel),
            ld,
            parts,
            tiles_per_head,
            dim: d,
        };
        let mut jobs: Vec<(usize, &mut [u16], &mut [u16])> = packed
            .k
            .as_mut_slice()
            .chunks_mut(panel)
            .zip(packed.v.as_mut_slice().chunks_mut(panel))
            .enumerate()
            .map(|(i, (k, v))| (i, k, v))
            .collect();
        pool.run(
            "pack",
            &mut jobs,
            &|_| 1.0,
            &|| (vec![0.0f32; tile.k * d], vec![0u16; PARTS * tile.k * d]),
            &|(rows_f32, split_rows), (idx, k_panel, v_panel)| {
                let (head, t) = (*idx / tiles_per_head, *idx % tiles_per_head);
                let ka = t * tile.k;
                let nk = tile.k.min(rows - ka);
                let start = (head * rows + ka) * d;
                let buf = &mut rows_f32[..nk * d];
                kv.k.read_f32(start, buf);
                split::pack_k(buf, (nk, d, ld), parts, split_rows, k_panel);
                kv.v.read_f32(start, buf);
                split::pack_v(buf, (nk, d, ld), parts, split_rows, v_panel);
            },
        );
        packed
    }

    /// Base pointers of the parts of the K and V panels of (`head`, key tile `t`). Parts past
    /// `parts` are not stored and point at part 0 (the tile code never reads them).
    fn panels(&self, head: usize, t: usize) -> ([*const u16; PARTS], [*const u16; PARTS]) {
        let size = self.dim * self.ld;
        let panel = self.parts * size;
        let start = (head * self.tiles_per_head + t) * panel;
        let (k, v) = (
            &self.k.as_slice()[start..start + panel],
            &self.v.as_slice()[start..start + panel],
        );
        let part = |p: usize| if p < self.parts { p * size } else { 0 };
        (
            [0, 1, 2].map(|p| k[part(p)..].as_ptr()),
            [0, 1, 2].map(|p| v[part(p)..].as_ptr()),
        )
    }
}
