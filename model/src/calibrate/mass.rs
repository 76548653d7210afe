//! Method `mass`: the softmax attention mass each KV head's query heads put OUTSIDE the
//! streaming window (keys in `[sink, i - recent]` for query row `i`), averaged over sampled
//! rows and documents. A head that never looks past its sink and recent window loses nothing
//! when it is made streaming; a head that does is a retrieval head.

/// Running sums of the outside mass per (layer, KV head).
#[derive(Clone, Debug)]
pub struct MassAccumulator {
    sums: Vec<f64>,
    counts: Vec<u64>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    sink: usize,
    recent: usize,
}

impl MassAccumulator {
    /// Sums for `layers` × `kv_heads` heads, `heads` query heads of `head_dim`, and the
    /// streaming window the scores are for.
    pub fn new(
        layers: usize,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        sink: usize,
        recent: usize,
    ) -> Self {
        MassAccumulator {
            sums: vec![0.0; layers * kv_heads],
            counts: vec![0; layers * kv_heads],
            heads,
            kv_heads,
            head_dim,
            sink,
            recent,
        }
    }

    /// Adds layer `layer`'s query `rows` (Q `[heads, t, d]`, K `[kv_heads, t, d]`, roped).
    /// Rows whose window covers every earlier key add 0 mass (and still count).
    pub fn add(&mut self, layer: usize, q: &[f32], k: &[f32], t: usize, rows: &[usize]) {
        let d = self.head_dim;
        let group = self.heads / self.kv_heads;
        let scale = 1.0 / (d as f64).sqrt();
        let mut scores = Vec::with_capacity(t);
        for h in 0..self.heads {
            let kvh = h / group;
            let slot = layer * self.kv_heads + kvh;
            for &i in rows.iter().filter(|&&i| i < t) {
                let qi = &q[(h * t + i) * d..(h * t + i + 1) * d];
                scores.clear();
                for j in 0..=i {
                    let kj = &k[(kvh * t + j) * d..(kvh * t + j + 1) * d];
                    let dot: f64 = qi.iter().zip(kj).map(|(&a, &b)| a as f64 * b as f64).sum();
                    scores.push(dot * scale);
                }
                self.sums[slot] += self.outside(&scores, i);
                self.counts[slot] += 1;
            }
        }
    }

    /// The softmax mass of `scores` (keys `0..=i`) outside the sink and the recent window.
    fn outside(&self, scores: &[f64], i: usize) -> f64 {
        let max = scores.iter().fold(f64::NEG_INFINITY, |m, &s| m.max(s));
        let total: f64 = scores.iter().map(|&s| (s - max).exp()).sum();
        // Visible to a streaming head: j < sink, or j > i - recent.
        let lo = self.sink;
        let hi_excl = (i + 1).saturating_sub(self.recent);
        if hi_excl <= lo {
            return 0.0;
        }
        let out: f64 = scores[lo..hi_excl].iter().map(|&s| (s - max).exp()).sum();
        out / total
    }

    /// Mean outside mass per (layer, KV head), row-major, each in [0, 1].
    pub fn scores(&self) -> Vec<f64> {
        self.sums
            .iter()
            .zip(&self.counts)
            .map(|(&s, &c)| {
                if c == 0 {
                    0.0
                } else {
                    (s / c as f64).clamp(0.0, 1.0)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mass_outside_the_window_is_the_softmax_share_of_the_middle_keys() {
        // One head, d = 1, q = 0: uniform attention over i + 1 keys.
        let acc = MassAccumulator::new(1, 1, 1, 1, 2, 3);
        let scores = vec![0.0; 10];
        // i = 9: visible 0, 1 (sink) and 7, 8, 9 (recent); outside 2..=6 = 5 of 10.
        assert!((acc.outside(&scores, 9) - 0.5).abs() < 1e-12);
        // i = 4: sink 0,1 and recent 2,3,4 cover everything.
        assert_eq!(acc.outside(&scores[..5], 4), 0.0);
    }

    #[test]
    fn a_head_looking_far_back_scores_higher_than_a_local_one() {
        // Two KV heads, one query head each, d = 1, t = 8, sink 1, recent 2.
        let t = 8;
        let q = vec![1.0f32; 2 * t];
        let mut k = vec![0.0f32; 2 * t];
        k[3] = 20.0; // head 0: key 3 dominates (outside the window of row 7)
        k[t + 7] = 20.0; // head 1: key 7 dominates (the row itself)
        let mut acc = MassAccumulator::new(1, 2, 2, 1, 1, 2);
        acc.add(0, &q, &k, t, &[7]);
        let s = acc.scores();
        assert!(s[0] > 0.9 && s[1] < 0.01, "{s:?}");
    }
}
