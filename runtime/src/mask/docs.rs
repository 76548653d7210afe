//! Packed documents: many documents concatenated into one sequence, a token attending only
//! within its own document.
//!
//! Documents are stored as their start positions (`Arc<[usize]>`, so a [`Mask`](super::Mask)
//! holding them clones cheaply); the document of a position is found by binary search. The last
//! document extends past the packed length: a token appended by decode belongs to it.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a list of document lengths (or cumulative lengths) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DocsError {
    /// No document at all.
    #[error("doc_lens: no document given")]
    NoDocuments,
    /// A document of length zero.
    #[error("doc_lens: document {index} has length 0")]
    ZeroLength {
        /// Index of the empty document.
        index: usize,
    },
    /// The lengths do not fit in usize.
    #[error("doc_lens: the lengths add up past the largest position")]
    Overflow,
    /// Cumulative lengths that do not start at 0 or do not increase strictly.
    #[error("cu_seqlens: must start at 0 and increase strictly (entry {index} is {value})")]
    BadCumulative {
        /// Index of the first bad entry.
        index: usize,
        /// Its value.
        value: usize,
    },
    /// The lengths add up to something else than the sequence length.
    #[error("doc_lens: the lengths add up to {total}, the sequence has {seq} tokens")]
    WrongTotal {
        /// Sum of the lengths.
        total: usize,
        /// Sequence length.
        seq: usize,
    },
}

/// Documents packed into one sequence: document `i` covers `[starts[i], starts[i + 1])`, the
/// last one `[starts[last], ∞)` (its packed length is `total − starts[last]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Documents {
    starts: Arc<[usize]>,
    total: usize,
}

/// Count and min / median / max length of a set of documents (for reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocsSummary {
    /// Number of documents.
    pub count: usize,
    /// Shortest document.
    pub min: usize,
    /// Median length (the lower middle one for an even count).
    pub median: usize,
    /// Longest document.
    pub max: usize,
}

impl Documents {
    /// Documents of these lengths, in order. Refuses an empty list, a zero length, and lengths
    /// whose sum overflows.
    pub fn from_lengths(lengths: &[usize]) -> Result<Self, DocsError> {
        if lengths.is_empty() {
            return Err(DocsError::NoDocuments);
        }
        let mut starts = Vec::with_capacity(lengths.len());
        let mut at = 0usize;
        for (index, &len) in lengths.iter().enumerate() {
            if len == 0 {
                return Err(DocsError::ZeroLength { index });
            }
            starts.push(at);
            at = at.checked_add(len).ok_or(DocsError::Overflow)?;
        }
        Ok(Documents {
            starts: starts.into(),
            total: at,
        })
    }

    /// Documents from cumulative lengths `[0, l0, l0 + l1, …, total]` (flash-attention's
    /// `cu_seqlens`).
    pub fn from_cu_seqlens(cu: &[usize]) -> Result<Self, DocsError> {
        if cu.len() < 2 {
            return Err(DocsError::NoDocuments);
        }
        for (index, w) in cu.windows(2).enumerate() {
            if w[1] <= w[0] {
                return Err(DocsError::BadCumulative {
                    index: index + 1,
                    value: w[1],
                });
            }
        }
        if cu[0] != 0 {
            return Err(DocsError::BadCumulative {
                index: 0,
                value: cu[0],
            });
        }
        Ok(Documents {
            starts: cu[..cu.len() - 1].into(),
            total: cu[cu.len() - 1],
        })
    }

    /// Refuses documents whose lengths do not add up to `seq`.
    pub fn check_total(&self, seq: usize) -> Result<(), DocsError> {
        if self.total != seq {
            return Err(DocsError::WrongTotal {
                total: self.total,
                seq,
            });
        }
        Ok(())
    }

    /// Number of documents.
    pub fn count(&self) -> usize {
        self.starts.len()
    }

    /// Sum of the packed lengths.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The packed lengths, in order.
    pub fn lengths(&self) -> Vec<usize> {
        let ends = self.starts[1..].iter().copied().chain([self.total]);
        self.starts.iter().zip(ends).map(|(s, e)| e - s).collect()
    }

    /// Start positions of the documents (the first is 0).
    pub fn starts(&self) -> &[usize] {
        &self.starts
    }

    /// Index of the document holding position `pos` (positions past the packed length belong to
    /// the last document).
    #[inline]
    pub fn doc_of(&self, pos: usize) -> usize {
        self.starts.partition_point(|&s| s <= pos) - 1
    }

    /// First and last position (inclusive) of the document holding `pos`; the last document's
    /// last position is `usize::MAX`.
    #[inline]
    pub fn bounds(&self, pos: usize) -> (usize, usize) {
        let i = self.doc_of(pos);
        let last = self.starts.get(i + 1).map_or(usize::MAX, |&s| s - 1);
        (self.starts[i], last)
    }

    /// Count and min / median / max length.
    pub fn summary(&self) -> DocsSummary {
        let mut lens = self.lengths();
        lens.sort_unstable();
        DocsSummary {
            count: lens.len(),
            min: lens[0],
            median: lens[(lens.len() - 1) / 2],
            max: lens[lens.len() - 1],
        }
    }
}

impl Serialize for Documents {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.lengths().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Documents {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let lengths = Vec::<usize>::deserialize(d)?;
        Documents::from_lengths(&lengths).map_err(serde::de::Error::custom)
    }
}
