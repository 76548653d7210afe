//! Talking to a real SLURM: whether it can bind cores (`scontrol show config`), submitting a
//! batch script (`sbatch --parsable [--wait]`), and the one-line summary of a finished job's
//! run report. Shared by batch jobs ([`super::BatchSpec`]) and job arrays ([`super::array`]).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use ringattn_runtime::{Error, Result};
use serde_json::Value;

/// What a user does to get `srun --cpu-bind=cores` on a cluster that cannot bind.
pub const HOW_TO_BIND: &str = "set TaskPlugin=task/affinity (or task/cgroup,task/affinity) in \
    slurm.conf, or ask for binding anyway";

/// The cluster's `TaskPlugin` from `scontrol show config`, or `None` when there is no
/// reachable SLURM (no `scontrol`, or it fails).
pub fn task_plugin() -> Option<String> {
    let out = Command::new("scontrol")
        .args(["show", "config"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    task_plugin_of(&String::from_utf8_lossy(&out.stdout))
}

/// The `TaskPlugin = ...` value in the text of `scontrol show config`.
pub fn task_plugin_of(config: &str) -> Option<String> {
    config.lines().find_map(|l| {
        let (key, value) = l.split_once('=')?;
        (key.trim() == "TaskPlugin").then(|| value.trim().to_string())
    })
}

/// True when a `TaskPlugin` value lets `srun --cpu-bind` bind (affinity or cgroup).
pub fn plugin_binds(plugin: &str) -> bool {
    plugin.contains("affinity") || plugin.contains("cgroup")
}

/// A submitted job: its id and, when waited for, the exit status `sbatch --wait` returned
/// (the job's own exit code).
#[derive(Debug)]
pub struct Submitted {
    /// SLURM job id.
    pub job_id: String,
    /// `Some(code)` after `--wait` (0 = completed), `None` when not waited for.
    pub status: Option<i32>,
}

/// Submits `script` through `sbatch --parsable` (reading the script on stdin) with `extra`
/// options; `on_id` sees the job id as soon as SLURM assigns it. With `wait`, returns when
/// the job (every task of an array) has ended.
pub fn submit(
    script: &str,
    wait: bool,
    extra: &[String],
    on_id: impl FnOnce(&str),
) -> Result<Submitted> {
    let fail = |why: String| Error::Io {
        context: "submitting the batch job".into(),
        source: std::io::Error::other(why),
    };
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable");
    if wait {
        cmd.arg("--wait");
    }
    let mut child = cmd
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            fail(format!(
                "cannot start sbatch ({e}): run on a SLURM login node, or start a local SLURM \
                 with `bash scripts/slurm-local.sh start`"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| fail(format!("writing the script to sbatch: {e}")))?;
    }
    let mut first = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut first);
    }
    // `--parsable` prints `JOBID` or `JOBID;CLUSTER`.
    let job_id = first.trim().split(';').next().unwrap_or("").to_string();
    if !job_id.is_empty() {
        on_id(&job_id);
    }
    let status = child
        .wait()
        .map_err(|e| fail(format!("waiting for sbatch: {e}")))?;
    if job_id.is_empty() {
        return Err(fail(format!("sbatch printed no job id ({status})")));
    }
    Ok(Submitted {
        job_id,
        status: wait.then(|| status.code().unwrap_or(1)),
    })
}

/// One line about a run (or decode) report: what ran, its speed and its check.
pub fn report_summary(v: &Value) -> String {
    if v.get("generated_tokens").is_some() {
        return format!(
            "generate P={} {}: {} prompt tokens at {:.1} tok/s, {} generated at {:.1} tok/s",
            v["world"],
            v["layout"].as_str().unwrap_or("?"),
            v["prompt_tokens"],
            v["prefill_tokens_per_s"].as_f64().unwrap_or(f64::NAN),
            v["generated_tokens"],
            v["decode_tokens_per_s"].as_f64().unwrap_or(f64::NAN),
        );
    }
    let check = match &v["check"] {
        Value::Object(c) => format!(
            " · check {} (max abs err {:.2e})",
            if c.get("passed").and_then(Value::as_bool) == Some(true) {
                "passed"
            } else {
                "FAILED"
            },
            c.get("max_abs_err")
                .and_then(Value::as_f64)
                .unwrap_or(f64::NAN)
        ),
        _ => String::new(),
    };
    format!(
        "{} P={} {} N={} H={}/{} D={}: wall {:.3} s · {:.2} GFLOP/s · imbalance {:.3}{check}",
        v["backend"].as_str().unwrap_or("?"),
        v["world"],
        v["layout"].as_str().unwrap_or("?"),
        v["seq"],
        v["heads"],
        v["kv_heads"],
        v["head_dim"],
        v["wall_s"].as_f64().unwrap_or(f64::NAN),
        v["gflops"].as_f64().unwrap_or(f64::NAN),
        v["imbalance"].as_f64().unwrap_or(f64::NAN),
    )
}

/// Why a job failed, from its log: the last `ringattn: error` line, else the last non-empty
/// line, if the log can be read.
pub fn failure_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines().map(str::trim);
    lines
        .clone()
        .rfind(|l| l.starts_with("ringattn: error"))
        .or_else(|| lines.rfind(|l| !l.is_empty()))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_plugin_is_read_from_scontrol_config() {
        let text = "SwitchType              = switch/none\nTaskPlugin              = task/affinity\nTaskPluginParam         = (null type)\n";
        assert_eq!(task_plugin_of(text).as_deref(), Some("task/affinity"));
        assert!(plugin_binds("task/affinity"));
        assert!(plugin_binds("task/cgroup,task/affinity"));
        assert!(!plugin_binds("task/none"));
        assert_eq!(task_plugin_of("nothing"), None);
    }

    #[test]
    fn summary_names_the_run_and_its_check() {
        let v: Value = serde_json::from_str(
            r#"{"backend":"mpi","world":2,"layout":"striped","seq":300,"heads":2,"kv_heads":2,
            "head_dim":16,"wall_s":0.5,"gflops":1.0,"imbalance":1.0,
            "check":{"passed":true,"max_abs_err":1e-7}}"#,
        )
        .unwrap();
        let s = report_summary(&v);
        assert!(s.starts_with("mpi P=2 striped N=300 H=2/2 D=16"), "{s}");
        assert!(s.contains("check passed"), "{s}");
    }
}
