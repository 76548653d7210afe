//! Choosing the communication backend of a job: threads of this process, or one process per
//! rank over MPI. What every front end that takes a backend choice (`auto`, `local`, `mpi`)
//! resolves the same way, knowing whether this build has MPI and how it was started.

use super::launched_by_mpi;
use crate::error::ApiError;

/// The backend a job asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BackendChoice {
    /// `Mpi` when built with the `mpi` feature and started by mpirun/mpiexec/srun, else `Local`.
    #[cfg_attr(
        feature = "clap",
        value(help = "`mpi` when built with the `mpi` feature and started by \
            mpirun/mpiexec/srun, else `local`")
    )]
    Auto,
    /// Threads of this process.
    #[cfg_attr(
        feature = "clap",
        value(help = "Workers are threads of this process (no MPI)")
    )]
    Local,
    /// One process per rank over MPI.
    #[cfg_attr(
        feature = "clap",
        value(help = "One process per rank under mpirun/mpiexec/srun (needs `--features mpi`)")
    )]
    Mpi,
}

/// The backend a job runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Threads of this process joined by channels.
    Local,
    /// One process per rank over MPI.
    Mpi,
}

/// Whether this library was built with the `mpi` feature (a binary using it has MPI).
pub const MPI_BUILT: bool = cfg!(feature = "mpi");

/// What a user must do to get the MPI backend (the text of [`ApiError::MpiNotBuilt`]).
pub const HOW_TO_BUILD_MPI: &str = "this ringattn was built without MPI support; \
    install MPI with `bash scripts/install-mpi.sh`, then build with \
    `cargo build --release --features mpi`";

/// Resolves `choice` for this process ([`resolve_in`] with [`launched_by_mpi`] and
/// [`MPI_BUILT`]); a process started by an MPI launcher without MPI built in warns on stderr
/// that every process runs the whole job locally.
pub fn resolve(choice: impl Into<BackendChoice>) -> Result<Backend, ApiError> {
    let choice = choice.into();
    let launched = launched_by_mpi();
    if choice == BackendChoice::Auto && launched && !MPI_BUILT {
        eprintln!(
            "ringattn: warning: started by an MPI launcher but {HOW_TO_BUILD_MPI}; every \
             process runs the whole job with the local backend"
        );
    }
    resolve_in(choice, launched, MPI_BUILT)
}

/// Resolves `choice` given whether the process was `launched` by MPI and MPI is `built` in:
/// `Auto` is `Mpi` only with both; `Mpi` without MPI built in is [`ApiError::MpiNotBuilt`].
pub fn resolve_in(choice: BackendChoice, launched: bool, built: bool) -> Result<Backend, ApiError> {
    match choice {
        BackendChoice::Local => Ok(Backend::Local),
        BackendChoice::Mpi if built => Ok(Backend::Mpi),
        BackendChoice::Mpi => Err(ApiError::MpiNotBuilt),
        BackendChoice::Auto if launched && built => Ok(Backend::Mpi),
        BackendChoice::Auto => Ok(Backend::Local),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_mpi_only_when_launched_by_mpi_with_mpi_built_in() {
        use BackendChoice::Auto;
        assert_eq!(resolve_in(Auto, true, true).unwrap(), Backend::Mpi);
        assert_eq!(resolve_in(Auto, true, false).unwrap(), Backend::Local);
        assert_eq!(resolve_in(Auto, false, true).unwrap(), Backend::Local);
        assert_eq!(resolve_in(Auto, false, false).unwrap(), Backend::Local);
    }

    #[test]
    fn mpi_needs_mpi_built_in_and_local_is_always_local() {
        for launched in [false, true] {
            let mpi = resolve_in(BackendChoice::Mpi, launched, true).unwrap();
            assert_eq!(mpi, Backend::Mpi);
            let refused = resolve_in(BackendChoice::Mpi, launched, false).unwrap_err();
            assert!(matches!(refused, ApiError::MpiNotBuilt) && refused.is_user_error());
            assert!(refused.to_string().contains("--features mpi"));
            for built in [false, true] {
                let local = resolve_in(BackendChoice::Local, launched, built).unwrap();
                assert_eq!(local, Backend::Local);
            }
        }
    }
}
