//! Finding programs and the MPI launcher, for the tests that start `mpirun` (the runtime's MPI
//! `Comm` test, the CLI's MPI tests).

use std::path::PathBuf;
use std::process::Command;

/// The first file called `name` in a PATH directory.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The MPI launcher (`mpirun`, else `mpiexec`, on PATH) and the options it needs here (Open MPI
/// refuses root and oversubscription unless told; MPICH's hydra needs nothing; non-empty means
/// Open MPI), or `None` with a note on stderr. Panics when MPI is missing under `CI=true`: the
/// MPI tests must run in CI.
pub fn mpi_launcher() -> Option<(PathBuf, Vec<&'static str>)> {
    let Some(path) = ["mpirun", "mpiexec"].iter().find_map(|name| which(name)) else {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI=true but neither mpirun nor mpiexec is on PATH: the MPI tests must run in CI \
             (install MPI with `bash scripts/install-mpi.sh`)"
        );
        eprintln!(
            "note: no mpirun/mpiexec on PATH; skipping MPI test (bash scripts/install-mpi.sh)"
        );
        return None;
    };
    let version = Command::new(&path)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let extra = if version.contains("Open MPI") || version.contains("OpenRTE") {
        vec!["--allow-run-as-root", "--oversubscribe"]
    } else {
        Vec::new()
    };
    Some((path, extra))
}
