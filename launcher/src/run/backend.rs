//! Choosing the communication backend: `--backend auto|local|mpi`.

use ringattn::launch::launched_by_mpi;
use ringattn_runtime::{Error, Result};

use crate::cli::BackendArg;

/// The backend a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Threads of this process joined by channels.
    Local,
    /// One process per rank over MPI.
    Mpi,
}

/// Whether this binary was built with the `mpi` feature.
pub const MPI_BUILT: bool = cfg!(feature = "mpi");

/// What a user must do to get the MPI backend.
pub const HOW_TO_BUILD_MPI: &str = "this ringattn was built without MPI support; \
    install MPI with `bash scripts/install-mpi.sh`, then build with \
    `cargo build --release --features mpi`";

/// Resolves `--backend`: `auto` is `mpi` when built with the feature and launched by MPI,
/// else `local`. `mpi` without the feature is a user error (exit code 2) saying how to build.
pub fn resolve(arg: BackendArg) -> Result<Backend> {
    match arg {
        BackendArg::Local => Ok(Backend::Local),
        BackendArg::Mpi if MPI_BUILT => Ok(Backend::Mpi),
        BackendArg::Mpi => Err(Error::config(format!("--backend mpi: {HOW_TO_BUILD_MPI}"))),
        BackendArg::Auto if launched_by_mpi() && MPI_BUILT => Ok(Backend::Mpi),
        BackendArg::Auto if launched_by_mpi() => {
            eprintln!(
                "ringattn: warning: started by an MPI launcher but {HOW_TO_BUILD_MPI}; every \
                 process runs the whole job with the local backend"
            );
            Ok(Backend::Local)
        }
        BackendArg::Auto => Ok(Backend::Local),
    }
}
