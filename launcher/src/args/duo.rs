//! DuoAttention options shared by the commands that run attention (`run`, `decode`): flatten
//! [`DuoArgs`] into a command's arguments and call [`DuoArgs::plan`] with the model's KV heads.

use std::path::PathBuf;

use clap::Args;
use ringattn::DuoSpec;
use ringattn_ring::DuoPlan;
use ringattn_runtime::{Error, Result};

/// DuoAttention: which KV heads are retrieval heads (full KV) and which streaming heads
/// (`--sink` first + `--recent` last tokens).
#[derive(Clone, Debug, Default, Args)]
pub struct DuoArgs {
    /// DuoAttention gate pattern: a directory with `full_attention_heads.tsv` (rows = layers,
    /// columns = KV heads, must equal --kv-heads) and optional `config.json` (sink/recent), or a
    /// .tsv file alone. Without --sparsity/--threshold: --sparsity 0.5.
    #[arg(long, value_name = "PATTERN", help_heading = "DuoAttention")]
    pub duo: Option<PathBuf>,
    /// Fraction in [0, 1] of KV heads that are streaming, chosen over ALL layers of the pattern
    /// together by lowest gate (ties broken by a fixed pseudo-random order, as the official seeded noise) [default: 0.5].
    #[arg(
        long,
        value_name = "S",
        requires = "duo",
        conflicts_with = "threshold",
        help_heading = "DuoAttention"
    )]
    pub sparsity: Option<f64>,
    /// Gate threshold: KV heads whose gate is >= T are retrieval heads, the others streaming.
    #[arg(
        long,
        value_name = "T",
        requires = "duo",
        help_heading = "DuoAttention"
    )]
    pub threshold: Option<f64>,
    /// Synthetic plan without a pattern: round(R · kv_heads) retrieval heads spread evenly
    /// over the KV heads, the others streaming.
    #[arg(
        long,
        value_name = "R",
        conflicts_with_all = ["duo", "sparsity", "threshold", "layer"],
        help_heading = "DuoAttention"
    )]
    pub retrieval_ratio: Option<f64>,
    /// Layer of the pattern whose heads this run uses [default: 0].
    #[arg(
        long,
        value_name = "L",
        requires = "duo",
        help_heading = "DuoAttention"
    )]
    pub layer: Option<usize>,
    /// Leading "attention sink" tokens every streaming-head query sees [default: the pattern's
    /// config.json, else 64].
    #[arg(long, value_name = "TOKENS", help_heading = "DuoAttention")]
    pub sink: Option<usize>,
    /// Recent window of streaming heads, the query included [default: the pattern's
    /// config.json, else 256].
    #[arg(long, value_name = "TOKENS", help_heading = "DuoAttention")]
    pub recent: Option<usize>,
}

impl DuoArgs {
    /// The options as command-line words (for `bench scaling`, which runs `run` with them).
    pub fn to_words(&self) -> Vec<String> {
        let given = [
            ("--duo", self.duo.as_ref().map(|p| p.display().to_string())),
            ("--sparsity", self.sparsity.map(|v| v.to_string())),
            ("--threshold", self.threshold.map(|v| v.to_string())),
            (
                "--retrieval-ratio",
                self.retrieval_ratio.map(|v| v.to_string()),
            ),
            ("--layer", self.layer.map(|v| v.to_string())),
            ("--sink", self.sink.map(|v| v.to_string())),
            ("--recent", self.recent.map(|v| v.to_string())),
        ];
        let pairs = given
            .into_iter()
            .filter_map(|(flag, v)| Some([flag.to_string(), v?]));
        pairs.flatten().collect()
    }

    /// True when a DuoAttention plan was asked for (`--duo` or `--retrieval-ratio`).
    pub fn enabled(&self) -> bool {
        self.duo.is_some() || self.retrieval_ratio.is_some()
    }

    /// The DuoAttention spec of these options, or `None` when DuoAttention is off. Fails on
    /// `--sink`/`--recent` without a plan.
    pub fn spec(&self) -> Result<Option<DuoSpec>> {
        if let Some(ratio) = self.retrieval_ratio {
            return Ok(Some(DuoSpec::RetrievalRatio {
                ratio,
                sink: self.sink,
                recent: self.recent,
            }));
        }
        let Some(path) = &self.duo else {
            if self.sink.is_some() || self.recent.is_some() {
                return Err(Error::config(
                    "--sink and --recent need --duo PATTERN or --retrieval-ratio R",
                ));
            }
            return Ok(None);
        };
        Ok(Some(DuoSpec::Pattern {
            path: path.clone(),
            layer: self.layer.unwrap_or(0),
            sparsity: self.sparsity,
            threshold: self.threshold,
            sink: self.sink,
            recent: self.recent,
        }))
    }

    /// The plan of these options for a model of `kv_heads` KV heads, or `None` when
    /// DuoAttention is off.
    pub fn plan(&self, kv_heads: usize) -> Result<Option<DuoPlan>> {
        match self.spec()? {
            Some(spec) => spec.plan(kv_heads).map(Some).map_err(Error::from),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        duo: DuoArgs,
    }

    fn parse(args: &[&str]) -> std::result::Result<DuoArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map(|c| c.duo)
    }

    #[test]
    fn flags_conflict_and_require_a_pattern() {
        assert!(parse(&["--sparsity", "0.5"]).is_err());
        assert!(parse(&["--duo", "p", "--sparsity", "0.5", "--threshold", "0.5"]).is_err());
        assert!(parse(&["--duo", "p", "--retrieval-ratio", "0.5"]).is_err());
        assert!(parse(&["--retrieval-ratio", "0.5", "--layer", "1"]).is_err());
        assert!(parse(&["--layer", "1"]).is_err());
        assert!(parse(&[]).unwrap().plan(8).unwrap().is_none());
        assert!(parse(&["--sink", "4"]).unwrap().plan(8).is_err());
    }

    #[test]
    fn synthetic_ratio_and_pattern_plans() {
        let args = parse(&["--retrieval-ratio", "0.25", "--recent", "32"]).unwrap();
        let plan = args.plan(8).unwrap().unwrap();
        assert_eq!(
            (plan.retrieval_count(), plan.sink, plan.recent),
            (2, 64, 32)
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.tsv");
        std::fs::write(&file, "1 0 0.5 0.2\n0 0 0 1\n").unwrap();
        let f = file.to_str().unwrap();
        let plan = parse(&["--duo", f]).unwrap().plan(4).unwrap().unwrap();
        assert_eq!(
            plan.retrieval_count(),
            3,
            "sparsity 0.5: the 4 zeros of 8 gates stream"
        );
        assert_eq!((plan.sink, plan.recent), (64, 256));
        let args = parse(&["--duo", f, "--threshold", "0.9", "--layer", "1"]).unwrap();
        assert_eq!(args.plan(4).unwrap().unwrap().retrieval_count(), 1);
        let e = parse(&["--duo", f]).unwrap().plan(8).unwrap_err();
        assert!(
            e.is_user_error() && e.to_string().contains("--kv-heads 8"),
            "{e}"
        );
        let e = parse(&["--duo", f, "--layer", "2"]).unwrap().plan(4);
        assert!(e.unwrap_err().is_user_error());
    }
}
