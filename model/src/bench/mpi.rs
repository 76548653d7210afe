//! `bench model --backend mpi`: each case is `mpirun -n P <ringattn binary> generate --backend
//! mpi --json -`, launched as `ringattn launch` does; peak RSS is not measured there.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use ringattn::launch::Launcher;
use ringattn_runtime::Error;

use super::{Case, CaseResult};
use crate::error::{ModelError, Result};
use crate::GenerateSpec;

/// The MPI launcher and the `ringattn` binary (built with MPI) each case runs.
pub struct MpiCaseRunner {
    launcher: Launcher,
    exe: PathBuf,
}

impl MpiCaseRunner {
    /// Finds and probes mpirun (an error when there is none); `exe` is the binary to launch.
    pub fn new(exe: PathBuf) -> ringattn_runtime::Result<Self> {
        let launcher = Launcher::find(None)?.probe()?;
        Ok(MpiCaseRunner { launcher, exe })
    }

    /// Runs one case (its prompt written to a scratch file in `dir`, removed after); its
    /// report is the last JSON line rank 0 prints.
    pub fn run(&self, case: &Case, g: &GenerateSpec, dir: &Path) -> Result<CaseResult> {
        let prompt = dir.join(format!("case-prompt-{}.txt", case.context));
        std::fs::write(&prompt, &g.prompt).map_err(|e| fail(e.to_string()))?;
        let out = Command::new(&self.launcher.path)
            .args(self.launcher.args(case.workers, &[]))
            .arg(&self.exe)
            .args(generate_args(g, &prompt))
            .output()
            .map_err(|e| fail(format!("cannot run mpirun: {e}")))?;
        let _ = std::fs::remove_file(&prompt);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(fail(format!(
                "mpirun generate failed ({}): {}",
                out.status,
                err.lines().last().unwrap_or("no message")
            )));
        }
        let report = last_json_line(&String::from_utf8_lossy(&out.stdout))
            .ok_or_else(|| fail("mpirun generate printed no JSON report".into()))?;
        Ok((report, None))
    }
}

/// A runtime failure of the case (rank 0).
fn fail(reason: String) -> ModelError {
    ModelError::Runtime(Error::RankFailed { rank: 0, reason })
}

/// The `generate` arguments of a case whose prompt is in `prompt`.
fn generate_args(g: &GenerateSpec, prompt: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = [
        "generate",
        "--backend",
        "mpi",
        "--json",
        "-",
        "--ignore-eos",
    ]
    .map(OsString::from)
    .to_vec();
    v.extend(["--model".into(), g.model.clone().into_os_string()]);
    v.extend(["--prompt-file".into(), prompt.as_os_str().to_owned()]);
    for (flag, value) in [
        ("--max-tokens", g.max_tokens.to_string()),
        ("--threads", g.threads_per_rank.to_string()),
        ("--layout", g.layout.name().into()),
        ("--dtype", g.dtype.name().into()),
    ] {
        v.extend([flag.into(), value.into()]);
    }
    v.push("--allow-long".into());
    v
}

/// The last line of `text` that parses as JSON.
fn last_json_line(text: &str) -> Option<serde_json::Value> {
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_the_last_json_line() {
        let text = "hello\n{\"a\": 1}\nnot json\n{\"a\": 2}\ntrailing text\n";
        assert_eq!(last_json_line(text), Some(serde_json::json!({"a": 2})));
        assert_eq!(last_json_line("no json here"), None);
    }

    #[test]
    fn generate_args_carry_the_case() {
        let mut g = GenerateSpec::new("m.gguf".into(), "hi", 7, 2);
        g.threads_per_rank = 3;
        let a = generate_args(&g, Path::new("p.txt"));
        let at = |flag: &str| a[a.iter().position(|x| x == flag).unwrap() + 1].clone();
        assert_eq!(a[0], "generate");
        assert_eq!(at("--model"), "m.gguf");
        assert_eq!(at("--prompt-file"), "p.txt");
        assert_eq!(at("--max-tokens"), "7");
        assert_eq!(at("--threads"), "3");
        assert!(a.iter().any(|x| x == "--allow-long"));
    }
}
