//! Calibration documents: seeded filler prose (not the evaluation's filler) with one pass key
//! at a seeded depth, the question, and the answer appended, so the last rows are the ones
//! that must retrieve from far back.

use crate::error::Result;
use crate::eval::haystack::{build, needle, SplitMix64, ANSWER_PREFIX, QUESTION};
use crate::tokenizer::Tokenizer;

const SUBJECTS: [&str; 12] = [
    "The old farmer",
    "A young painter",
    "The river",
    "Our neighbour",
    "The small boat",
    "A tired traveller",
    "The library",
    "My grandmother",
    "The north wind",
    "A quiet student",
    "The baker",
    "The city council",
];
const VERBS: [&str; 10] = [
    "walked past",
    "looked at",
    "talked about",
    "remembered",
    "carried",
    "painted",
    "followed",
    "forgot",
    "waited near",
    "wrote about",
];
const OBJECTS: [&str; 12] = [
    "the stone bridge",
    "a field of wheat",
    "the harbour lights",
    "an empty market",
    "the broken clock",
    "a letter from home",
    "the mountain road",
    "a basket of apples",
    "the school garden",
    "the evening train",
    "a pile of books",
    "the green door",
];
const WHEN: [&str; 8] = [
    "in the morning.",
    "after the rain.",
    "before dinner.",
    "on a cold day.",
    "late at night.",
    "during the festival.",
    "every summer.",
    "once again.",
];

/// One calibration document: ids and the number of answer tokens at its end.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationDoc {
    /// Prompt plus answer ids (at most the requested context).
    pub ids: Vec<u32>,
    /// Tokens of the answer (the pass key and its full stop) at the end of `ids`.
    pub answer_tokens: usize,
    /// The pass key.
    pub passkey: String,
}

/// Document `index` of `seed`, about `context` tokens long.
pub fn calibration_doc(
    tok: &Tokenizer,
    context: usize,
    seed: u64,
    index: usize,
) -> Result<CalibrationDoc> {
    let mut rng = SplitMix64::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ index as u64);
    let pick = |rng: &mut SplitMix64, n: usize| rng.below(n as u64) as usize;
    let filler: Vec<String> = (0..64)
        .map(|_| {
            format!(
                "{} {} {} {}",
                SUBJECTS[pick(&mut rng, SUBJECTS.len())],
                VERBS[pick(&mut rng, VERBS.len())],
                OBJECTS[pick(&mut rng, OBJECTS.len())],
                WHEN[pick(&mut rng, WHEN.len())]
            )
        })
        .collect();
    let passkey = (10_000 + rng.below(90_000)).to_string();
    let depth = 0.1 + 0.8 * rng.unit();
    let answer = tok.encode(&format!(" {passkey}."))?;
    let budget = context.saturating_sub(answer.len());
    let hay = build(
        tok,
        budget,
        depth,
        &filler,
        &needle(&passkey),
        QUESTION,
        ANSWER_PREFIX,
    )?;
    let mut ids = hay.ids;
    ids.extend_from_slice(&answer);
    Ok(CalibrationDoc {
        ids,
        answer_tokens: answer.len(),
        passkey,
    })
}
