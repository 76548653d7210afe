//! A DuoAttention plan: the kind of every KV head, and the sink / recent sizes of streaming heads.
//!
//! GQA query heads share their KV head's kind (query head `h` reads KV head
//! `h / (heads / kv_heads)`), so the plan is per KV head.

use ringattn_runtime::Mask;
use serde::{Deserialize, Serialize};

/// What a KV head keeps and attends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HeadKind {
    /// Keeps the full KV and attends it with the run's mask.
    Retrieval,
    /// Keeps the first `sink` and the last `recent` tokens; attends with `Mask::Streaming`.
    Streaming,
}

/// The kind of each KV head of one layer, with the streaming heads' window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuoPlan {
    /// Kind of each KV head, in head order.
    pub kinds: Vec<HeadKind>,
    /// Leading "attention sink" tokens every streaming-head query sees.
    pub sink: usize,
    /// Recent window of streaming heads (a query sees itself and `recent - 1` earlier tokens).
    pub recent: usize,
}

impl DuoPlan {
    /// A plan with every KV head a retrieval head: plain attention.
    pub fn all_retrieval(kv_heads: usize, sink: usize, recent: usize) -> Self {
        DuoPlan {
            kinds: vec![HeadKind::Retrieval; kv_heads],
            sink,
            recent,
        }
    }

    /// Number of KV heads.
    pub fn kv_heads(&self) -> usize {
        self.kinds.len()
    }

    /// Indices of the KV heads of `kind`, ascending.
    pub fn kv_heads_of(&self, kind: HeadKind) -> Vec<usize> {
        (0..self.kinds.len())
            .filter(|&h| self.kinds[h] == kind)
            .collect()
    }

    /// Number of retrieval KV heads.
    pub fn retrieval_count(&self) -> usize {
        self.kv_heads_of(HeadKind::Retrieval).len()
    }

    /// Number of streaming KV heads.
    pub fn streaming_count(&self) -> usize {
        self.kv_heads_of(HeadKind::Streaming).len()
    }

    /// The mask of KV head `kv_head` (and its query heads) in a run whose mask is `base`:
    /// retrieval heads use `base`, streaming heads the streaming mask (which is causal).
    pub fn mask_of(&self, kv_head: usize, base: Mask) -> Mask {
        match self.kinds[kv_head] {
            HeadKind::Retrieval => base,
            HeadKind::Streaming => Mask::Streaming {
                sink: self.sink,
                recent: self.recent,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_masks_follow_the_kinds() {
        let plan = DuoPlan {
            kinds: vec![
                HeadKind::Streaming,
                HeadKind::Retrieval,
                HeadKind::Streaming,
            ],
            sink: 4,
            recent: 16,
        };
        assert_eq!(plan.kv_heads_of(HeadKind::Retrieval), vec![1]);
        assert_eq!((plan.retrieval_count(), plan.streaming_count()), (1, 2));
        assert_eq!(plan.mask_of(1, Mask::Causal), Mask::Causal);
        assert_eq!(
            plan.mask_of(0, Mask::Causal),
            Mask::Streaming {
                sink: 4,
                recent: 16
            }
        );
        assert_eq!(DuoPlan::all_retrieval(2, 4, 16).streaming_count(), 0);
    }
}
