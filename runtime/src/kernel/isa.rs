//! Which micro-kernels run: the instruction sets, the user's choice (`--isa`, `RINGATTN_ISA`)
//! checked against the CPU, and the process-wide selection [`attend`](super::attend) uses.

use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Environment variable library users set to choose the micro-kernels
/// (`amx|avx512|avx2|portable|auto`), read by [`resolve_isa`] when nothing else is asked.
pub const ISA_ENV: &str = "RINGATTN_ISA";

/// Instruction sets the kernel has micro-kernels for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Isa {
    /// Plain Rust, auto-vectorised by the compiler; the reference path of the tests.
    Portable,
    /// AVX2 + FMA, 8 lanes.
    Avx2,
    /// AVX-512F, 16 lanes.
    Avx512,
    /// Intel AMX-BF16 tiles for Q·Kᵀ and P·V, each f32 operand split into three bf16 parts
    /// (six products per f32 product, f32 accuracy); AVX-512 softmax. Head dims that are not
    /// multiples of 32 run the AVX-512 path.
    Amx,
}

impl Isa {
    /// The fastest instruction set this CPU supports.
    pub fn best() -> Isa {
        [Isa::Amx, Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|i| i.is_available())
            .unwrap_or(Isa::Portable)
    }

    /// Whether this CPU can run the micro-kernels of `self`.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => super::avx2::Avx2::new().is_some(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => super::avx512::Avx512::new().is_some(),
            #[cfg(target_arch = "x86_64")]
            Isa::Amx => super::amx::Amx::new().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every instruction set this CPU supports, fastest first.
    pub fn available() -> Vec<Isa> {
        [Isa::Amx, Isa::Avx512, Isa::Avx2, Isa::Portable]
            .into_iter()
            .filter(|i| i.is_available())
            .collect()
    }

    /// Lower-case name (`amx`, `avx512`, `avx2`, `portable`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Amx => "amx",
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

impl std::str::FromStr for Isa {
    type Err = Error;

    /// Parses `amx`, `avx512`, `avx2` or `portable` (case-insensitive).
    fn from_str(name: &str) -> Result<Isa> {
        Isa::parse_choice(name)?.ok_or_else(|| {
            Error::config("isa: `auto` names no single instruction set; use resolve_isa(None)")
        })
    }
}

impl Isa {
    /// Parses a choice: `Some(isa)` for `amx|avx512|avx2|portable`, `None` for `auto` or an
    /// empty string (case-insensitive); anything else is an error naming the field.
    pub fn parse_choice(name: &str) -> Result<Option<Isa>> {
        let all = [Isa::Amx, Isa::Avx512, Isa::Avx2, Isa::Portable];
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || name == "auto" {
            return Ok(None);
        }
        all.into_iter()
            .find(|i| i.name() == name)
            .map(Some)
            .ok_or_else(|| {
                Error::config(format!(
                    "isa: unknown instruction set '{name}' (expected amx, avx512, avx2, portable or auto)"
                ))
            })
    }

    /// `self` when this CPU runs it, else [`Error::IsaUnavailable`].
    pub fn require(self) -> Result<Isa> {
        if self.is_available() {
            Ok(self)
        } else {
            Err(Error::IsaUnavailable {
                requested: self.name(),
                available: Isa::available()
                    .into_iter()
                    .map(Isa::name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }

    /// The instruction set [`attend`](super::attend) uses in this process: the one set by
    /// [`set_active_isa`]; else `RINGATTN_ISA` when it names one this CPU runs; else
    /// [`Isa::best`]. (An invalid `RINGATTN_ISA` cannot fail here: call [`resolve_isa`] first to
    /// report it.)
    pub fn active() -> Isa {
        match ACTIVE.load(Ordering::Relaxed) {
            0 => resolve_isa(None).unwrap_or_else(|_| Isa::best()),
            code => Isa::from_code(code),
        }
    }

    fn code(self) -> u8 {
        match self {
            Isa::Portable => 1,
            Isa::Avx2 => 2,
            Isa::Avx512 => 3,
            Isa::Amx => 4,
        }
    }

    fn from_code(code: u8) -> Isa {
        match code {
            2 => Isa::Avx2,
            3 => Isa::Avx512,
            4 => Isa::Amx,
            _ => Isa::Portable,
        }
    }
}

/// The process-wide choice of [`set_active_isa`] (0 = none yet).
static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// The one selection function: `request` (`None` = auto) checked against this CPU. Auto reads
/// `RINGATTN_ISA` (an unknown name or one this CPU lacks is an error, as an explicit request
/// would be), else picks [`Isa::best`].
pub fn resolve_isa(request: Option<Isa>) -> Result<Isa> {
    let env = std::env::var(ISA_ENV).ok();
    resolve_isa_with(request, env.as_deref())
}

/// [`resolve_isa`] with the environment value given (tests, and callers that read it elsewhere).
pub fn resolve_isa_with(request: Option<Isa>, env: Option<&str>) -> Result<Isa> {
    let from_env = match (request, env) {
        (Some(_), _) | (None, None) => None,
        (None, Some(value)) => Isa::parse_choice(value).map_err(|_| {
            Error::config(format!(
                "{ISA_ENV}: unknown instruction set '{value}' (expected amx, avx512, avx2, portable or auto)"
            ))
        })?,
    };
    match request.or(from_env) {
        Some(isa) => isa.require(),
        None => Ok(Isa::best()),
    }
}

/// Makes [`attend`](super::attend) use `isa` in this whole process (every thread, every later
/// call); an instruction set this CPU lacks is [`Error::IsaUnavailable`] and changes nothing.
pub fn set_active_isa(isa: Isa) -> Result<()> {
    isa.require()?;
    ACTIVE.store(isa.code(), Ordering::Relaxed);
    Ok(())
}

/// A choice of micro-kernels as a user makes it: one instruction set, or `Auto`
/// (`RINGATTN_ISA` when set, else the fastest this CPU has). With the `clap` feature it is a
/// `clap::ValueEnum` (`auto`, `amx`, `avx512`, `avx2`, `portable`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum IsaChoice {
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

impl IsaChoice {
    /// The request of [`resolve_isa`] (`None` = auto).
    pub fn request(self) -> Option<Isa> {
        match self {
            IsaChoice::Auto => None,
            IsaChoice::Amx => Some(Isa::Amx),
            IsaChoice::Avx512 => Some(Isa::Avx512),
            IsaChoice::Avx2 => Some(Isa::Avx2),
            IsaChoice::Portable => Some(Isa::Portable),
        }
    }

    /// Checks the choice against this CPU ([`resolve_isa`]: one it lacks is
    /// [`Error::IsaUnavailable`], a bad-input error) and makes it the micro-kernels of every
    /// later kernel call of this process ([`set_active_isa`]).
    pub fn activate(self) -> Result<Isa> {
        let isa = resolve_isa(self.request())?;
        set_active_isa(isa)?;
        Ok(isa)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_request_their_instruction_set() {
        assert_eq!(IsaChoice::Auto.request(), None);
        assert_eq!(IsaChoice::default(), IsaChoice::Auto);
        for (choice, isa) in [
            (IsaChoice::Amx, Isa::Amx),
            (IsaChoice::Avx512, Isa::Avx512),
            (IsaChoice::Avx2, Isa::Avx2),
            (IsaChoice::Portable, Isa::Portable),
        ] {
            assert_eq!(choice.request(), Some(isa));
        }
    }

    #[test]
    fn names_round_trip_and_auto_is_none() {
        for isa in [Isa::Amx, Isa::Avx512, Isa::Avx2, Isa::Portable] {
            assert_eq!(Isa::parse_choice(isa.name()).unwrap(), Some(isa));
            assert_eq!(isa.name().to_uppercase().parse::<Isa>().unwrap(), isa);
            assert_eq!(Isa::from_code(isa.code()), isa);
        }
        assert_eq!(Isa::parse_choice("auto").unwrap(), None);
        assert_eq!(Isa::parse_choice("").unwrap(), None);
        assert!(Isa::parse_choice("sse2").is_err());
    }

    #[test]
    fn resolution_checks_the_cpu_and_the_environment() {
        assert_eq!(resolve_isa_with(None, None).unwrap(), Isa::best());
        assert_eq!(
            resolve_isa_with(Some(Isa::Portable), Some("nonsense")).unwrap(),
            Isa::Portable,
            "an explicit request wins over the environment"
        );
        assert_eq!(
            resolve_isa_with(None, Some("portable")).unwrap(),
            Isa::Portable
        );
        assert_eq!(resolve_isa_with(None, Some("auto")).unwrap(), Isa::best());
        let e = resolve_isa_with(None, Some("mmx")).unwrap_err();
        assert!(e.is_user_error() && e.to_string().contains(ISA_ENV), "{e}");
        for isa in [Isa::Amx, Isa::Avx512, Isa::Avx2] {
            let got = resolve_isa_with(Some(isa), None);
            assert_eq!(got.is_ok(), isa.is_available(), "{isa:?}");
            if let Err(e) = got {
                assert!(e.is_user_error(), "{e}");
                assert!(e.to_string().contains(isa.name()), "{e}");
            }
        }
    }
}
