//! Choosing the next token: greedy, or temperature + top-p (nucleus) sampling with a seed.
//!
//! The generator is a small SplitMix64 of our own, so a seed gives the same tokens on every
//! machine and every rank (no dependency, nothing from the OS).

use crate::block::argmax;

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// 0 = greedy (argmax); otherwise logits are divided by it before the softmax.
    pub temperature: f32,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p` (1 = all).
    pub top_p: f32,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

/// A seeded sampler.
pub struct Sampler {
    cfg: Sampling,
    state: u64,
}

impl Sampler {
    /// A sampler of `cfg`, its generator seeded with `cfg.seed`.
    pub fn new(cfg: Sampling) -> Self {
        Sampler {
            cfg,
            state: cfg.seed,
        }
    }

    /// A uniform number in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next token from `logits`.
    pub fn next(&mut self, logits: &[f32]) -> u32 {
        if self.cfg.temperature <= 0.0 || logits.is_empty() {
            return argmax(logits);
        }
        let t = f64::from(self.cfg.temperature);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, (f64::from(l - max) / t).exp()))
            .collect();
        let sum: f64 = probs.iter().map(|p| p.1).sum();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let top_p = f64::from(self.cfg.top_p.clamp(0.0, 1.0)) * sum;
        let mut kept = 0.0;
        let mut n = 0;
        for p in &probs {
            kept += p.1;
            n += 1;
            if kept >= top_p {
                break;
            }
        }
        let mut r = self.uniform() * kept;
        for p in &probs[..n] {
            if r < p.1 {
                return p.0;
            }
            r -= p.1;
        }
        probs[n - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_largest() {
        let mut s = Sampler::new(Sampling::default());
        assert_eq!(s.next(&[0.1, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_top_p_cuts_the_tail() {
        let logits: Vec<f32> = (0..50).map(|i| -(i as f32) * 0.3).collect();
        let cfg = Sampling {
            temperature: 0.8,
            top_p: 0.5,
            seed: 7,
        };
        let (mut a, mut b) = (Sampler::new(cfg), Sampler::new(cfg));
        let ta: Vec<u32> = (0..200).map(|_| a.next(&logits)).collect();
        let tb: Vec<u32> = (0..200).map(|_| b.next(&logits)).collect();
        assert_eq!(ta, tb);
        // top-p 0.5 of this distribution keeps only the first few tokens.
        assert!(ta.iter().all(|&t| t < 6), "{ta:?}");
        assert!(ta.iter().any(|&t| t != ta[0]), "sampling should vary");
    }
}
