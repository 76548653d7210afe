//! `eval passkey`: the needle-in-a-haystack grid (sparsity × context × depth × trial), each
//! trial a real `generate` on the ring (P local ranks), greedy, scored by exact match. Results
//! go to `results.jsonl` one line per trial, flushed as they finish; a rerun skips the trials
//! already there, so a killed grid resumes where it stopped.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use ringattn_ring::Selection;
use ringattn_runtime::Comm;
use serde::{Deserialize, Serialize};

use crate::duo::{DuoSource, DEFAULT_RECENT, DEFAULT_SINK};
use crate::error::{ModelError, Result};
use crate::eval::haystack::{passkey_of, passkey_prompt, score};
use crate::eval::random::{label, write_random_pattern};
use crate::generate::{generate_rank, GenerateReport, GenerateSpec};
use crate::local::generate_with;
use crate::Model;

/// Which heads are streaming at a sparsity.
#[derive(Clone, Debug, PartialEq)]
pub enum Heads {
    /// Every head full attention (only sparsity 0).
    Full,
    /// The lowest-scored heads of a calibrated pattern directory.
    Calibrated(PathBuf),
    /// Heads chosen at random by a seed.
    Random(u64),
}

impl Heads {
    /// The selection of a front end's options: the `calibrated` pattern directory when given,
    /// else random heads of `random_seed` when given, else full attention.
    pub fn choose(calibrated: Option<PathBuf>, random_seed: Option<u64>) -> Heads {
        match (calibrated, random_seed) {
            (Some(dir), _) => Heads::Calibrated(dir),
            (None, Some(seed)) => Heads::Random(seed),
            (None, None) => Heads::Full,
        }
    }
}

/// The grid and how to run it.
#[derive(Clone, Debug)]
pub struct PasskeySpec {
    /// Which heads are streaming.
    pub heads: Heads,
    /// Fractions of streaming KV heads.
    pub sparsities: Vec<f64>,
    /// Prompt lengths in tokens.
    pub contexts: Vec<usize>,
    /// Needle depths in [0, 1].
    pub depths: Vec<f64>,
    /// Trials per cell (trial `t` uses the same pass key in every cell).
    pub trials: usize,
    /// Seed of the pass keys.
    pub seed: u64,
    /// Ranks (threads of this process).
    pub world: usize,
    /// Kernel threads per rank.
    pub threads_per_rank: usize,
    /// Sink tokens (`None`: the pattern's, else the default).
    pub sink: Option<usize>,
    /// Recent window (`None`: the pattern's, else the default).
    pub recent: Option<usize>,
    /// Output directory (`results.jsonl`, random patterns).
    pub out: PathBuf,
    /// Tokens to decode per answer.
    pub max_tokens: usize,
    /// Pin local ranks' threads to cores of their own (off under MPI).
    pub pin: bool,
}

/// One trial's line of `results.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    /// `full`, `calibrated` or `random:SEED`.
    pub selection: String,
    /// Fraction of streaming KV heads.
    pub sparsity: f64,
    /// Requested prompt length.
    pub context: usize,
    /// Needle depth.
    pub depth: f64,
    /// Trial index.
    pub trial: usize,
    /// The pass key.
    pub passkey: String,
    /// The decoded answer.
    pub answer: String,
    /// 1 if the answer's first number is the pass key.
    pub correct: u8,
    /// Prompt tokens actually used.
    pub prompt_tokens: usize,
    /// Ranks.
    pub world: usize,
    /// KV cache bytes each rank held at the end.
    pub kv_bytes_per_rank: Vec<u64>,
    /// Prefill tokens/s (loaded machine: not a benchmark).
    pub prefill_tokens_per_s: f64,
}

impl TrialResult {
    fn key(&self) -> String {
        key(
            &self.selection,
            self.sparsity,
            self.context,
            self.depth,
            self.trial,
        )
    }
}

impl TrialResult {
    /// The trial as one progress line, `n` of `total` (what `eval passkey` prints on stderr).
    pub fn progress_line(&self, n: usize, total: usize) -> String {
        format!(
            "passkey {n}/{total}: {} sparsity {} context {} depth {} trial {}: {} ({:?})",
            self.selection,
            self.sparsity,
            self.context,
            self.depth,
            self.trial,
            if self.correct == 1 {
                "correct"
            } else {
                "wrong"
            },
            self.answer.trim()
        )
    }
}

fn key(sel: &str, s: f64, c: usize, d: f64, t: usize) -> String {
    format!("{sel}|{s:.4}|{c}|{d:.4}|{t}")
}

impl Heads {
    /// The `selection` label of results.
    pub fn label(&self) -> String {
        match self {
            Heads::Full => "full".into(),
            Heads::Calibrated(_) => "calibrated".into(),
            Heads::Random(seed) => label(*seed),
        }
    }
}

fn invalid(field: &'static str, reason: String) -> ModelError {
    ModelError::Invalid { field, reason }
}

/// Checks the grid before any work.
pub fn check(spec: &PasskeySpec, model_context: usize) -> Result<()> {
    if spec.sparsities.is_empty() || spec.contexts.is_empty() || spec.depths.is_empty() {
        return Err(invalid(
            "grid",
            "sparsities, contexts and depths need a value each".into(),
        ));
    }
    if let Some(s) = spec.sparsities.iter().find(|s| !(0.0..=1.0).contains(*s)) {
        return Err(invalid("sparsity", format!("{s} is not in [0, 1]")));
    }
    if spec.heads == Heads::Full && spec.sparsities.iter().any(|&s| s > 0.0) {
        return Err(invalid(
            "sparsity",
            "a sparsity above 0 needs a pattern or a random selection".into(),
        ));
    }
    if let Some(d) = spec.depths.iter().find(|d| !(0.0..=1.0).contains(*d)) {
        return Err(invalid("depth", format!("{d} is not in [0, 1]")));
    }
    if let Some(c) = spec.contexts.iter().find(|&&c| c > model_context || c < 64) {
        return Err(invalid(
            "context",
            format!("{c} is outside 64..={model_context} (the model's trained context)"),
        ));
    }
    if spec.threads_per_rank == 0 || spec.recent == Some(0) {
        return Err(invalid(
            "threads",
            "threads per rank and the recent window must be at least 1".into(),
        ));
    }
    if spec.trials == 0 || spec.world == 0 || spec.max_tokens == 0 {
        return Err(invalid(
            "trials",
            "trials, workers and max tokens must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Results already in `path` (a torn last line, from a killed run, is cut off).
pub fn load_results(path: &Path) -> Result<Vec<TrialResult>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(invalid(
                "out",
                format!("cannot read {}: {e}", path.display()),
            ))
        }
    };
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    if complete.len() != text.len() {
        std::fs::write(path, complete)
            .map_err(|e| invalid("out", format!("cannot repair {}: {e}", path.display())))?;
    }
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| {
                invalid(
                    "out",
                    format!("{} has a bad line ({e}): {l}", path.display()),
                )
            })
        })
        .collect()
}

/// The duo source of `heads` at `sparsity`.
fn source(spec: &PasskeySpec, dir: Option<&Path>, sparsity: f64) -> Option<DuoSource> {
    dir.map(|path| DuoSource::Pattern {
        path: path.to_path_buf(),
        selection: Selection::Sparsity(sparsity),
        sink: spec.sink,
        recent: spec.recent,
    })
}

/// How a trial's generation runs: local ranks ([`local_runner`]) or this process's rank of an
/// MPI world (the caller's closure over `generate_rank`).
pub type Runner<'a> = &'a mut dyn FnMut(&GenerateSpec) -> Result<GenerateReport>;

/// A runner of `spec.world` ranks as threads of this process.
pub fn local_runner(model: &Model) -> impl FnMut(&GenerateSpec) -> Result<GenerateReport> + '_ {
    move |g: &GenerateSpec| generate_with(model, g, &mut |_, _| {})
}

/// Runs every trial of the grid not yet in `out/results.jsonl` through `runner`; `on_trial`
/// sees each new result with its index and the grid's size. Only a `writer` (rank 0) appends
/// to the file; every rank must read the same file at the start. Returns every result.
pub fn run_passkey(
    model: &Model,
    model_path: &Path,
    spec: &PasskeySpec,
    runner: Runner<'_>,
    writer: bool,
    on_trial: &mut dyn FnMut(&TrialResult, usize, usize),
) -> Result<Vec<TrialResult>> {
    let c = &model.weights.config;
    check(spec, c.context)?;
    let io = |e: std::io::Error| invalid("out", format!("{}: {e}", spec.out.display()));
    std::fs::create_dir_all(&spec.out).map_err(io)?;
    let path = spec.out.join("results.jsonl");
    let mut results = load_results(&path)?;
    let done: HashSet<String> = results.iter().map(TrialResult::key).collect();
    let dir = match &spec.heads {
        Heads::Full => None,
        Heads::Calibrated(p) => Some(p.clone()),
        Heads::Random(seed) => Some(write_random_pattern(
            &spec.out,
            *seed,
            c.layers,
            c.kv_heads,
            spec.sink.unwrap_or(DEFAULT_SINK),
            spec.recent.unwrap_or(DEFAULT_RECENT),
        )?),
    };
    let sel = spec.heads.label();
    let mut file = match writer {
        true => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io)?,
        ),
        false => None,
    };
    let total = spec.sparsities.len() * spec.contexts.len() * spec.depths.len() * spec.trials;
    let mut n = 0;
    for &context in &spec.contexts {
        for &depth in &spec.depths {
            for trial in 0..spec.trials {
                for &sparsity in &spec.sparsities {
                    n += 1;
                    if done.contains(&key(&sel, sparsity, context, depth, trial)) {
                        continue;
                    }
                    let cell = Cell {
                        context,
                        depth,
                        trial,
                        sparsity,
                    };
                    let r = run_trial(model, model_path, spec, dir.as_deref(), &sel, cell, runner)?;
                    if let Some(f) = file.as_mut() {
                        let line = serde_json::to_string(&r).unwrap_or_default() + "\n";
                        f.write_all(line.as_bytes()).map_err(io)?;
                        f.flush().map_err(io)?;
                    }
                    on_trial(&r, n, total);
                    results.push(r);
                }
            }
        }
    }
    Ok(results)
}

#[derive(Clone, Copy)]
struct Cell {
    context: usize,
    depth: f64,
    trial: usize,
    sparsity: f64,
}

/// [`run_passkey`] as this process's rank of a ring over `comm` (MPI): every rank walks the
/// grid, each trial one [`generate_rank`]; rank 0 alone
/// writes `results.jsonl` and sees `on_trial`.
pub fn run_passkey_rank(
    model: &Model,
    model_path: &Path,
    spec: &PasskeySpec,
    comm: &mut dyn Comm,
    on_trial: &mut dyn FnMut(&TrialResult, usize, usize),
) -> Result<Vec<TrialResult>> {
    let root = comm.rank() == 0;
    let mut runner = |g: &GenerateSpec| generate_rank(model, g, comm, &mut |_, _| {});
    let mut quiet = |_: &TrialResult, _: usize, _: usize| {};
    let on_trial = if root { on_trial } else { &mut quiet };
    run_passkey(model, model_path, spec, &mut runner, root, on_trial)
}

fn run_trial(
    model: &Model,
    model_path: &Path,
    spec: &PasskeySpec,
    dir: Option<&Path>,
    sel: &str,
    cell: Cell,
    runner: Runner<'_>,
) -> Result<TrialResult> {
    let passkey = passkey_of(spec.seed, cell.trial);
    let hay = passkey_prompt(&model.tokenizer, cell.context, cell.depth, &passkey)?;
    let mut g = GenerateSpec::new(
        model_path.to_path_buf(),
        &hay.text,
        spec.max_tokens,
        spec.world,
    );
    g.threads_per_rank = spec.threads_per_rank;
    g.pin = spec.pin;
    g.duo = source(spec, dir, cell.sparsity);
    let rep = runner(&g)?;
    Ok(TrialResult {
        selection: sel.to_string(),
        sparsity: cell.sparsity,
        context: cell.context,
        depth: cell.depth,
        trial: cell.trial,
        correct: u8::from(score(&rep.text, &passkey)),
        passkey,
        answer: rep.text,
        prompt_tokens: rep.prompt_tokens,
        world: rep.world,
        kv_bytes_per_rank: rep.ranks.iter().map(|r| r.kv_bytes).collect(),
        prefill_tokens_per_s: rep.prefill_tokens_per_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_wins_over_a_seed_and_neither_is_full_attention() {
        let dir = PathBuf::from("p");
        let both = Heads::choose(Some(dir.clone()), Some(3));
        assert_eq!(both, Heads::Calibrated(dir));
        assert_eq!(Heads::choose(None, Some(3)), Heads::Random(3));
        assert_eq!(Heads::choose(None, None), Heads::Full);
    }
}
