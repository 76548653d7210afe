//! The layout a run or a layer uses, by name: the one mapping between names and layouts.

use std::fmt;
use std::str::FromStr;

use ringattn_striped::{LayoutChoice as PlanChoice, LayoutKind};

use crate::error::ApiError;

/// Which token layout to use: a fixed one, or `Auto` (the partitioner's cost model picks).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LayoutChoice {
    /// The cost model's choice for the shape and mask.
    #[default]
    #[cfg_attr(
        feature = "clap",
        value(help = "Let the partitioner's cost model choose (smallest predicted makespan)")
    )]
    Auto,
    /// Ring Attention's contiguous blocks.
    #[cfg_attr(
        feature = "clap",
        value(help = "Ring Attention: each worker owns one contiguous block")
    )]
    Contiguous,
    /// Striped Attention's round robin (token i on rank i mod P).
    #[cfg_attr(
        feature = "clap",
        value(
            help = "Striped Attention: token i goes to worker i mod P (balanced under a causal mask)"
        )
    )]
    Striped,
    /// Two mirrored chunks per rank (Megatron / Llama 3).
    #[cfg_attr(
        feature = "clap",
        value(
            help = "Worker r owns chunks r and 2P-1-r of 2P chunks (balanced, contiguous chunks)"
        )
    )]
    Zigzag,
    /// Whole packed documents per rank balanced by cost, long ones split per-document zigzag
    /// (needs the run's documents).
    #[cfg_attr(
        feature = "clap",
        value(
            help = "Packed documents (needs --docs, --docs-file or doc_lens in --input): whole \
            documents per worker balanced by causal cost, documents too long to balance split \
            zigzag-wise"
        )
    )]
    Docs,
}

impl LayoutChoice {
    /// Every choice, in the order help texts list them.
    pub const ALL: [LayoutChoice; 5] = [
        LayoutChoice::Contiguous,
        LayoutChoice::Striped,
        LayoutChoice::Zigzag,
        LayoutChoice::Docs,
        LayoutChoice::Auto,
    ];

    /// The name written in specs, reports and on the command line.
    pub fn name(self) -> &'static str {
        match self.fixed() {
            Some(kind) => kind.name(),
            None => "auto",
        }
    }

    /// The fixed layout, or `None` for `Auto`.
    pub fn fixed(self) -> Option<LayoutKind> {
        match self {
            LayoutChoice::Contiguous => Some(LayoutKind::Contiguous),
            LayoutChoice::Striped => Some(LayoutKind::Striped),
            LayoutChoice::Zigzag => Some(LayoutKind::Zigzag),
            LayoutChoice::Docs => Some(LayoutKind::Documents),
            LayoutChoice::Auto => None,
        }
    }

    /// Refuses a layout that needs the run's documents when the run has none (`has_docs`):
    /// the documents layout has nothing to balance without them.
    pub fn check_docs(self, has_docs: bool) -> Result<(), ApiError> {
        match self.fixed() {
            Some(kind) if kind.needs_documents() && !has_docs => {
                Err(ApiError::LayoutNeedsDocs(kind.name()))
            }
            _ => Ok(()),
        }
    }

    /// The partitioner's form of the choice.
    pub fn plan_choice(self) -> PlanChoice {
        self.fixed().map_or(PlanChoice::Auto, PlanChoice::Fixed)
    }
}

impl From<LayoutKind> for LayoutChoice {
    fn from(kind: LayoutKind) -> Self {
        match kind {
            LayoutKind::Contiguous => LayoutChoice::Contiguous,
            LayoutKind::Striped => LayoutChoice::Striped,
            LayoutKind::Zigzag => LayoutChoice::Zigzag,
            LayoutKind::Documents => LayoutChoice::Docs,
        }
    }
}

impl fmt::Display for LayoutChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LayoutChoice {
    type Err = ApiError;

    fn from_str(s: &str) -> Result<Self, ApiError> {
        LayoutChoice::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| ApiError::UnknownLayout(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in LayoutChoice::ALL {
            assert_eq!(c.to_string().parse::<LayoutChoice>().unwrap(), c);
        }
        assert!("diagonal".parse::<LayoutChoice>().is_err());
        assert_eq!(LayoutChoice::from(LayoutKind::Zigzag), LayoutChoice::Zigzag);
        assert_eq!(
            LayoutChoice::from(LayoutKind::Documents),
            LayoutChoice::Docs
        );
        assert_eq!("docs".parse::<LayoutChoice>().unwrap(), LayoutChoice::Docs);
        let e = LayoutChoice::Docs.check_docs(false).unwrap_err();
        assert_eq!(e.field(), Some("layout"));
        assert!(e.to_string().contains("docs"), "{e}");
        assert!(LayoutChoice::Docs.check_docs(true).is_ok());
        assert!(LayoutChoice::Striped.check_docs(false).is_ok());
    }
}
