//! The AMX tile operations (inline assembly: the AMX intrinsics are not stable Rust).
//!
//! Every tile register is configured as 16 rows × 64 bytes: a 16×16 f32 accumulator, a 16×32
//! bf16 A operand, or a 16-pair × 16 B operand (VNNI). Register use, the same in both products:
//! `tmm0..tmm3` accumulate a 32×32 f32 block (2×2 tiles), `tmm4`/`tmm5` hold the A tiles of
//! its two row halves, `tmm6`/`tmm7` the B tiles of its two column halves, so each pair of A
//! and B loads feeds four `tdpbf16ps` (16 cycles each).
//!
//! The compiler neither uses nor knows the tile registers, so state left in them between the
//! `asm!` blocks below is safe from it; an [`ActiveTiles`] guard configures the tiles on the
//! thread that uses them and releases them when dropped.

use std::arch::asm;

use super::split::PARTS;

/// Palette 1, eight tiles of 16 rows × 64 bytes (the `ldtilecfg` memory format).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn uniform() -> Self {
        let mut cfg = [0u8; 64];
        cfg[0] = 1;
        for t in 0..8 {
            cfg[16 + 2 * t] = 64;
            cfg[48 + t] = 16;
        }
        TileConfig(cfg)
    }
}

/// Tile registers configured on this thread for as long as the guard lives.
pub(crate) struct ActiveTiles {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl ActiveTiles {
    /// Configures the tiles.
    ///
    /// # Safety
    /// The CPU must support AMX-TILE and the process must hold the XTILEDATA permission
    /// ([`super::Amx::new`] checks both).
    pub(crate) unsafe fn configure() -> Self {
        let cfg = TileConfig::uniform();
        asm!("ldtilecfg [{0}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
        ActiveTiles {
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for ActiveTiles {
    fn drop(&mut self) {
        // SAFETY: tiles were configured by `configure` on this thread (the guard is !Send).
        unsafe { asm!("tilerelease", options(nostack, nomem)) }
    }
}

macro_rules! tile_load {
    ($t:literal, $ptr:expr, $stride:expr) => {
        asm!(
            concat!("tileloadd tmm", $t, ", [{p} + {s}*1]"),
            p = in(reg) $ptr,
            s = in(reg) $stride,
            options(nostack, readonly)
        )
    };
}

macro_rules! tile_store {
    ($t:literal, $ptr:expr, $stride:expr) => {
        asm!(
            concat!("tilestored [{p} + {s}*1], tmm", $t),
            p = in(reg) $ptr,
            s = in(reg) $stride,
            options(nostack)
        )
    };
}

/// `tdpbf16ps tmmC, tmmA, tmmB`.
macro_rules! tile_dot {
    ($c:literal, $a:literal, $b:literal) => {
        asm!(
            concat!("tdpbf16ps tmm", $c, ", tmm", $a, ", tmm", $b),
            options(nostack, nomem)
        )
    };
}

/// `tmm0..3 += tmm4/5 × tmm6/7` (the 2×2 block product), loading the operands between the
/// products. Tile instructions run in order and a tile register is not renamed: a load into
/// a register waits for the products reading it, and a product for its loads. Loading each
/// operand just before its first use, the order of oneDNN's AMX kernels, lets every load
/// overlap the product before it; loading all four first stalls each product on the loads.
/// `a = None` keeps the A tiles of the previous call.
#[inline(always)]
unsafe fn dot_2x2(a: Option<(*const u16, usize)>, b: *const u16, ldb: usize) {
    if let Some((a, lda)) = a {
        tile_load!(4, a, lda);
    }
    tile_load!(6, b, ldb);
    tile_dot!(0, 4, 6);
    tile_load!(7, b.add(32), ldb);
    tile_dot!(1, 4, 7);
    if let Some((a, lda)) = a {
        tile_load!(5, a.byte_add(16 * lda), lda);
    }
    tile_dot!(2, 5, 6);
    tile_dot!(3, 5, 7);
}

/// The 2×2 accumulator block at `c` (f32, row stride `ldc` bytes): loads it, or zeroes it.
#[inline(always)]
unsafe fn load_block(c: Option<*const f32>, ldc: usize) {
    match c {
        Some(c) => {
            tile_load!(0, c, ldc);
            tile_load!(1, c.add(16), ldc);
            tile_load!(2, c.byte_add(16 * ldc), ldc);
            tile_load!(3, c.byte_add(16 * ldc).add(16), ldc);
        }
        None => asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        ),
    }
}

#[inline(always)]
unsafe fn store_block(c: *mut f32, ldc: usize) {
    tile_store!(0, c, ldc);
    tile_store!(1, c.add(16), ldc);
    tile_store!(2, c.byte_add(16 * ldc), ldc);
    tile_store!(3, c.byte_add(16 * ldc).add(16), ldc);
}

/// One product `C (+)= Σ_{s+t≤2} A_s · B_t` over the split parts, for a 2×2 block.
/// `a[s]` points at the block's A rows (16 × 32 bf16 per half, row stride `lda` bytes, the
/// second half `16·lda` further) and advances by `a_step` elements per k-chunk; `b[t]` at the
/// B pairs (row stride `ldb` bytes, the second column half 64 bytes further), advancing by
/// `b_step` elements per k-chunk. `between` runs after each 2×2 step (see [`scores`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn block_product(
    a: [*const u16; PARTS],
    lda: usize,
    a_step: usize,
    b: [*const u16; PARTS],
    b_parts: usize,
    ldb: usize,
    b_step: usize,
    chunks: usize,
    between: &mut impl FnMut(),
) {
    for kc in 0..chunks {
        for (s, &a_s) in a.iter().enumerate() {
            let a_s = a_s.add(kc * a_step);
            for (t, &b_t) in b.iter().take(b_parts.min(PARTS - s)).enumerate() {
                let a_tiles = (t == 0).then_some((a_s, lda));
                dot_2x2(a_tiles, b_t.add(kc * b_step), ldb);
                between();
            }
        }
    }
}

/// How many 2×2 steps [`scores`] takes for `rows × cols` scores over head dim `d`.
pub(crate) fn score_steps(rows: usize, cols: usize, d: usize, k_parts: usize) -> usize {
    (rows / 32) * (cols / 32) * (d / 32) * terms(k_parts)
}

/// How many 2×2 steps [`accumulate`] takes for `rows` rows, `chunks` key chunks, head dim `d`.
pub(crate) fn accumulate_steps(rows: usize, chunks: usize, d: usize, v_parts: usize) -> usize {
    (rows / 32) * (d / 32) * chunks * terms(v_parts)
}

/// Part products per k-chunk when the B operand has `b_parts` parts (s + t ≤ 2).
fn terms(b_parts: usize) -> usize {
    (0..PARTS).map(|s| b_parts.min(PARTS - s)).sum()
}

/// Scores `s[i·ld + j] = Σ_c q[i][c]·k[j][c]` for `i < rows`, `j < cols` (both multiples of 32),
/// from the split query rows `q[p]` (`[rows][d]`) and the packed key panel `k[p]`
/// (`[d/2][ld][2]`, `k_parts` parts).
///
/// `between` runs after each of the [`score_steps`] 2×2 steps: vector work placed there (the
/// softmax of the previous row block) executes while the tile unit works through the
/// products queued before it, instead of after them.
///
/// # Safety
/// Tiles configured on this thread ([`ActiveTiles`]); `d` a multiple of 32; the buffers hold
/// the sizes above and `s` holds `rows × ld` f32.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn scores(
    q: [*const u16; PARTS],
    d: usize,
    rows: usize,
    k: [*const u16; PARTS],
    k_parts: usize,
    ld: usize,
    cols: usize,
    s: *mut f32,
    mut between: impl FnMut(),
) {
    for rb in (0..rows).step_by(32) {
        for cb in (0..cols).step_by(32) {
            load_block(None, ld * 4);
            let a = q.map(|p| p.add(rb * d));
            let b = k.map(|p| p.add(cb * 2));
            let (lda, ldb, b_step) = (d * 2, ld * 4, 16 * ld * 2);
            block_product(a, lda, 32, b, k_parts, ldb, b_step, d / 32, &mut between);
            store_block(s.add(rb * ld + cb), ld * 4);
        }
    }
}

/// `o[i][c] += Σ_j p[i][j]·v[j][c]` for `i < rows`, `c < d`, keys `j < 32·chunks`, from the split
/// probabilities `p[s]` (`[rows][ld]`) and the packed value panel `v[t]` (`[ld/2][d][2]`,
/// `v_parts` parts). `between` runs after each of its [`accumulate_steps`] 2×2 steps, as in
/// [`scores`].
///
/// # Safety
/// Tiles configured on this thread; `rows` and `d` multiples of 32, `32·chunks ≤ ld`; the
/// buffers hold the sizes above and `o` holds `rows × d` f32.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn accumulate(
    p: [*const u16; PARTS],
    ld: usize,
    rows: usize,
    chunks: usize,
    v: [*const u16; PARTS],
    v_parts: usize,
    d: usize,
    o: *mut f32,
    mut between: impl FnMut(),
) {
    for rb in (0..rows).step_by(32) {
        for cb in (0..d).step_by(32) {
            let c = o.add(rb * d + cb);
            load_block(Some(c), d * 4);
            let a = p.map(|x| x.add(rb * ld));
            let b = v.map(|x| x.add(cb * 2));
            let (lda, ldb, b_step) = (ld * 2, d * 4, 16 * d * 2);
            block_product(a, lda, 32, b, v_parts, ldb, b_step, chunks, &mut between);
            store_block(c, d * 4);
        }
    }
}

/// `rounds` × four independent `tdpbf16ps` on zeroed tiles: the tile unit's peak rate.
pub(crate) fn product_loop(_proof: super::Amx, rounds: usize) {
    // SAFETY: an `Amx` proves AMX support and the tile permission; the tiles are configured on
    // this thread for the loop and touch no memory.
    unsafe {
        let _tiles = ActiveTiles::configure();
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "tilezero tmm4",
            "tilezero tmm6",
            options(nostack, nomem)
        );
        for _ in 0..rounds {
            tile_dot!(0, 4, 6);
            tile_dot!(1, 4, 6);
            tile_dot!(2, 4, 6);
            tile_dot!(3, 4, 6);
        }
    }
}
