//! `ringattn bench scaling --backend mpi`: each combination is its own MPI launch,
//! `mpirun -n P <this ringattn> run --backend mpi ... --json -`, with the launcher found and
//! its options chosen exactly as `ringattn launch` does ([`crate::launch::Launcher`]). The
//! one-line JSON report the root prints on stdout becomes the results line.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use ringattn_runtime::{Error, Result};
use serde_json::Value;

use super::scaling::{Combo, ScalingArgs};
use crate::launch::{shell_quote, Launcher};
use crate::run::backend::{HOW_TO_BUILD_MPI, MPI_BUILT};

/// What every MPI launch of one sweep shares: the launcher, its extra options, this binary.
#[derive(Debug)]
pub struct MpiSweep {
    launcher: Launcher,
    extra: Vec<String>,
    exe: PathBuf,
}

impl MpiSweep {
    /// Checks that this binary has the MPI backend and finds the launcher (exit 2 otherwise).
    pub fn new(args: &ScalingArgs) -> Result<Self> {
        if !MPI_BUILT {
            return Err(Error::config(format!(
                "bench scaling --backend mpi: {HOW_TO_BUILD_MPI}"
            )));
        }
        let launcher = Launcher::find(args.mpirun.as_deref())?.probe()?;
        let exe = std::env::current_exe().map_err(|e| Error::Io {
            context: "finding the ringattn binary".into(),
            source: e,
        })?;
        Ok(MpiSweep {
            launcher,
            extra: args.mpi_args.clone(),
            exe,
        })
    }

    /// The full command line of one combination (`run_words` from `run` on).
    pub fn command(&self, world: usize, run_words: &[String]) -> Vec<String> {
        let mut words = vec![self.launcher.path.display().to_string()];
        words.extend(self.launcher.args(world, &self.extra));
        words.push(self.exe.display().to_string());
        words.push("run".into());
        words.extend([
            "--backend".into(),
            "mpi".into(),
            "--json".into(),
            "-".into(),
        ]);
        words.extend(run_words.iter().skip(1).cloned());
        words
    }

    /// Runs one combination under mpirun and returns its run report. A failed launch, a
    /// non-zero exit or a report that does not parse is a runtime error naming the combination.
    pub fn run(&self, run_words: &[String], combo: &Combo) -> Result<Value> {
        let words = self.command(combo.world, run_words);
        let name = format!(
            "bench scaling --backend mpi: P={} {} N={}",
            combo.world, combo.layout, combo.seq
        );
        let fail = |why: String| Error::Io {
            context: format!("{name} failed"),
            source: std::io::Error::other(why),
        };
        let out = Command::new(&words[0])
            .args(&words[1..])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| fail(format!("cannot start {}: {e}", words[0])))?;
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
                words
                    .iter()
                    .map(|w| shell_quote(w))
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
        }
        parse_report(&String::from_utf8_lossy(&out.stdout), combo.world).map_err(fail)
    }
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
