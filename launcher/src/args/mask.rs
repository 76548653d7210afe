//! Packed documents and sliding windows (`run`, `decode`): flatten [`MaskArgs`] into a command's
//! arguments and call [`MaskArgs::docs`] for the spec's `docs`.

use std::path::PathBuf;

use clap::Args;
use ringattn::DocsSpec;
use ringattn_runtime::{Error, Result};

/// Which (query, key) pairs may attend beyond `--causal`: documents and a window.
#[derive(Clone, Debug, Default, Args)]
pub struct MaskArgs {
    /// Packed documents: their lengths, comma separated, adding up to --seq (a token attends
    /// only within its own document). Default: the input file's `doc_lens` or `cu_seqlens`
    /// tensor if it has one, else one document.
    #[arg(
        long,
        value_name = "LEN,LEN,...",
        conflicts_with = "docs_file",
        help_heading = "Mask"
    )]
    pub docs: Option<String>,
    /// Packed documents from a file of one length per line (blank lines and `#` comments ignored).
    #[arg(long, value_name = "FILE", help_heading = "Mask")]
    pub docs_file: Option<PathBuf>,
    /// Sliding window W: a query attends keys k with q − W < k ≤ q (with --causal), or
    /// |q − k| < W (without).
    #[arg(long, value_name = "W", help_heading = "Mask")]
    pub window: Option<usize>,
}

impl MaskArgs {
    /// The documents of `--docs` / `--docs-file`, or `None`. Fails on a malformed list.
    pub fn docs(&self) -> Result<Option<DocsSpec>> {
        if let Some(path) = &self.docs_file {
            return Ok(Some(DocsSpec::File(path.clone())));
        }
        let Some(list) = &self.docs else {
            return Ok(None);
        };
        list.split(',')
            .map(|w| {
                w.trim().parse::<usize>().map_err(|_| {
                    Error::config(format!("--docs expects lengths like 512,100,7, got `{w}`"))
                })
            })
            .collect::<Result<Vec<usize>>>()
            .map(|l| Some(DocsSpec::Lengths(l)))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        mask: MaskArgs,
    }

    fn parse(args: &[&str]) -> std::result::Result<MaskArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map(|c| c.mask)
    }

    #[test]
    fn lengths_parse_and_bad_ones_are_refused() {
        let a = parse(&["--docs", "3, 4,1", "--window", "7"]).unwrap();
        assert_eq!(a.docs().unwrap(), Some(DocsSpec::Lengths(vec![3, 4, 1])));
        assert_eq!(a.window, Some(7));
        assert!(parse(&["--docs", "3,x"]).unwrap().docs().is_err());
        assert!(parse(&["--docs", "3", "--docs-file", "f"]).is_err());
        assert!(parse(&["--window", "-1"]).is_err());
        assert_eq!(parse(&[]).unwrap().docs().unwrap(), None);
    }
}
