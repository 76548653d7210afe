//! Where Q/K/V rows come from: a deterministic synthetic generator, or a file.
//!
//! Inputs are generated where they live: a synthetic value is a pure function of
//! (seed, tensor, head, global position, element), so every rank makes its own shard with no
//! communication and the reference can recompute any row.

use crate::error::Result;

/// Which of the three attention inputs a row belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorKind {
    /// Queries.
    Q,
    /// Keys.
    K,
    /// Values.
    V,
}

impl TensorKind {
    /// Lower-case tensor name as used in files (`q`, `k`, `v`).
    pub fn name(self) -> &'static str {
        match self {
            TensorKind::Q => "q",
            TensorKind::K => "k",
            TensorKind::V => "v",
        }
    }
}

/// Anything that can produce a row of Q, K or V by (tensor, head, global position).
pub trait RowSource: Sync {
    /// Writes row `pos` of head `head` of `tensor` into `out` (length = head dim).
    fn fill_row(&self, tensor: TensorKind, head: usize, pos: usize, out: &mut [f32]) -> Result<()>;
}

/// Deterministic synthetic inputs.
///
/// Q and K are uniform in [-√3, √3) (unit variance, so scaled scores have unit variance and the
/// softmax is neither flat nor one-hot); V is uniform in [-1, 1).
#[derive(Clone, Copy, Debug)]
pub struct Synthetic {
    /// Seed; the same seed gives the same tensors on every machine.
    pub seed: u64,
}

impl Synthetic {
    /// The value at element `i` of row `pos` of head `head` of `tensor`.
    #[inline]
    pub fn value(&self, tensor: TensorKind, head: usize, pos: usize, i: usize) -> f32 {
        self.element(tensor, self.row_key(tensor, head, pos), i)
    }

    #[inline]
    fn row_key(&self, tensor: TensorKind, head: usize, pos: usize) -> u64 {
        splitmix64(self.seed ^ splitmix64((tensor as u64) << 56 ^ (head as u64) << 40 ^ pos as u64))
    }

    #[inline]
    fn element(&self, tensor: TensorKind, row_key: u64, i: usize) -> f32 {
        let bits = splitmix64(row_key.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        // 24 random bits -> [0, 1), exactly representable in f32.
        let unit = (bits >> 40) as f32 * (1.0 / (1u64 << 24) as f32);
        match tensor {
            TensorKind::Q | TensorKind::K => (2.0 * unit - 1.0) * 3.0f32.sqrt(),
            TensorKind::V => 2.0 * unit - 1.0,
        }
    }
}

impl RowSource for Synthetic {
    fn fill_row(&self, tensor: TensorKind, head: usize, pos: usize, out: &mut [f32]) -> Result<()> {
        let row = self.row_key(tensor, head, pos);
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self.element(tensor, row, i);
        }
        Ok(())
    }
}

/// SplitMix64 finaliser: a fast, well-mixed 64-bit hash.
#[inline]
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_pure_functions_of_their_coordinates() {
        let s = Synthetic { seed: 7 };
        let mut a = [0.0; 16];
        let mut b = [0.0; 16];
        s.fill_row(TensorKind::K, 3, 1000, &mut a).unwrap();
        s.fill_row(TensorKind::K, 3, 1000, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[5], s.value(TensorKind::K, 3, 1000, 5));
        s.fill_row(TensorKind::K, 3, 1001, &mut b).unwrap();
        assert_ne!(a, b);
        s.fill_row(TensorKind::V, 3, 1000, &mut b).unwrap();
        assert_ne!(a, b);
        assert!(b.iter().all(|x| (-1.0..1.0).contains(x)));
        let other = Synthetic { seed: 8 };
        other.fill_row(TensorKind::K, 3, 1000, &mut b).unwrap();
        assert_ne!(a, b);
    }
}

/// A view of `inner` whose KV head `i` is KV head `heads[i]` of `inner` (queries unchanged): a
/// rank makes the K/V of a subset of heads (DuoAttention's retrieval or streaming heads) where
/// they live, without first making the whole block.
pub struct KvHeadSubset<'a> {
    /// The full source.
    pub inner: &'a dyn RowSource,
    /// The KV heads of `inner`, in the order of the view.
    pub heads: &'a [usize],
}

impl RowSource for KvHeadSubset<'_> {
    fn fill_row(&self, tensor: TensorKind, head: usize, pos: usize, out: &mut [f32]) -> Result<()> {
        let head = match tensor {
            TensorKind::Q => head,
            TensorKind::K | TensorKind::V => self.heads[head],
        };
        self.inner.fill_row(tensor, head, pos, out)
    }
}

#[cfg(test)]
mod subset_tests {
    use super::*;

    #[test]
    fn kv_heads_are_renumbered_and_queries_are_not() {
        let src = Synthetic { seed: 3 };
        let view = KvHeadSubset {
            inner: &src,
            heads: &[2, 0],
        };
        let (mut a, mut b) = (vec![0.0; 8], vec![0.0; 8]);
        for (t, view_head, src_head) in [
            (TensorKind::K, 0, 2),
            (TensorKind::V, 1, 0),
            (TensorKind::Q, 1, 1),
        ] {
            view.fill_row(t, view_head, 5, &mut a).unwrap();
            src.fill_row(t, src_head, 5, &mut b).unwrap();
            assert_eq!(a, b, "{t:?}");
        }
    }
}
