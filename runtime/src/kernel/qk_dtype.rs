//! The precision of Q in Q·Kᵀ on bf16 K/V (`--qk-dtype`, `RINGATTN_QK_DTYPE`): f32 (the
//! default: Q exact, the scores carry only bf16 K's rounding) or bf16 (Q rounded to bf16 too, so
//! Q·Kᵀ runs on `vdpbf16ps` at twice the f32 FMA rate on CPUs with AVX512-BF16). It applies to
//! the blocked kernel ([`attend`](super::attend), prefill and ring steps); the one-token decode
//! loops ([`decode_attend`](crate::decode_attend)) keep Q f32.
//!
//! Rounding Q adds an error of the same kind and size as storing K in bf16: each of q and k is
//! off by ≤ 2⁻⁹ relative, so a score `scale·Σ qᵢkᵢ` is off by ≤ 2⁻⁸·scale·Σ|qᵢkᵢ| instead of
//! 2⁻⁹·scale·Σ|qᵢkᵢ| (plus f32 rounding). Like K's own rounding this grows with the scores, so
//! it is a choice, not the default; the 2e-2 bound of bf16 K/V holds for scores of moderate size
//! (measured in runtime/tests/bf16_qk.rs and BENCHMARKS.md).

use std::sync::atomic::{AtomicU8, Ordering};

use super::Isa;
use crate::error::{Error, Result};
use crate::tensor::Dtype;

/// The environment variable read when [`set_qk_dtype`] was not called: `f32` or `bf16`.
pub const QK_DTYPE_ENV: &str = "RINGATTN_QK_DTYPE";

/// The process-wide choice of [`set_qk_dtype`] (0 = none yet, 1 = f32, 2 = bf16).
static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// The precision of Q in Q·Kᵀ for bf16 K/V in this process: the one set by [`set_qk_dtype`];
/// else `RINGATTN_QK_DTYPE` when it is `f32` or `bf16`; else f32. Only the AVX-512 path on a
/// CPU with AVX512-BF16 has a bf16 Q·Kᵀ; elsewhere, and for f32 K/V, Q stays f32 whatever this
/// says ([`check_qk_dtype`] tells a caller which case it is in).
pub fn qk_dtype() -> Dtype {
    match ACTIVE.load(Ordering::Relaxed) {
        1 => Dtype::F32,
        2 => Dtype::Bf16,
        _ => std::env::var(QK_DTYPE_ENV)
            .ok()
            .and_then(|v| parse_qk_dtype(&v).ok())
            .unwrap_or(Dtype::F32),
    }
}

/// Makes every later kernel call of this process round Q to `qk` for Q·Kᵀ on bf16 K/V (see
/// [`qk_dtype`]).
pub fn set_qk_dtype(qk: Dtype) {
    let code = match qk {
        Dtype::F32 => 1,
        Dtype::Bf16 => 2,
    };
    ACTIVE.store(code, Ordering::Relaxed);
}

/// `f32` or `bf16` (any case); anything else is a configuration error naming the variable.
pub fn parse_qk_dtype(value: &str) -> Result<Dtype> {
    match value.to_ascii_lowercase().as_str() {
        "f32" => Ok(Dtype::F32),
        "bf16" => Ok(Dtype::Bf16),
        _ => Err(Error::config(format!(
            "{QK_DTYPE_ENV}: unknown Q·Kᵀ precision '{value}' (expected f32 or bf16)"
        ))),
    }
}

/// Checks that a bf16 Q·Kᵀ would run: it needs bf16 K/V (`kv`), the avx512 micro-kernels
/// (`isa`, as resolved) and a CPU with AVX512-BF16. f32 always passes. A caller that asked for
/// bf16 reports the error (a bad-input error) instead of silently running f32.
pub fn check_qk_dtype(qk: Dtype, isa: Isa, kv: Dtype) -> Result<()> {
    if qk == Dtype::F32 {
        return Ok(());
    }
    let why = if kv != Dtype::Bf16 {
        "needs bf16 K/V (--dtype bf16)".to_string()
    } else if isa != Isa::Avx512 {
        format!(
            "runs on the avx512 micro-kernels, not {} (--isa avx512)",
            isa.name()
        )
    } else if !bf16_dot_available() {
        "needs a CPU with AVX512-BF16, which this one lacks".to_string()
    } else {
        return Ok(());
    };
    Err(Error::config(format!("--qk-dtype bf16 {why}")))
}

/// The one selection call of a command-line client: `request` (`None`: `RINGATTN_QK_DTYPE` when
/// set — an unknown value is an error —, else f32), checked by [`check_qk_dtype`] against the
/// micro-kernels `isa` and the K/V type `kv`, then made the process's choice
/// ([`set_qk_dtype`]). Returns the precision Q·Kᵀ will run at.
pub fn activate_qk_dtype(request: Option<Dtype>, isa: Isa, kv: Dtype) -> Result<Dtype> {
    let env = std::env::var(QK_DTYPE_ENV).ok();
    let qk = match (request, env.as_deref()) {
        (Some(qk), _) => qk,
        (None, Some(value)) => parse_qk_dtype(value)?,
        (None, None) => Dtype::F32,
    };
    check_qk_dtype(qk, isa, kv)?;
    set_qk_dtype(qk);
    Ok(qk)
}

/// The precision Q·Kᵀ runs at for K/V stored as `kv` on the micro-kernels `isa` with key tiles
/// of `tile` (what reports write beside the K/V type): bf16 where the avx512 path takes the
/// AVX512-BF16 kernels (bf16 K/V, an even key tile) and [`qk_dtype`] is bf16, else f32.
pub fn qk_dtype_for(isa: Isa, kv: Dtype, tile: super::TileShape) -> Dtype {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && super::bf16_micro(kv, tile).is_some_and(|m| m.rounds_q()) {
        return Dtype::Bf16;
    }
    let _ = (isa, kv, tile); // unused off x86-64
    Dtype::F32
}

/// Whether this CPU has the `vdpbf16ps` of AVX512-BF16 (with AVX-512F).
pub fn bf16_dot_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::avx512_bf16::Avx512Bf16::new(false).is_some()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_others_are_errors_naming_the_variable() {
        assert_eq!(parse_qk_dtype("f32").unwrap(), Dtype::F32);
        assert_eq!(parse_qk_dtype("BF16").unwrap(), Dtype::Bf16);
        for bad in ["", "fp16", "bf 16"] {
            let e = parse_qk_dtype(bad).unwrap_err();
            assert!(
                e.is_user_error() && e.to_string().contains(QK_DTYPE_ENV),
                "{e}"
            );
        }
    }

    #[test]
    fn bf16_needs_bf16_kv_the_avx512_path_and_the_instruction() {
        for isa in [Isa::Amx, Isa::Avx512, Isa::Avx2, Isa::Portable] {
            for kv in [Dtype::F32, Dtype::Bf16] {
                assert!(check_qk_dtype(Dtype::F32, isa, kv).is_ok());
                let got = check_qk_dtype(Dtype::Bf16, isa, kv);
                let runs = kv == Dtype::Bf16 && isa == Isa::Avx512 && bf16_dot_available();
                assert_eq!(got.is_ok(), runs, "{isa:?} {kv:?}");
                if let Err(e) = got {
                    assert!(
                        e.is_user_error() && e.to_string().contains("--qk-dtype"),
                        "{e}"
                    );
                }
            }
        }
    }
}
