//! `--isa`: which micro-kernels the kernel runs (`run`, `decode`, `bench kernel`, `info`).
//! A flag and one call into the runtime's selection function, nothing else.

use clap::Args;
use ringattn_runtime::{resolve_isa, set_active_isa, Isa, Result};

/// Micro-kernel choices of `--isa`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum IsaArg {
    /// `RINGATTN_ISA` when set, else the fastest this CPU has.
    #[default]
    Auto,
    /// AMX-BF16 tiles with split operands (f32 accuracy; head dims that are multiples of 32).
    Amx,
    /// AVX-512F.
    Avx512,
    /// AVX2 + FMA.
    Avx2,
    /// Portable Rust.
    Portable,
}

impl IsaArg {
    /// The runtime's request (`None` = auto).
    pub fn request(self) -> Option<Isa> {
        match self {
            IsaArg::Auto => None,
            IsaArg::Amx => Some(Isa::Amx),
            IsaArg::Avx512 => Some(Isa::Avx512),
            IsaArg::Avx2 => Some(Isa::Avx2),
            IsaArg::Portable => Some(Isa::Portable),
        }
    }

    /// Checks the choice against this CPU (one it lacks is a bad-input error, exit 2) and makes
    /// it the micro-kernels of every later kernel call of this process.
    pub fn activate(self) -> Result<Isa> {
        let isa = resolve_isa(self.request())?;
        set_active_isa(isa)?;
        Ok(isa)
    }
}

/// The `--isa` flag, flattened into the commands that run the kernel.
#[derive(Clone, Copy, Debug, Default, Args)]
pub struct IsaArgs {
    /// Micro-kernels: amx, avx512, avx2, portable, or auto (RINGATTN_ISA when set, else the
    /// fastest this CPU has). One this CPU lacks is an error (exit 2).
    #[arg(long, value_enum, default_value_t = IsaArg::Auto)]
    pub isa: IsaArg,
}
