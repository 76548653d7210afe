//! `ringattn launch -p P [--mpirun PATH] [--mpi-arg ARG]... -- run ...`: starts this binary
//! under mpirun/mpiexec as P ranks of the MPI backend, adds the options the MPI needs and
//! forwards the job's exit code.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use clap::Args;
use ringattn_runtime::{Error, Result};

use crate::run::backend::{HOW_TO_BUILD_MPI, MPI_BUILT};

/// Options of `ringattn launch`.
#[derive(Debug, Args)]
#[command(
    after_help = "Everything after `--` is the command every rank runs: `run` and its \
    options (`--backend mpi` is added).\n\n\
    Examples:\n  \
    ringattn launch -p 4 -- run --seq 16384 --causal --layout striped --check\n  \
    ringattn launch -p 8 --mpi-arg=--hostfile --mpi-arg=hosts -- run --seq 65536 --threads 4 --json report.json\n  \
    ringattn launch -p 2 --mpirun /opt/mpich/bin/mpiexec --dry-run -- run --causal"
)]
pub struct LaunchArgs {
    /// Number of workers: MPI processes, the ranks of the ring (`-n` / `--ranks`, as mpirun
    /// says it, are accepted too).
    #[arg(
        short = 'p',
        long = "workers",
        short_alias = 'n',
        alias = "ranks",
        value_name = "P"
    )]
    pub ranks: usize,
    /// The MPI launcher to use [default: `mpirun`, else `mpiexec`, found on PATH].
    #[arg(long, value_name = "PATH")]
    pub mpirun: Option<PathBuf>,
    /// One extra argument for the MPI launcher, placed before the program; repeat it for
    /// several (`--mpi-arg=--hostfile --mpi-arg=hosts`).
    #[arg(long = "mpi-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub mpi_args: Vec<String>,
    /// Print the launch command instead of running it.
    #[arg(long)]
    pub dry_run: bool,
    /// `run` and its options, after `--`.
    #[arg(last = true, required = true, value_name = "RUN")]
    pub command: Vec<String>,
}

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

/// Checks that `command` is `run`, `decode` or `generate` and makes it run the MPI backend:
/// adds `--backend mpi` after the command word, or rejects another backend.
pub fn run_command(command: &[String]) -> Result<Vec<String>> {
    let name = match command.first().map(String::as_str) {
        Some(name @ ("run" | "decode" | "generate")) => name.to_string(),
        other => {
            return Err(Error::config(format!(
                "launch starts `ringattn run`, `decode` or `generate` on every rank: write \
                 `-- run OPTIONS` (got `{}`)",
                other.unwrap_or("")
            )))
        }
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
        Some(other) => Err(Error::config(format!(
            "launch runs the mpi backend, not `--backend {other}` (leave --backend out)"
        ))),
    }
}

/// Finds the MPI launcher: `given`, which must exist, or `mpirun`/`mpiexec` on `path`.
pub fn find_launcher(given: Option<&Path>, path: Option<&std::ffi::OsStr>) -> Result<PathBuf> {
    if let Some(p) = given {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        return Err(Error::config(format!(
            "--mpirun {}: no such file (install MPI with `bash scripts/install-mpi.sh`, or name \
             an existing mpirun/mpiexec)",
            p.display()
        )));
    }
    let dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    ["mpirun", "mpiexec"]
        .iter()
        .find_map(|name| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()))
        .ok_or_else(|| {
            Error::config(
                "no mpirun or mpiexec on PATH: install MPI with `bash scripts/install-mpi.sh`, \
                 or name one with --mpirun PATH",
            )
        })
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

/// An MPI launcher found on this machine, with what its options depend on (shared by
/// `ringattn launch` and `ringattn bench scaling --backend mpi`).
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
    pub fn find(given: Option<&Path>) -> Result<Self> {
        let path = find_launcher(given, std::env::var_os("PATH").as_deref())?;
        Ok(Launcher {
            path,
            flavor: Flavor::Other,
            root: false,
            cores: 1,
        })
    }

    /// Runs `--version` to learn the flavor, and reads the user and the cores.
    pub fn probe(mut self) -> Result<Self> {
        let version = Command::new(&self.path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map(|o| {
                let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&o.stderr));
                text
            })
            .map_err(|e| {
                Error::config(format!("cannot run {} --version: {e}", self.path.display()))
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
}

/// Runs `ringattn launch`: the exit code is the job's (2 when mpirun cannot be found or this
/// binary lacks the `mpi` feature).
pub fn run_launch(args: &LaunchArgs) -> Result<ExitCode> {
    if args.ranks == 0 {
        return Err(Error::config("--workers (-p) must be at least 1"));
    }
    let command = run_command(&args.command)?;
    let launcher = Launcher::find(args.mpirun.as_deref())?;
    if !MPI_BUILT {
        return Err(Error::config(format!(
            "ringattn launch: {HOW_TO_BUILD_MPI}"
        )));
    }
    let launcher = launcher.probe()?;
    let mpirun = launcher.path.clone();
    let before = launcher.args(args.ranks, &args.mpi_args);
    let exe = std::env::current_exe().map_err(|e| Error::Io {
        context: "finding the ringattn binary".into(),
        source: e,
    })?;
    if args.dry_run {
        let words: Vec<String> = std::iter::once(mpirun.display().to_string())
            .chain(before)
            .chain(std::iter::once(exe.display().to_string()))
            .chain(command)
            .collect();
        let line: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
        outln!("{}", line.join(" "));
        return Ok(ExitCode::SUCCESS);
    }
    let shown = mpirun.display().to_string();
    let io = |what: &str| {
        let context = format!("{what} {shown}");
        move |source| Error::Io { context, source }
    };
    crate::child::catch_signals().map_err(io("preparing to start"))?;
    let mut child = Command::new(&mpirun)
        .args(&before)
        .arg(&exe)
        .args(&command)
        .spawn()
        .map_err(io("starting"))?;
    // SIGINT/SIGTERM go on to mpirun, which ends its ranks; we wait for it.
    let waited = crate::child::wait_forwarding(&mut child).map_err(io("waiting for"))?;
    Ok(ExitCode::from(
        match (waited.signal, exit_code_of(waited.status)) {
            // A job ended by a forwarded signal never reports success, whatever mpirun returned
            // (MPICH's mpiexec sometimes exits 0 after forwarding SIGTERM): 128 + the signal.
            (Some(sig), 0) => u8::try_from(128 + sig).unwrap_or(1),
            (_, code) => code,
        },
    ))
}

/// The exit code to forward: the launcher's own, or 128 + signal when it was killed.
fn exit_code_of(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(s)) => u8::try_from(128 + s).unwrap_or(1),
        (None, None) => 1,
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
            run_command(&words(&["run", "--seq", "64"])).unwrap(),
            words(&["run", "--backend", "mpi", "--seq", "64"])
        );
        let given = words(&["run", "--backend=mpi"]);
        assert_eq!(run_command(&given).unwrap(), given);
        assert!(run_command(&words(&["run", "--backend", "local"]))
            .unwrap_err()
            .is_user_error());
        assert!(run_command(&words(&["simulate"]))
            .unwrap_err()
            .is_user_error());
        assert!(run_command(&[]).unwrap_err().is_user_error());
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

    #[test]
    fn quotes_only_what_the_shell_would_split() {
        assert_eq!(shell_quote("--seq=4096"), "--seq=4096");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }
}
