//! Starting MPI jobs: finding the launcher (`mpirun`/`mpiexec`), telling its implementation
//! (Open MPI needs options that MPICH does not), building its command line, making a command
//! run the MPI backend, quoting for shells, and waiting for the launcher while forwarding
//! SIGINT/SIGTERM to it ([`child`]); choosing the backend of a job ([`backend`]). What
//! `ringattn launch`, `ringattn sbatch` and the scaling sweeps share; a program that starts
//! ranks itself uses the same pieces.

pub mod backend;
pub mod child;
#[cfg(feature = "mpi")]
pub mod mpi_rank;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::ApiError;

/// Which MPI implementation a launcher belongs to (they need different options).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Open MPI (`mpirun (Open MPI) 4.1.4`): refuses root and oversubscription unless told.
    OpenMpi,
    /// MPICH's hydra, Intel MPI and others: need no extra options.
    Other,
}

/// Tells the MPI implementation from the output of `mpirun --version`.
pub fn flavor(version_output: &str) -> Flavor {
    if version_output.contains("Open MPI") || version_output.contains("OpenRTE") {
        Flavor::OpenMpi
    } else {
        Flavor::Other
    }
}

/// True when the `Uid:` line of /proc/self/status text names root as the real user.
pub fn is_root_status(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .is_some_and(|uid| uid == "0")
}

/// The launcher's options before the program: what `flavor` needs (as root, and with more
/// ranks than `cores`), then `-n P`, then the user's `extra`.
pub fn launcher_args(
    flavor: Flavor,
    ranks: usize,
    root: bool,
    cores: usize,
    extra: &[String],
) -> Vec<String> {
    let mut args = Vec::new();
    if flavor == Flavor::OpenMpi {
        if root && !extra.iter().any(|a| a == "--allow-run-as-root") {
            args.push("--allow-run-as-root".to_string());
        }
        if ranks > cores && !extra.iter().any(|a| a == "--oversubscribe") {
            args.push("--oversubscribe".to_string());
        }
    }
    args.extend(["-n".to_string(), ranks.to_string()]);
    args.extend(extra.iter().cloned());
    args
}

/// Checks that `command` (the words every rank runs, field `command`) is `run`, `decode` or
/// `generate` and makes it run the MPI backend: adds `--backend mpi` after the command word,
/// or rejects another backend.
pub fn mpi_command(command: &[String]) -> Result<Vec<String>, ApiError> {
    let name =
        match command.first().map(String::as_str) {
            Some(name @ ("run" | "decode" | "generate")) => name.to_string(),
            other => return Err(ApiError::invalid(
                "command",
                other.unwrap_or(""),
                "every rank runs `ringattn run`, `decode` or `generate`: write `-- run OPTIONS`",
            )),
        };
    let mut backend = None;
    for (i, a) in command.iter().enumerate() {
        if a == "--backend" {
            backend = Some(command.get(i + 1).cloned().unwrap_or_default());
        } else if let Some(v) = a.strip_prefix("--backend=") {
            backend = Some(v.to_string());
        }
    }
    match backend.as_deref() {
        None => {
            let mut out = vec![name, "--backend".into(), "mpi".into()];
            out.extend(command[1..].iter().cloned());
            Ok(out)
        }
        Some("mpi") => Ok(command.to_vec()),
        Some(other) => Err(ApiError::invalid(
            "command",
            format!("--backend {other}"),
            "the ranks run the mpi backend (leave --backend out)",
        )),
    }
}

/// Finds the MPI launcher: `given` (field `mpirun`), which must exist, or `mpirun`/`mpiexec`
/// in the directories of `path` (a PATH value).
pub fn find_launcher(
    given: Option<&Path>,
    path: Option<&std::ffi::OsStr>,
) -> Result<PathBuf, ApiError> {
    if let Some(p) = given {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        return Err(ApiError::invalid(
            "mpirun",
            p.display().to_string(),
            "no such file (install MPI with `bash scripts/install-mpi.sh`, or name an existing \
             mpirun/mpiexec)",
        ));
    }
    let dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    ["mpirun", "mpiexec"]
        .iter()
        .find_map(|name| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()))
        .ok_or(ApiError::NoMpiLauncher)
}

/// Quotes `word` for a POSIX shell when it needs it.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `words` quoted for a shell and joined by spaces (a command line to show or to paste).
pub fn shell_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An MPI launcher found on this machine, with what its options depend on.
#[derive(Clone, Debug)]
pub struct Launcher {
    /// The mpirun/mpiexec program.
    pub path: PathBuf,
    /// Its implementation (from `--version`).
    pub flavor: Flavor,
    /// True when running as root.
    pub root: bool,
    /// Cores this process may use.
    pub cores: usize,
}

impl Launcher {
    /// Finds the launcher (`given`, or `mpirun`/`mpiexec` on PATH) without running it yet.
    pub fn find(given: Option<&Path>) -> Result<Self, ApiError> {
        let path = find_launcher(given, std::env::var_os("PATH").as_deref())?;
        Ok(Launcher {
            path,
            flavor: Flavor::Other,
            root: false,
            cores: 1,
        })
    }

    /// Runs `--version` to learn the flavor, and reads the user and the cores.
    pub fn probe(mut self) -> Result<Self, ApiError> {
        let version = Command::new(&self.path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map(|o| {
                let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&o.stderr));
                text
            })
            .map_err(|source| ringattn_runtime::Error::Io {
                context: format!("running {} --version", self.path.display()),
                source,
            })?;
        self.flavor = flavor(&version);
        self.root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| is_root_status(&s));
        self.cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(self)
    }

    /// The launcher's options before the program for `ranks` processes (see [`launcher_args`]).
    pub fn args(&self, ranks: usize, extra: &[String]) -> Vec<String> {
        launcher_args(self.flavor, ranks, self.root, self.cores, extra)
    }

    /// The whole command line: this launcher, its options for `ranks` (with `extra`), then
    /// `program` and its `words`.
    pub fn command_line(
        &self,
        ranks: usize,
        extra: &[String],
        program: &Path,
        words: &[String],
    ) -> Vec<String> {
        std::iter::once(self.path.display().to_string())
            .chain(self.args(ranks, extra))
            .chain(std::iter::once(program.display().to_string()))
            .chain(words.iter().cloned())
            .collect()
    }
}

/// Environment variables set by MPI launchers in every process they start: MPICH's hydra
/// (PMI_*), OpenMPI (OMPI_*), PMIx launchers (PMIX_RANK).
const LAUNCHER_VARS: [&str; 4] = ["PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"];

/// True when this process was started by mpirun/mpiexec, or by srun with more than one task.
///
/// For SLURM the step's task count (`SLURM_STEP_NUM_TASKS`, set by srun) decides, not the
/// job's (`SLURM_NTASKS`): a batch script's own shell has `SLURM_PROCID=0` and the job's task
/// count too, and a ringattn started there directly is not one rank of many.
pub fn launched_by_mpi() -> bool {
    launched_by_mpi_in(|name| std::env::var(name).ok())
}

/// [`launched_by_mpi`] over any environment lookup (for tests).
pub fn launched_by_mpi_in(var: impl Fn(&str) -> Option<String>) -> bool {
    if LAUNCHER_VARS.iter().any(|name| var(name).is_some()) {
        return true;
    }
    let slurm_tasks = var("SLURM_STEP_NUM_TASKS")
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    var("SLURM_PROCID").is_some() && slurm_tasks > 1
}

/// The path of the running ringattn binary (what launched ranks run).
pub fn current_exe() -> ringattn_runtime::Result<PathBuf> {
    std::env::current_exe().map_err(|e| ringattn_runtime::Error::Io {
        context: "finding the ringattn binary".into(),
        source: e,
    })
}

/// Runs the command line `words` (a launcher and its program), forwarding SIGINT/SIGTERM to
/// it ([`child`]) and waiting for it; returns the exit code to pass on
/// ([`forwarded_exit_code`]). I/O errors name the launcher `shown`.
pub fn run_forwarding(words: &[String], shown: &str) -> ringattn_runtime::Result<u8> {
    let io = |what: &str| {
        let context = format!("{what} {shown}");
        move |source| ringattn_runtime::Error::Io { context, source }
    };
    child::catch_signals().map_err(io("preparing to start"))?;
    let mut started = Command::new(&words[0])
        .args(&words[1..])
        .spawn()
        .map_err(io("starting"))?;
    let waited = child::wait_forwarding(&mut started).map_err(io("waiting for"))?;
    Ok(forwarded_exit_code(waited.status, waited.signal))
}

/// The exit code of a failed job: 2 for bad input (a caller's mistake), 1 for a runtime
/// failure.
pub fn exit_code(e: &ringattn_runtime::Error) -> u8 {
    if e.is_user_error() {
        2
    } else {
        1
    }
}

/// The exit code a launcher forwards for its child: the child's own, or 128 + the signal that
/// killed it; `forwarded` (a SIGINT/SIGTERM passed on to it) never gives 0, whatever the child
/// returned (MPICH's mpiexec sometimes exits 0 after forwarding SIGTERM).
pub fn forwarded_exit_code(status: std::process::ExitStatus, forwarded: Option<i32>) -> u8 {
    use std::os::unix::process::ExitStatusExt as _;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(s)) => u8::try_from(128 + s).unwrap_or(1),
        (None, None) => 1,
    };
    match (forwarded, code) {
        (Some(sig), 0) => u8::try_from(128 + sig).unwrap_or(1),
        (_, code) => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn tells_open_mpi_from_mpich() {
        assert_eq!(
            flavor("mpirun (Open MPI) 4.1.4\n\nReport bugs"),
            Flavor::OpenMpi
        );
        assert_eq!(
            flavor("HYDRA build details:\n    Version: 4.2.0"),
            Flavor::Other
        );
        assert_eq!(flavor(""), Flavor::Other);
    }

    #[test]
    fn open_mpi_gets_root_and_oversubscription_options_only_when_needed() {
        let none: Vec<String> = Vec::new();
        assert_eq!(
            launcher_args(Flavor::OpenMpi, 4, true, 2, &none),
            words(&["--allow-run-as-root", "--oversubscribe", "-n", "4"])
        );
        assert_eq!(
            launcher_args(Flavor::OpenMpi, 2, false, 2, &none),
            words(&["-n", "2"])
        );
        assert_eq!(
            launcher_args(Flavor::Other, 8, true, 2, &words(&["-ppn", "4"])),
            words(&["-n", "8", "-ppn", "4"])
        );
        // The user's own copy is not doubled.
        assert_eq!(
            launcher_args(
                Flavor::OpenMpi,
                1,
                true,
                2,
                &words(&["--allow-run-as-root"])
            ),
            words(&["-n", "1", "--allow-run-as-root"])
        );
    }

    #[test]
    fn root_is_read_from_the_status_uid_line() {
        assert!(is_root_status("Name:\tx\nUid:\t0\t0\t0\t0\n"));
        assert!(!is_root_status("Uid:\t1000\t1000\t1000\t1000\n"));
        assert!(!is_root_status(""));
    }

    #[test]
    fn the_command_must_be_run_and_gets_the_mpi_backend() {
        assert_eq!(
            mpi_command(&words(&["run", "--seq", "64"])).unwrap(),
            words(&["run", "--backend", "mpi", "--seq", "64"])
        );
        let given = words(&["run", "--backend=mpi"]);
        assert_eq!(mpi_command(&given).unwrap(), given);
        assert!(mpi_command(&words(&["run", "--backend", "local"])).is_err());
        assert!(mpi_command(&words(&["simulate"])).is_err());
        assert!(mpi_command(&[]).unwrap_err().is_user_error());
    }

    #[test]
    fn a_missing_launcher_is_a_user_error() {
        let e = find_launcher(Some(Path::new("/nonexistent/mpirun")), None).unwrap_err();
        assert!(
            e.is_user_error() && e.to_string().contains("/nonexistent"),
            "{e}"
        );
        let e = find_launcher(None, Some(std::ffi::OsStr::new("/nonexistent"))).unwrap_err();
        assert!(
            e.to_string().contains("no mpirun or mpiexec on PATH"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mpiexec"), "").unwrap();
        let found = find_launcher(None, Some(dir.path().as_os_str())).unwrap();
        assert_eq!(found, dir.path().join("mpiexec"));
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn detects_mpi_launchers_from_their_environment() {
        assert!(!launched_by_mpi_in(env(&[])));
        assert!(launched_by_mpi_in(env(&[("PMI_RANK", "0")])));
        assert!(launched_by_mpi_in(env(&[("OMPI_COMM_WORLD_SIZE", "4")])));
        assert!(launched_by_mpi_in(env(&[("PMIX_RANK", "1")])));
        assert!(launched_by_mpi_in(env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_STEP_NUM_TASKS", "2")
        ])));
        // A one-task srun step is not an MPI launch, nor is a batch script's own shell (which
        // has SLURM_PROCID and the job's SLURM_NTASKS, but no step).
        assert!(!launched_by_mpi_in(env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_STEP_NUM_TASKS", "1")
        ])));
        assert!(!launched_by_mpi_in(env(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "8")
        ])));
    }

    #[test]
    fn a_forwarded_run_passes_on_the_childs_exit_code() {
        let w = words(&["sh", "-c", "exit 3"]);
        assert_eq!(run_forwarding(&w, "sh").unwrap(), 3);
        let e = run_forwarding(&words(&["/nonexistent/mpirun"]), "/nonexistent/mpirun");
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("starting /nonexistent/mpirun"));
    }

    #[test]
    fn forwarded_signals_never_exit_zero() {
        use std::os::unix::process::ExitStatusExt as _;
        let ok = std::process::ExitStatus::from_raw(0);
        assert_eq!(forwarded_exit_code(ok, None), 0);
        assert_eq!(forwarded_exit_code(ok, Some(15)), 143);
        let killed = std::process::ExitStatus::from_raw(9);
        assert_eq!(forwarded_exit_code(killed, None), 137);
    }

    #[test]
    fn quotes_only_what_the_shell_would_split() {
        assert_eq!(shell_quote("--seq=4096"), "--seq=4096");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }
}
