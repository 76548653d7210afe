//! `eval fidelity`: how far DuoAttention moves the model from full attention on a long prompt,
//! whatever the model can retrieve: KL divergence of the next-token distributions and top-1
//! agreement over the last prompt positions and the greedy continuation, and how many tokens of
//! the full model's greedy continuation the DuoAttention model reproduces before it first
//! differs. The continuation is teacher-forced: one prefill over prompt + continuation per
//! configuration gives every position's distribution (equal, position by position, to greedy
//! decoding for as long as the two agree).

use std::path::{Path, PathBuf};

use ringattn_ring::Selection;
use serde::{Deserialize, Serialize};

use crate::block::argmax;
use crate::calibrate::forward::{kl_divergence, Forward};
use crate::duo::{DuoSource, DEFAULT_RECENT, DEFAULT_SINK};
use crate::error::{ModelError, Result};
use crate::eval::passkey::Heads;
use crate::eval::random::write_random_pattern;
use crate::generate::GenerateSpec;
use crate::local::generate_with;
use crate::Model;

/// What to compare.
#[derive(Clone, Debug)]
pub struct FidelitySpec {
    /// Head selections to compare to full attention (calibrated and/or random).
    pub heads: Vec<Heads>,
    /// Fractions of streaming KV heads.
    pub sparsities: Vec<f64>,
    /// Prompt positions (the last ones) whose next-token distributions are compared.
    pub last_k: usize,
    /// Greedy continuation tokens of the full model.
    pub continuation: usize,
    /// Kernel threads.
    pub threads: usize,
    /// Sink tokens (`None`: the pattern's, else the default).
    pub sink: Option<usize>,
    /// Recent window (`None`: the pattern's, else the default).
    pub recent: Option<usize>,
    /// Where random patterns are written.
    pub out: PathBuf,
}

impl FidelitySpec {
    /// Checks the options a run needs before any work: at least one position and one
    /// continuation token compared, every sparsity in [0, 1].
    pub fn check(&self) -> Result<()> {
        if self.continuation == 0 || self.last_k == 0 {
            return Err(ModelError::Invalid {
                field: "positions",
                reason: "last positions and continuation tokens must be at least 1".into(),
            });
        }
        if let Some(s) = self.sparsities.iter().find(|s| !(0.0..=1.0).contains(*s)) {
            return Err(ModelError::Invalid {
                field: "sparsity",
                reason: format!("{s} is not in [0, 1]"),
            });
        }
        Ok(())
    }
}

/// One configuration's fidelity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FidelityRow {
    /// `calibrated` or `random:SEED`.
    pub selection: String,
    /// Fraction of streaming KV heads.
    pub sparsity: f64,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Positions compared (last prompt positions and continuation positions).
    pub positions: usize,
    /// Mean KL(full ‖ duo) in nats over the positions.
    pub kl_mean: f64,
    /// Largest KL over the positions.
    pub kl_max: f64,
    /// Fraction of positions whose most likely token is the same.
    pub top1_agreement: f64,
    /// Leading tokens of the full model's greedy continuation reproduced exactly.
    pub identical_continuation: usize,
    /// Length of the full model's continuation.
    pub continuation: usize,
}

/// The longest prefix of `text` (cut at whitespace) of at most `max_tokens` tokens.
pub fn truncate_text(model: &Model, text: &str, max_tokens: usize) -> Result<String> {
    if model.tokenizer.encode(text)?.len() <= max_tokens {
        return Ok(text.to_string());
    }
    let cuts: Vec<usize> = text
        .char_indices()
        .filter(|(_, c)| c.is_whitespace())
        .map(|(i, _)| i)
        .collect();
    let (mut lo, mut hi) = (0usize, cuts.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if model.tokenizer.encode(&text[..cuts[mid - 1]])?.len() <= max_tokens {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(if lo == 0 {
        String::new()
    } else {
        text[..cuts[lo - 1]].to_string()
    })
}

/// Compares every (selection, sparsity) of `spec` to full attention on `prompt` (raw text, no
/// chat template); `on_row` sees each row as it is measured.
pub fn run_fidelity(
    model: &Model,
    model_path: &Path,
    prompt: &str,
    spec: &FidelitySpec,
    on_row: &mut dyn FnMut(&FidelityRow),
) -> Result<Vec<FidelityRow>> {
    let c = &model.weights.config;
    spec.check()?;
    let mut g = GenerateSpec::new(model_path.to_path_buf(), prompt, spec.continuation, 1);
    g.threads_per_rank = spec.threads;
    g.ignore_eos = true;
    let reference = generate_with(model, &g, &mut |_, _| {})?;
    let prompt_ids = model.tokenizer.encode(prompt)?;
    let n = prompt_ids.len();
    let cont = &reference.token_ids;
    let mut ids = prompt_ids;
    ids.extend_from_slice(&cont[..cont.len() - 1]);
    let rows = n.saturating_sub(spec.last_k)..ids.len();
    let mut fwd = Forward::new(model, &ids, spec.threads)?;
    let x = fwd.layers_from(0, fwd.embedded()?, None)?;
    let full = fwd.logits(&x, rows.clone())?;
    let mut out = Vec::new();
    for heads in &spec.heads {
        let dir = match heads {
            Heads::Full => continue,
            Heads::Calibrated(p) => p.clone(),
            Heads::Random(seed) => write_random_pattern(
                &spec.out,
                *seed,
                c.layers,
                c.kv_heads,
                spec.sink.unwrap_or(DEFAULT_SINK),
                spec.recent.unwrap_or(DEFAULT_RECENT),
            )?,
        };
        for &s in &spec.sparsities {
            let plans = DuoSource::Pattern {
                path: dir.clone(),
                selection: Selection::Sparsity(s),
                sink: spec.sink,
                recent: spec.recent,
            }
            .plans(c.layers, c.kv_heads)?;
            let y = fwd.layers_from(0, fwd.embedded()?, Some(&plans))?;
            let duo = fwd.logits(&y, rows.clone())?;
            let row = compare(&full, &duo, cont, n - rows.start, heads.label(), s, n);
            on_row(&row);
            out.push(row);
        }
    }
    Ok(out)
}

/// The row of one configuration: `full` / `duo` logits of the compared rows, of which the last
/// `cont.len()` predict the continuation (`prompt_rows` rows before them are prompt rows).
fn compare(
    full: &[Vec<f32>],
    duo: &[Vec<f32>],
    cont: &[u32],
    prompt_rows: usize,
    selection: String,
    sparsity: f64,
    prompt_tokens: usize,
) -> FidelityRow {
    let kls: Vec<f64> = full
        .iter()
        .zip(duo)
        .map(|(p, q)| kl_divergence(p, q))
        .collect();
    let agree = full
        .iter()
        .zip(duo)
        .filter(|(p, q)| argmax(p) == argmax(q))
        .count();
    // Row prompt_rows - 1 + i predicts continuation token i.
    let identical = cont
        .iter()
        .enumerate()
        .take_while(|(i, &t)| duo.get(prompt_rows - 1 + i).is_some_and(|l| argmax(l) == t))
        .count();
    FidelityRow {
        selection,
        sparsity,
        prompt_tokens,
        positions: kls.len(),
        kl_mean: kls.iter().sum::<f64>() / kls.len().max(1) as f64,
        kl_max: kls.iter().fold(0.0, |m: f64, &k| m.max(k)),
        top1_agreement: agree as f64 / full.len().max(1) as f64,
        identical_continuation: identical,
        continuation: cont.len(),
    }
}

impl FidelityRow {
    /// The row as one progress line (what `eval fidelity` prints on stderr as it measures).
    pub fn progress_line(&self) -> String {
        format!(
            "fidelity {} sparsity {}: KL {:.4} (max {:.3}), top-1 {:.3}, identical {}/{}",
            self.selection,
            self.sparsity,
            self.kl_mean,
            self.kl_max,
            self.top1_agreement,
            self.identical_continuation,
            self.continuation
        )
    }
}

/// The rows as a text table, a header line and one line per row, each ending in a newline.
pub fn table(rows: &[FidelityRow]) -> String {
    let mut t =
        String::from("selection     sparsity  prompt  KL mean   KL max  top-1  identical\n");
    for r in rows {
        t += &format!(
            "{:<13} {:>8.2}  {:>6}  {:>7.4}  {:>7.3}  {:>5.3}  {}/{}\n",
            r.selection,
            r.sparsity,
            r.prompt_tokens,
            r.kl_mean,
            r.kl_max,
            r.top1_agreement,
            r.identical_continuation,
            r.continuation
        );
    }
    t
}

/// The prompt of a fidelity run: `text` cut (at whitespace) to `context` tokens, by default
/// the model's trained context less the `continuation` the full model generates after it.
/// Fails (field `prompt_file`) when no text fits.
pub fn fit_prompt(
    model: &Model,
    text: &str,
    context: Option<usize>,
    continuation: usize,
) -> Result<String> {
    let c = model.weights.config.context;
    let prompt = truncate_text(
        model,
        text,
        context.unwrap_or(c.saturating_sub(continuation)),
    )?;
    if prompt.trim().is_empty() {
        return Err(ModelError::Invalid {
            field: "prompt_file",
            reason: "no text fits in the context".into(),
        });
    }
    Ok(prompt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_logits_agree_everywhere_and_a_late_difference_cuts_the_continuation() {
        let l = |i: usize| {
            let mut v = vec![0.0f32; 4];
            v[i] = 5.0;
            v
        };
        let full = vec![l(0), l(1), l(2), l(3)];
        // 2 prompt rows: rows 1, 2, 3 predict continuation tokens 0, 1, 2.
        let cont = [1, 2, 3];
        let same = compare(&full, &full, &cont, 2, "x".into(), 0.5, 10);
        assert_eq!((same.identical_continuation, same.top1_agreement), (3, 1.0));
        assert!(same.kl_mean.abs() < 1e-12);
        let mut duo = full.clone();
        duo[2] = l(0);
        let diff = compare(&full, &duo, &cont, 2, "x".into(), 0.5, 10);
        assert_eq!(diff.identical_continuation, 1);
        assert_eq!(diff.top1_agreement, 0.75);
        assert!(diff.kl_max > 1.0);
    }

    #[test]
    fn rows_print_as_a_progress_line_and_a_table_row() {
        let r = FidelityRow {
            selection: "calibrated".into(),
            sparsity: 0.5,
            prompt_tokens: 100,
            positions: 96,
            kl_mean: 0.01234,
            kl_max: 0.5,
            top1_agreement: 0.875,
            identical_continuation: 30,
            continuation: 32,
        };
        assert_eq!(
            r.progress_line(),
            "fidelity calibrated sparsity 0.5: KL 0.0123 (max 0.500), top-1 0.875, identical 30/32"
        );
        let t = table(std::slice::from_ref(&r));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("selection     sparsity"));
        assert_eq!(
            lines[1],
            "calibrated        0.50     100   0.0123    0.500  0.875  30/32"
        );
    }
}
