//! llama.cpp beside ringattn: `scripts/bench-llamacpp.py` (PyPI `llama-cpp-python`, flash
//! attention on) on the same GGUF, prompt file, machine and thread count, one context per
//! process (so its peak RSS is that context's), its JSON line recorded in the same results
//! file.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::error::{ModelError, Result};

/// How to run llama.cpp.
#[derive(Clone, Debug)]
pub struct LlamaCpp {
    /// The Python interpreter.
    pub python: PathBuf,
    /// `scripts/bench-llamacpp.py`.
    pub script: PathBuf,
    /// The GGUF model.
    pub model: PathBuf,
    /// Threads (prefill and decode).
    pub threads: usize,
}

impl LlamaCpp {
    /// A runner, or why llama.cpp cannot run here (the script is missing, or `python` cannot
    /// import `llama_cpp`), as one line.
    pub fn detect(
        python: PathBuf,
        script: PathBuf,
        model: PathBuf,
        threads: usize,
    ) -> std::result::Result<LlamaCpp, String> {
        if !script.is_file() {
            return Err(format!("{} not found", script.display()));
        }
        let import = Command::new(&python)
            .args(["-c", "import llama_cpp, numpy"])
            .output();
        match import {
            Ok(o) if o.status.success() => Ok(LlamaCpp {
                python,
                script,
                model,
                threads,
            }),
            Ok(_) => Err(format!(
                "{} cannot import llama_cpp and numpy (pip install llama-cpp-python==0.3.36 numpy)",
                python.display()
            )),
            Err(e) => Err(format!("cannot run {}: {e}", python.display())),
        }
    }

    /// The identity of llama.cpp's line for a context in results.jsonl.
    pub fn key(&self, context: usize, decode: usize) -> String {
        format!("llama.cpp/N{context}/T{}/decode{decode}", self.threads)
    }

    /// Prefill of the first `context` tokens of `prompt` and `decode` greedy tokens: the
    /// results line (the script's JSON plus `key`, `context`, `threads_per_rank`, `workers`).
    pub fn run(&self, prompt: &Path, context: usize, decode: usize) -> Result<Value> {
        let fail = |reason: String| {
            ModelError::Runtime(ringattn_runtime::Error::RankFailed { rank: 0, reason })
        };
        let out = Command::new(&self.python)
            .arg(&self.script)
            .arg("--model")
            .arg(&self.model)
            .arg("--prompt-file")
            .arg(prompt)
            .args(["--tokens", &context.to_string()])
            .args(["--threads", &self.threads.to_string()])
            .args(["--decode", &decode.to_string()])
            .output()
            .map_err(|e| fail(format!("cannot run {}: {e}", self.python.display())))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or("no message");
            return Err(fail(format!("llama.cpp benchmark failed: {last}")));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut v: Value = text
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| fail("llama.cpp benchmark printed no JSON line".into()))?;
        v["key"] = self.key(context, decode).into();
        v["tool"] = "llama.cpp".into();
        v["context"] = context.into();
        v["workers"] = 1.into();
        v["threads_per_rank"] = self.threads.into();
        Ok(v)
    }
}
