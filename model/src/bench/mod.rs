//! The model benchmark behind `ringattn bench model`: prefill tokens/s, decode tokens/s, time
//! to first token, peak RSS and KV bytes per rank for prompts of N tokens × P ranks × layouts,
//! one JSON line per case in `DIR/results.jsonl` (resumable: a case already there is skipped),
//! optionally llama.cpp's numbers on the same prompt, machine and threads beside each context
//! ([`llamacpp`]), and a plot (module `plot`, feature `plot`).
//!
//! Every case uses the same text ([`prompt_of`]: the corpus repeated and cut to N tokens), so
//! llama.cpp, which reads the same file, sees the same tokens.

pub mod llamacpp;
pub mod mpi;
#[cfg(feature = "plot")]
pub mod plot;

use std::path::{Path, PathBuf};

use ringattn::results::{append_line, read_results, RESULTS_FILE};
use ringattn::LayoutChoice;
use ringattn_runtime::Dtype;
use serde_json::{json, Value};

use crate::error::{ModelError, Result};
use crate::{generate_with, GenerateReport, GenerateSpec, Model, WeightFormat};

/// The prompt file written beside the results (the text every case and llama.cpp read).
pub const PROMPT_FILE: &str = "prompt.txt";

/// What to measure.
#[derive(Clone, Debug)]
pub struct ModelBenchSpec {
    /// The GGUF model.
    pub model: PathBuf,
    /// The text prompts are cut from (repeated as needed).
    pub corpus: String,
    /// Prompt lengths in tokens.
    pub contexts: Vec<usize>,
    /// Rank counts.
    pub workers: Vec<usize>,
    /// Layouts (one rank has a single layout: P = 1 runs only the first).
    pub layouts: Vec<LayoutChoice>,
    /// Tokens decoded after each prompt (EOS ignored).
    pub max_tokens: usize,
    /// Threads per rank [`None`: `cores / P`].
    pub threads_per_rank: Option<usize>,
    /// Cores this benchmark may use.
    pub cores: usize,
    /// KV cache storage type.
    pub dtype: Dtype,
    /// Projection weights.
    pub weights: WeightFormat,
    /// Backend name recorded in each line (`local` or `mpi`).
    pub backend: String,
    /// Output directory.
    pub out: PathBuf,
}

/// One case of the grid.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// Prompt tokens.
    pub context: usize,
    /// Ranks.
    pub workers: usize,
    /// Layout.
    pub layout: LayoutChoice,
    /// Threads per rank.
    pub threads: usize,
}

impl ModelBenchSpec {
    /// The cases in run order: contexts, then workers, then layouts (P = 1: the first only).
    pub fn cases(&self) -> Vec<Case> {
        let mut out = Vec::new();
        for &context in &self.contexts {
            for &workers in &self.workers {
                for (i, &layout) in self.layouts.iter().enumerate() {
                    if workers == 1 && i > 0 {
                        continue;
                    }
                    let threads = self
                        .threads_per_rank
                        .unwrap_or((self.cores / workers.max(1)).max(1));
                    out.push(Case {
                        context,
                        workers,
                        layout,
                        threads,
                    });
                }
            }
        }
        out
    }

    /// The identity of `case` in results.jsonl (see [`line_key`]).
    pub fn case_key(&self, case: &Case) -> String {
        format!(
            "ringattn/{}/N{}/P{}/{}/T{}/{}/{}/decode{}",
            self.backend,
            case.context,
            case.workers,
            case.layout.name(),
            case.threads,
            self.dtype.name(),
            self.weights.name(),
            self.max_tokens
        )
    }

    /// Checks the grid (no empty list, no zero, no more ranks than tokens) before anything
    /// runs (an empty corpus is found when the first prompt is cut).
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(ModelError::Invalid {
                field,
                reason: reason.into(),
            })
        };
        if self.contexts.is_empty() || self.contexts.contains(&0) {
            return bad(
                "contexts",
                "need at least one length, each at least 1 token",
            );
        }
        if self.workers.is_empty() || self.workers.contains(&0) {
            return bad("workers", "need at least one count, each at least 1");
        }
        if self.layouts.is_empty() {
            return bad("layouts", "need at least one layout");
        }
        if self.max_tokens == 0 {
            return bad("max_tokens", "must be at least 1");
        }
        if self.threads_per_rank == Some(0) {
            return bad("threads_per_rank", "must be at least 1");
        }
        let (p, n) = (self.workers.iter().max(), self.contexts.iter().min());
        if let (Some(&world), Some(&tokens)) = (p, n) {
            if world > tokens {
                return Err(ModelError::TooManyRanks { world, tokens });
            }
        }
        Ok(())
    }
}

/// The identity of a results line (`None` for a line that is not a case).
pub fn line_key(v: &Value) -> Option<String> {
    v["key"].as_str().map(str::to_string)
}

/// `corpus` repeated and cut to `n` tokens, as text (re-encoding it gives about `n` tokens; the
/// report records the exact count).
pub fn prompt_of(model: &Model, corpus: &str, n: usize) -> Result<String> {
    let mut ids = model.tokenizer.encode(corpus)?;
    if ids.is_empty() {
        return Err(ModelError::EmptyPrompt);
    }
    while ids.len() < n {
        ids.extend_from_within(..);
    }
    ids.truncate(n);
    model.tokenizer.decode(&ids, false)
}

/// The generation spec of `case`.
pub fn case_spec(spec: &ModelBenchSpec, case: &Case, prompt: &str) -> GenerateSpec {
    let mut g = GenerateSpec::new(spec.model.clone(), prompt, spec.max_tokens, case.workers);
    g.layout = case.layout;
    g.threads_per_rank = case.threads;
    g.dtype = spec.dtype;
    g.weights = spec.weights;
    g.ignore_eos = true;
    g.allow_long = true;
    g
}

/// A case's generation report (as JSON) and its peak RSS in bytes, if known.
pub type CaseResult = (Value, Option<u64>);

/// Runs one case on local threads: the report and this process's peak RSS during it
/// (Linux: the high-water mark is reset first; `None` where that is not possible).
pub fn run_local_case(model: &Model, g: &GenerateSpec) -> Result<CaseResult> {
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let report: GenerateReport = generate_with(model, g, &mut |_, _| {})?;
    let rss = if reset { peak_rss_bytes() } else { None };
    Ok((serde_json::to_value(&report).unwrap_or_default(), rss))
}

/// This process's peak resident set (VmHWM), bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The results line of one ringattn case from its generation report `r` (JSON).
pub fn case_line(key: &str, case: &Case, r: &Value, rss: Option<u64>) -> Value {
    let kv: Vec<Value> = r["ranks"]
        .as_array()
        .map(|a| a.iter().map(|k| k["kv_bytes"].clone()).collect())
        .unwrap_or_default();
    json!({
        "key": key,
        "tool": "ringattn",
        "backend": r["backend"],
        "context": case.context,
        "workers": case.workers,
        "layout": r["layout"],
        "threads_per_rank": case.threads,
        "dtype": r["dtype"],
        "weights": r["weights"],
        "prompt_tokens": r["prompt_tokens"],
        "decode_tokens": r["generated_tokens"],
        "prefill_tokens_per_s": r["prefill_tokens_per_s"],
        "decode_tokens_per_s": r["decode_tokens_per_s"],
        "ttft_s": r["ttft_s"],
        "prefill_s": r["prefill_s"],
        "attention_s": r["attention_s"],
        "matmul_s": r["matmul_s"],
        "peak_rss_bytes": rss,
        "kv_bytes_per_rank": kv,
    })
}

/// The keys already in `DIR/results.jsonl`.
pub fn done_keys(dir: &Path) -> Result<Vec<String>> {
    let (values, _) = read_results(&dir.join(RESULTS_FILE))?;
    Ok(values.iter().filter_map(line_key).collect())
}

/// Appends one line to `DIR/results.jsonl` (flushed: a finished case is never lost).
pub fn record(dir: &Path, line: &Value) -> Result<()> {
    Ok(append_line(&dir.join(RESULTS_FILE), line)?)
}

/// One line for the progress stream.
pub fn summary(line: &Value) -> String {
    let f = |k: &str| line[k].as_f64().unwrap_or(f64::NAN);
    let rss = line["peak_rss_bytes"]
        .as_f64()
        .map(|b| format!(" · peak RSS {:.0} MiB", b / (1 << 20) as f64))
        .unwrap_or_default();
    format!(
        "prefill {:.1} tok/s · decode {:.1} tok/s · TTFT {:.2} s{rss}",
        f("prefill_tokens_per_s"),
        f("decode_tokens_per_s"),
        f("ttft_s")
    )
}

/// Runs every case not yet in `DIR/results.jsonl` with `run_case` (local threads:
/// [`run_local_case`]), plus llama.cpp beside each context when `llama` is given; writes
/// `DIR/prompt.txt` first. `progress` gets one line per event. Returns the cases run.
pub fn run_bench(
    spec: &ModelBenchSpec,
    model: &Model,
    run_case: &mut dyn FnMut(&Case, &GenerateSpec) -> Result<CaseResult>,
    llama: Option<&llamacpp::LlamaCpp>,
    progress: &mut dyn FnMut(&str),
) -> Result<usize> {
    spec.validate()?;
    let io = |context: String| {
        move |source| ModelError::Runtime(ringattn_runtime::Error::Io { context, source })
    };
    std::fs::create_dir_all(&spec.out).map_err(io(format!("creating {}", spec.out.display())))?;
    let prompt_path = spec.out.join(PROMPT_FILE);
    std::fs::write(&prompt_path, &spec.corpus)
        .map_err(io(format!("writing {}", prompt_path.display())))?;
    let mut done = done_keys(&spec.out)?;
    let cases = spec.cases();
    let mut ran = 0;
    for (i, case) in cases.iter().enumerate() {
        let label = format!(
            "[{}/{}] {} tokens, P={}, {}, {} thread(s)/rank",
            i + 1,
            cases.len(),
            case.context,
            case.workers,
            case.layout.name(),
            case.threads
        );
        if let Some(l) = llama {
            let key = l.key(case.context, spec.max_tokens);
            if !done.contains(&key) {
                progress(&format!("llama.cpp, {} tokens ...", case.context));
                let line = l.run(&prompt_path, case.context, spec.max_tokens)?;
                progress(&format!(
                    "llama.cpp, {} tokens: {}",
                    case.context,
                    summary(&line)
                ));
                record(&spec.out, &line)?;
                done.push(key);
            }
        }
        let key = spec.case_key(case);
        if done.contains(&key) {
            progress(&format!("{label}: done before, skipped"));
            continue;
        }
        progress(&format!("{label} ..."));
        let g = case_spec(spec, case, &prompt_of(model, &spec.corpus, case.context)?);
        let (report, rss) = run_case(case, &g)?;
        let line = case_line(&key, case, &report, rss);
        progress(&format!("{label}: {}", summary(&line)));
        record(&spec.out, &line)?;
        done.push(key);
        ran += 1;
    }
    Ok(ran)
}

/// The text prompts are cut from: `prompt_file`, else README.md and BENCHMARKS.md of `dir`
/// joined (either may be missing, not both). Errors name the file, or ask for a prompt file.
pub fn corpus(prompt_file: Option<&Path>, dir: &Path) -> ringattn_runtime::Result<String> {
    use ringattn_runtime::Error;
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| Error::BadInput {
            path: p.display().to_string(),
            reason: format!("cannot read the prompt text: {e}"),
        })
    };
    if let Some(p) = prompt_file {
        return read(p);
    }
    let texts: Vec<String> = ["README.md", "BENCHMARKS.md"]
        .iter()
        .filter_map(|f| read(&dir.join(f)).ok())
        .collect();
    if texts.is_empty() {
        return Err(Error::config(
            "no README.md or BENCHMARKS.md here: give --prompt-file FILE",
        ));
    }
    Ok(texts.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_joins_the_docs_or_reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(corpus(None, dir.path()).is_err());
        std::fs::write(dir.path().join("BENCHMARKS.md"), "b").unwrap();
        assert_eq!(corpus(None, dir.path()).unwrap(), "b");
        std::fs::write(dir.path().join("README.md"), "a").unwrap();
        assert_eq!(corpus(None, dir.path()).unwrap(), "a\nb");
        let f = dir.path().join("p.txt");
        std::fs::write(&f, "p").unwrap();
        assert_eq!(corpus(Some(&f), dir.path()).unwrap(), "p");
        assert!(corpus(Some(&dir.path().join("none")), dir.path()).is_err());
    }
}
