//! `--isa`: which micro-kernels the kernel runs (`run`, `decode`, `bench kernel`, `info`).
//! A flag and one call into the runtime's selection ([`IsaArg::activate`]), nothing else.

use clap::Args;

/// Micro-kernel choices of `--isa` (the runtime's, with `auto`).
pub use ringattn_runtime::IsaChoice as IsaArg;

/// The `--isa` flag, flattened into the commands that run the kernel.
#[derive(Clone, Copy, Debug, Default, Args)]
pub struct IsaArgs {
    /// Micro-kernels: amx, avx512, avx2, portable, or auto (RINGATTN_ISA when set, else the
    /// fastest this CPU has). One this CPU lacks is an error (exit 2).
    #[arg(long, value_enum, default_value_t = IsaArg::Auto)]
    pub isa: IsaArg,
}
