//! Needle-in-a-haystack prompts: filler text of a token budget with "The pass key is NNNNN.
//! Remember it." at a relative depth, the question in the chat template and the start of the
//! answer, plus the scorer of an answer. Deterministic for a seed (own SplitMix64, no global
//! state), so a trial can be rebuilt and resumed.

use crate::error::{ModelError, Result};
use crate::tokenizer::{chat_prompt, Tokenizer};

/// The classic passkey-retrieval filler (Mohtashami & Jaggi, 2023), one unit per sentence.
pub const PASSKEY_FILLER: [&str; 5] = [
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
];

/// The question asked after the haystack.
pub const QUESTION: &str = "What is the pass key? Answer with the number only.";

/// The start of the assistant's answer, appended after the chat template.
pub const ANSWER_PREFIX: &str = "The pass key is";

/// Tokens kept free below the budget for BPE merges across unit boundaries.
const MARGIN: usize = 4;

/// SplitMix64: a small, seedable, portable generator.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A uniform float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The 5-digit pass key of `trial` under `seed` (10000..=99999), the same for every
/// sparsity, context and depth of that trial so the conditions are compared on equal keys.
pub fn passkey_of(seed: u64, trial: usize) -> String {
    let mut rng = SplitMix64::new(seed ^ (trial as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    (10_000 + rng.below(90_000)).to_string()
}

/// The needle sentence of `passkey`.
pub fn needle(passkey: &str) -> String {
    format!("The pass key is {passkey}. Remember it. {passkey} is the pass key.")
}

/// A built prompt: its ids and where the needle went.
#[derive(Clone, Debug, PartialEq)]
pub struct Haystack {
    /// Prompt ids (chat template, haystack with the needle, question, answer prefix).
    pub ids: Vec<u32>,
    /// The prompt text the ids encode.
    pub text: String,
    /// Filler units before the needle.
    pub needle_unit: usize,
    /// Filler units in all.
    pub units: usize,
}

/// The user message: `units` filler sentences with `inserted` placed before unit `at`.
fn haystack_text(filler: &[String], units: usize, at: usize, inserted: &str) -> String {
    let mut parts: Vec<&str> = Vec::with_capacity(units + 1);
    for i in 0..units {
        if i == at {
            parts.push(inserted);
        }
        parts.push(&filler[i % filler.len()]);
    }
    if at >= units {
        parts.push(inserted);
    }
    parts.join(" ")
}

/// A prompt of at most `context` tokens: filler (cycling through `filler`) with `inserted` at
/// relative `depth` (0 = first sentence, 1 = last), then `question` in the chat template and
/// `answer_prefix` after it.
pub fn build(
    tok: &Tokenizer,
    context: usize,
    depth: f64,
    filler: &[String],
    inserted: &str,
    question: &str,
    answer_prefix: &str,
) -> Result<Haystack> {
    if !(0.0..=1.0).contains(&depth) {
        return Err(ModelError::Invalid {
            field: "depth",
            reason: format!("{depth} is not in [0, 1]"),
        });
    }
    if filler.is_empty() {
        return Err(ModelError::Invalid {
            field: "filler",
            reason: "no filler sentences".into(),
        });
    }
    let wrap = |body: &str| {
        format!(
            "{}{answer_prefix}",
            chat_prompt(&format!("{body}\n\n{question}"))
        )
    };
    let fixed = tok.encode(&wrap(inserted))?.len();
    let unit_tokens: Vec<usize> = filler
        .iter()
        .map(|s| tok.encode(&format!(" {s}")).map(|v| v.len()))
        .collect::<Result<_>>()?;
    if fixed + MARGIN > context {
        return Err(ModelError::Invalid {
            field: "context",
            reason: format!("{context} tokens cannot hold the question and needle ({fixed})"),
        });
    }
    let (mut units, mut total) = (0, fixed + MARGIN);
    while total + unit_tokens[units % filler.len()] <= context {
        total += unit_tokens[units % filler.len()];
        units += 1;
    }
    loop {
        let at = (depth * units as f64).round() as usize;
        let text = wrap(&haystack_text(filler, units, at, inserted));
        let ids = tok.encode(&text)?;
        if ids.len() <= context || units == 0 {
            return Ok(Haystack {
                ids,
                text,
                needle_unit: at,
                units,
            });
        }
        units -= 1;
    }
}

/// The passkey prompt of `context` tokens with the needle of `passkey` at `depth`.
pub fn passkey_prompt(
    tok: &Tokenizer,
    context: usize,
    depth: f64,
    passkey: &str,
) -> Result<Haystack> {
    let filler: Vec<String> = PASSKEY_FILLER.iter().map(|s| s.to_string()).collect();
    build(
        tok,
        context,
        depth,
        &filler,
        &needle(passkey),
        QUESTION,
        ANSWER_PREFIX,
    )
}

/// Exact match: the first run of digits in `answer` is `passkey` (so "71432." and " 71432"
/// count, "7143" or "714321" do not).
pub fn score(answer: &str, passkey: &str) -> bool {
    let digits: String = answer
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits == passkey
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scorer_takes_the_first_number_exactly() {
        assert!(score(" 71432.", "71432"));
        assert!(score("The key: 71432, yes", "71432"));
        assert!(!score(" 7143", "71432"));
        assert!(!score(" 714321", "71432"));
        assert!(!score("no number", "71432"));
        assert!(!score(" 12345 71432", "71432"));
    }

    #[test]
    fn passkeys_are_five_digits_and_seeded() {
        for t in 0..50 {
            let k = passkey_of(7, t);
            assert_eq!(k.len(), 5);
            assert_eq!(k, passkey_of(7, t));
        }
        assert_ne!(passkey_of(7, 0), passkey_of(8, 0));
    }

    #[test]
    fn the_needle_goes_before_the_unit_of_its_depth() {
        let f: Vec<String> = ["a.", "b."].iter().map(|s| s.to_string()).collect();
        assert_eq!(haystack_text(&f, 4, 0, "N"), "N a. b. a. b.");
        assert_eq!(haystack_text(&f, 4, 2, "N"), "a. b. N a. b.");
        assert_eq!(haystack_text(&f, 4, 4, "N"), "a. b. a. b. N");
    }
}
