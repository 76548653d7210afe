//! The scaling sweep through MPI: each combination is its own MPI launch,
//! `mpirun -n P <ringattn> run --backend mpi ... --json -`, with the launcher found and its
//! options chosen as for any MPI job ([`crate::launch::Launcher`]); SIGINT/SIGTERM reach
//! mpirun ([`crate::launch::child`]). The one-line JSON report the root prints on stdout
//! becomes the results line.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use ringattn_runtime::{Error, Result};
use serde_json::Value;

use crate::launch::{child, shell_line, Launcher};
use crate::sweep::Combo;

/// What every MPI launch of one sweep shares: the launcher, its extra options, the program.
#[derive(Debug)]
pub struct MpiSweep {
    /// The MPI launcher (probed).
    pub launcher: Launcher,
    /// Extra launcher options.
    pub extra: Vec<String>,
    /// The ringattn binary (an MPI build) the ranks run.
    pub exe: PathBuf,
}

impl MpiSweep {
    /// The sweep of this program (an MPI build) under the launcher `mpirun` (or the one on
    /// PATH), probed, with `extra` launcher options.
    pub fn find(
        mpirun: Option<&std::path::Path>,
        extra: Vec<String>,
    ) -> std::result::Result<Self, crate::error::ApiError> {
        let launcher = Launcher::find(mpirun)?.probe()?;
        let exe = crate::launch::current_exe()?;
        Ok(MpiSweep {
            launcher,
            extra,
            exe,
        })
    }

    /// The full command line of one combination: the launcher for `world` ranks, the program,
    /// then `words` (its arguments: `run --backend mpi --json - ...`).
    pub fn command(&self, world: usize, words: &[String]) -> Vec<String> {
        self.launcher
            .command_line(world, &self.extra, &self.exe, words)
    }

    /// Runs one combination under mpirun and returns its run report. A failed launch, a
    /// non-zero exit or a report that does not parse is a runtime error naming the combination.
    pub fn run(&self, program_words: &[String], combo: &Combo) -> Result<Value> {
        let words = self.command(combo.world, program_words);
        let name = format!(
            "bench scaling --backend mpi: P={} {} N={}",
            combo.world, combo.layout, combo.seq
        );
        let fail = |why: String| Error::Io {
            context: format!("{name} failed"),
            source: std::io::Error::other(why),
        };
        let out = output_forwarding(Command::new(&words[0]).args(&words[1..]))
            .map_err(|e| fail(format!("cannot run {}: {e}", words[0])))?;
        if let Some(sig) = out.signal {
            return Err(fail(format!("interrupted by signal {sig}")));
        }
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("no message");
            return Err(fail(format!(
                "{} ({last}); command: {}",
                out.status,
                shell_line(&words)
            )));
        }
        parse_report(&String::from_utf8_lossy(&out.stdout), combo.world).map_err(fail)
    }
}

/// What [`output_forwarding`] collected.
struct Collected {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    signal: Option<i32>,
}

/// `cmd.output()`, forwarding SIGINT/SIGTERM to the child and waiting for it
/// ([`child::wait_forwarding`]).
fn output_forwarding(cmd: &mut Command) -> std::io::Result<Collected> {
    use std::io::Read;
    child::catch_signals()?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let waited = child::wait_forwarding(&mut child)?;
    Ok(Collected {
        status: waited.status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        signal: waited.signal,
    })
}

/// The run report in `stdout`: its last line that parses as a JSON object with the expected
/// `world` and `backend` `mpi`.
pub fn parse_report(stdout: &str, world: usize) -> std::result::Result<Value, String> {
    let value = stdout
        .lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(Value::is_object)
        })
        .ok_or_else(|| "no JSON run report on stdout".to_string())?;
    if value["backend"].as_str() != Some("mpi") || value["world"].as_u64() != Some(world as u64) {
        return Err(format!(
            "the report says backend {} and world {}, expected mpi and {world}",
            value["backend"], value["world"]
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_the_last_json_line_and_must_match_the_world() {
        let out = "some banner\n{\"backend\":\"mpi\",\"world\":2,\"wall_s\":1.0}\n";
        assert_eq!(parse_report(out, 2).unwrap()["wall_s"], 1.0);
        assert!(parse_report(out, 4)
            .unwrap_err()
            .contains("expected mpi and 4"));
        assert!(parse_report("nothing\n", 1)
            .unwrap_err()
            .contains("no JSON"));
        let local = "{\"backend\":\"local\",\"world\":1}\n";
        assert!(parse_report(local, 1).is_err());
    }
}
