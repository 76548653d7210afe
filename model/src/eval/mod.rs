//! Evaluation of DuoAttention on the model: needle-in-a-haystack pass key retrieval over a
//! grid of sparsities, contexts and depths ([`passkey`]), and fidelity to full attention
//! ([`fidelity`]); random head selections of the same sparsity are the chance baseline
//! ([`random`]).

pub mod fidelity;
pub mod haystack;
pub mod jsonl;
pub mod passkey;
pub mod random;
#[cfg(feature = "plot")]
pub mod report;
pub mod summary;

use crate::error::{ModelError, Result};

/// The comma-separated values of `field` in `text`, each parsed by `parse` (`None`: not a
/// valid value). Evaluation grids are given as such lists on the command line; an empty
/// item or a bad value is an [`ModelError::Invalid`] naming `field`.
pub fn parse_list<T>(
    field: &'static str,
    text: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>> {
    let items: Vec<&str> = text.split(',').map(str::trim).collect();
    if items.iter().any(|s| s.is_empty()) {
        return Err(ModelError::Invalid {
            field,
            reason: format!("`{text}`: an empty item"),
        });
    }
    items
        .iter()
        .map(|s| {
            parse(s).ok_or_else(|| ModelError::Invalid {
                field,
                reason: format!("`{s}` is not valid"),
            })
        })
        .collect()
}

/// A fraction in [0, 1] (a sparsity or a needle depth), or `None`.
pub fn parse_fraction(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|x| (0.0..=1.0).contains(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_name_the_field_on_a_bad_item() {
        assert_eq!(
            parse_list("depth", "0, 0.5,1", parse_fraction).unwrap(),
            vec![0.0, 0.5, 1.0]
        );
        let e = parse_list("depth", "0,,1", parse_fraction).unwrap_err();
        assert_eq!(e.to_string(), "depth: `0,,1`: an empty item");
        let e = parse_list("sparsity", "0.5,1.5", parse_fraction).unwrap_err();
        assert_eq!(e.to_string(), "sparsity: `1.5` is not valid");
        assert!(parse_list("seeds", "3,x", |s| s.parse::<u64>().ok()).is_err());
    }
}
