//! The partitioner: picks the layout, explicitly or by a cost model.
//!
//! The cost model is the ring itself: every step ends when its slowest rank ends, so the
//! predicted time is the makespan Σ_t max_r work(r, t), with work counted from the kernel's own
//! tile classification ([`count_tiles`]) of rank r's queries against the block it holds at
//! step t. All layouts send the same bytes per hop, so communication does not change the choice
//! yet (DuoAttention's window locality will).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use ringattn_ring::{Contiguous, Layout};
use ringattn_runtime::{count_tiles, Error, Mask, Result, TileShape};

use crate::doc_balance::DocBalance;
use crate::layouts::{Striped, Zigzag};

/// Relative cost of a Partial tile (computed, then masked element by element) to a Full one.
pub const PARTIAL_TILE_COST: f64 = 1.15;

/// The layouts ringattn knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayoutKind {
    /// Ring Attention's contiguous blocks.
    Contiguous,
    /// Striped Attention's round robin.
    Striped,
    /// Two mirrored chunks per rank.
    Zigzag,
    /// Whole documents per rank balanced by cost, long ones split per-document zigzag
    /// ([`DocBalance`]); built from the run's documents (the mask's).
    Documents,
}

impl LayoutKind {
    /// The layouts that need no documents, in the order the cost model reports them.
    pub const ALL: [LayoutKind; 3] = [
        LayoutKind::Contiguous,
        LayoutKind::Striped,
        LayoutKind::Zigzag,
    ];

    /// Every layout, in the order help texts list them (the names accepted by [`FromStr`]).
    pub const NAMED: [LayoutKind; 4] = [
        LayoutKind::Contiguous,
        LayoutKind::Striped,
        LayoutKind::Zigzag,
        LayoutKind::Documents,
    ];

    /// The layouts the cost model considers for a run with `mask`: [`LayoutKind::ALL`], and
    /// [`LayoutKind::Documents`] after them when the mask has documents.
    pub fn candidates(mask: &Mask) -> Vec<LayoutKind> {
        let mut kinds = LayoutKind::ALL.to_vec();
        if mask.docs().is_some() {
            kinds.push(LayoutKind::Documents);
        }
        kinds
    }

    /// The layout implementation for a run with `mask` (the documents layout takes the
    /// mask's documents; without any, the whole sequence is one document, which it splits
    /// like zigzag — callers refuse that request before, see `needs_documents`).
    pub fn build(self, mask: &Mask) -> Arc<dyn Layout> {
        match self {
            LayoutKind::Contiguous => Arc::new(Contiguous),
            LayoutKind::Striped => Arc::new(Striped),
            LayoutKind::Zigzag => Arc::new(Zigzag),
            LayoutKind::Documents => Arc::new(DocBalance::for_mask(mask)),
        }
    }

    /// True for the layouts that are only meaningful with the run's documents.
    pub fn needs_documents(self) -> bool {
        self == LayoutKind::Documents
    }

    /// Name as written in reports and accepted on the command line: the one mapping
    /// between layouts and their names.
    pub fn name(self) -> &'static str {
        match self {
            LayoutKind::Contiguous => "contiguous",
            LayoutKind::Striped => "striped",
            LayoutKind::Zigzag => "zigzag",
            LayoutKind::Documents => "docs",
        }
    }
}

impl fmt::Display for LayoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LayoutKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        LayoutKind::NAMED
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown layout `{s}` (expected contiguous, striped, zigzag, docs or auto)"
                ))
            })
    }
}

/// What the user asked for: a fixed layout or `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutChoice {
    /// Let the cost model choose.
    Auto,
    /// Use this layout.
    Fixed(LayoutKind),
}

impl FromStr for LayoutChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(LayoutChoice::Auto),
            other => other.parse().map(LayoutChoice::Fixed),
        }
    }
}

/// The cost model's prediction for one layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// The layout.
    pub kind: LayoutKind,
    /// Σ over steps of the slowest rank's work, in Full-tile units (per query head).
    pub makespan: f64,
    /// Total work per rank over all steps, in Full-tile units.
    pub work_per_rank: Vec<f64>,
    /// `work[step][rank]`, in Full-tile units.
    pub work: Vec<Vec<f64>>,
}

impl Estimate {
    /// max over ranks of work / mean work (1.0 = perfectly balanced).
    pub fn imbalance(&self) -> f64 {
        let max = self.work_per_rank.iter().copied().fold(0.0, f64::max);
        let mean = self.work_per_rank.iter().sum::<f64>() / self.work_per_rank.len().max(1) as f64;
        if mean > 0.0 {
            max / mean
        } else {
            1.0
        }
    }
}

/// Predicts the ring's work for `kind` with `world` ranks over `seq` tokens.
pub fn estimate(
    kind: LayoutKind,
    world: usize,
    seq: usize,
    mask: Mask,
    tile: TileShape,
) -> Estimate {
    let layout = kind.build(&mask);
    let positions: Vec<_> = (0..world)
        .map(|r| layout.positions(r, world, seq))
        .collect();
    let mut work = vec![vec![0.0; world]; world];
    for (step, row) in work.iter_mut().enumerate() {
        for (rank, w) in row.iter_mut().enumerate() {
            let source = (rank + world - step) % world;
            let c = count_tiles(&positions[rank], &positions[source], mask.clone(), tile);
            *w = c.full as f64 + PARTIAL_TILE_COST * c.partial as f64;
        }
    }
    let makespan = work
        .iter()
        .map(|row| row.iter().copied().fold(0.0, f64::max))
        .sum();
    let work_per_rank = (0..world)
        .map(|r| work.iter().map(|row| row[r]).sum())
        .collect();
    Estimate {
        kind,
        makespan,
        work_per_rank,
        work,
    }
}

/// DuoAttention's head mix for the cost model: streaming heads run their own (pruned) ring
/// pass with `streaming_mask` after the retrieval heads' pass with the run's mask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadMix {
    /// KV heads attending with the run's mask.
    pub retrieval: usize,
    /// KV heads attending with `streaming_mask`.
    pub streaming: usize,
    /// The streaming heads' mask (`Mask::Streaming`).
    pub streaming_mask: Mask,
}

/// [`estimate`] for a DuoAttention run: the two sub-passes run one after the other, each in
/// lockstep, so work is the per-head average of both masks' work (weighted by head counts)
/// per (step, rank), and the makespan the weighted sum of both passes' makespans.
pub fn estimate_mixed(
    kind: LayoutKind,
    world: usize,
    seq: usize,
    mask: Mask,
    tile: TileShape,
    mix: &HeadMix,
) -> Estimate {
    let total = (mix.retrieval + mix.streaming).max(1) as f64;
    let (wr, ws) = (mix.retrieval as f64 / total, mix.streaming as f64 / total);
    let r = estimate(kind, world, seq, mask, tile);
    let s = estimate(kind, world, seq, mix.streaming_mask.clone(), tile);
    let mix_rows = |a: &[f64], b: &[f64]| -> Vec<f64> {
        a.iter().zip(b).map(|(x, y)| wr * x + ws * y).collect()
    };
    Estimate {
        kind,
        makespan: wr * r.makespan + ws * s.makespan,
        work_per_rank: mix_rows(&r.work_per_rank, &s.work_per_rank),
        work: r
            .work
            .iter()
            .zip(&s.work)
            .map(|(a, b)| mix_rows(a, b))
            .collect(),
    }
}

/// The partitioner's decision.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The chosen layout.
    pub kind: LayoutKind,
    /// Why it was chosen (written to the report's `layout_reason`).
    pub reason: String,
    /// The cost model's predictions, one per layout considered.
    pub estimates: Vec<Estimate>,
}

/// Costs within this fraction of the smallest count as a tie, won by the earliest layout.
pub const TIE_TOLERANCE: f64 = 0.01;

/// The one tie rule of layout choices: the index of the first cost within [`TIE_TOLERANCE`]
/// of the smallest (layouts listed in the order contiguous, striped, zigzag, so a near-tie
/// keeps tokens adjacent); `None` for no costs.
pub fn earliest_within_tie(costs: &[f64]) -> Option<usize> {
    let best = costs.iter().copied().fold(f64::INFINITY, f64::min);
    costs
        .iter()
        .position(|&c| c <= best * (1.0 + TIE_TOLERANCE))
}

/// Most ranks the cost model tables (P × P per layout and mask) are built for.
pub const MAX_MODEL_WORLD: usize = 1024;

/// Most tile classifications the cost model may spend on one plan.
pub const MAX_MODEL_TILE_WORK: u128 = 1 << 32;

/// True when the cost model's P × P tables and its tile counting stay small (at most
/// [`MAX_MODEL_WORLD`] ranks and [`MAX_MODEL_TILE_WORK`] classifications), so planning never
/// allocates or loops in proportion to absurd sizes.
pub fn model_affordable(
    world: usize,
    seq: usize,
    mask: Mask,
    tile: TileShape,
    mix: Option<&HeadMix>,
) -> bool {
    if world == 0 || world > MAX_MODEL_WORLD {
        return false;
    }
    let p = world as u128;
    let rows = (seq as u128).div_ceil(p) + 1;
    let (qt, kt) = (
        rows.div_ceil(tile.q.max(1) as u128),
        rows.div_ceil(tile.k.max(1) as u128),
    );
    let per_call = |m: Mask| match m {
        Mask::Streaming { .. } | Mask::Span(_) => qt * kt,
        _ => qt * (kt.max(2).ilog2() as u128 + 1),
    };
    let streaming = mix
        .filter(|m| m.streaming > 0)
        .map_or(0, |m| per_call(m.streaming_mask.clone()));
    // Three layouts (four with documents), P² (rank, step) pairs each.
    let layouts = 3 + u128::from(mask.docs().is_some());
    layouts * p * p * (per_call(mask) + streaming) <= MAX_MODEL_TILE_WORK
}

/// The plan when the cost model is too expensive to run: `Fixed` as asked; `Auto` takes striped
/// for masks that favour later ranks (causal, streaming: balanced by round robin), contiguous
/// otherwise — what the model picks at sizes it can afford.
fn plan_without_model(choice: LayoutChoice, world: usize, mask: Mask) -> Plan {
    let note = format!("cost model skipped: {world} ranks or the sequence are too large to cost");
    match choice {
        LayoutChoice::Fixed(kind) => Plan {
            kind,
            reason: format!("requested with --layout {kind} ({note})"),
            estimates: Vec::new(),
        },
        LayoutChoice::Auto => {
            let kind = if mask == Mask::None {
                LayoutKind::Contiguous
            } else {
                LayoutKind::Striped
            };
            Plan {
                kind,
                reason: format!("auto: {kind} by rule for this mask ({note})"),
                estimates: Vec::new(),
            }
        }
    }
}

/// Chooses the layout: `Fixed` is honoured (with its predicted makespan in the reason); `Auto`
/// takes the smallest predicted makespan, preferring the earlier of
/// contiguous, striped, zigzag, docs when within 1% (contiguous keeps tokens adjacent); docs is
/// a candidate only when the mask has documents ([`LayoutKind::candidates`]).
pub fn plan(choice: LayoutChoice, world: usize, seq: usize, mask: Mask, tile: TileShape) -> Plan {
    plan_mixed(choice, world, seq, mask, tile, None)
}

/// [`plan`] for a run with DuoAttention's head `mix` (`None`: every head uses `mask`), costed
/// by [`estimate_mixed`]: streaming heads count only their windows' tiles. (Compute only: the
/// streaming bytes contiguous saves are not costed yet.)
pub fn plan_mixed(
    choice: LayoutChoice,
    world: usize,
    seq: usize,
    mask: Mask,
    tile: TileShape,
    mix: Option<&HeadMix>,
) -> Plan {
    if !model_affordable(world, seq, mask.clone(), tile, mix) {
        return plan_without_model(choice, world, mask);
    }
    let estimates: Vec<Estimate> = LayoutKind::candidates(&mask)
        .iter()
        .map(|&k| match mix {
            Some(mix) if mix.streaming > 0 => {
                estimate_mixed(k, world, seq, mask.clone(), tile, mix)
            }
            _ => estimate(k, world, seq, mask.clone(), tile),
        })
        .collect();
    let summary = estimates
        .iter()
        .map(|e| format!("{} {:.0}", e.kind, e.makespan))
        .collect::<Vec<_>>()
        .join(", ");
    match choice {
        LayoutChoice::Fixed(kind) => Plan {
            kind,
            reason: format!(
                "requested with --layout {kind} (predicted makespan in tiles: {summary})"
            ),
            estimates,
        },
        LayoutChoice::Auto => {
            let costs: Vec<f64> = estimates.iter().map(|e| e.makespan).collect();
            let best = &estimates[earliest_within_tie(&costs).expect("at least one layout")];
            let reason = format!(
                "auto: smallest predicted makespan over {world} ranks ({summary} tiles; imbalance {:.2})",
                best.imbalance()
            );
            Plan {
                kind: best.kind,
                reason,
                estimates,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_a_balanced_layout_for_causal_and_contiguous_otherwise() {
        let tile = TileShape::default();
        let causal = plan(LayoutChoice::Auto, 4, 4096, Mask::Causal, tile);
        assert_ne!(causal.kind, LayoutKind::Contiguous, "{}", causal.reason);
        let contiguous = &causal.estimates[0];
        let best = causal
            .estimates
            .iter()
            .find(|e| e.kind == causal.kind)
            .unwrap();
        // Closed forms: contiguous causal ≈ P − 1/2 blocks, balanced ≈ P/2 blocks.
        let ratio = contiguous.makespan / best.makespan;
        assert!(ratio > 1.5 && ratio < 2.0, "ratio {ratio}");
        let full = plan(LayoutChoice::Auto, 4, 4096, Mask::None, tile);
        assert_eq!(full.kind, LayoutKind::Contiguous);
        assert!(full.reason.starts_with("auto:"));
    }

    #[test]
    fn streaming_heads_are_costed_by_their_windows() {
        // Tiles small against the windows (320 keys) and the blocks (1024 rows), so the
        // geometry below holds at tile granularity.
        let tile = TileShape { q: 64, k: 64 };
        let streaming_mask = Mask::Streaming {
            sink: 64,
            recent: 256,
        };
        let all_streaming = HeadMix {
            retrieval: 0,
            streaming: 8,
            streaming_mask: streaming_mask.clone(),
        };
        let p = plan_mixed(
            LayoutChoice::Auto,
            4,
            4096,
            Mask::Causal,
            tile,
            Some(&all_streaming),
        );
        // Striped tiles span P × tile positions, so they cannot skip outside the windows;
        // contiguous and zigzag do (compute only: the bytes saved are not costed yet).
        assert_ne!(p.kind, LayoutKind::Striped, "{}", p.reason);
        let causal = plan(LayoutChoice::Auto, 4, 4096, Mask::Causal, tile);
        let (s, c) = (&p.estimates, &causal.estimates);
        assert!(
            s[0].makespan < 0.2 * c[0].makespan,
            "{} vs {}",
            p.reason,
            causal.reason
        );
        assert!(s[1].makespan > s[0].makespan && s[1].makespan > s[2].makespan);
        // No streaming heads: exactly the plain plan.
        let none = HeadMix {
            retrieval: 8,
            streaming: 0,
            streaming_mask: streaming_mask.clone(),
        };
        let a = plan_mixed(LayoutChoice::Auto, 4, 4096, Mask::Causal, tile, Some(&none));
        let b = plan(LayoutChoice::Auto, 4, 4096, Mask::Causal, tile);
        assert_eq!((a.kind, a.estimates), (b.kind, b.estimates));
        // A mix weighs both passes by head count.
        let half = HeadMix {
            retrieval: 4,
            streaming: 4,
            streaming_mask: streaming_mask.clone(),
        };
        for kind in LayoutKind::ALL {
            let m = estimate_mixed(kind, 4, 4096, Mask::Causal, tile, &half).makespan;
            let r = estimate(kind, 4, 4096, Mask::Causal, tile).makespan;
            let s = estimate(kind, 4, 4096, streaming_mask.clone(), tile).makespan;
            assert!((m - (r + s) / 2.0).abs() < 1e-9, "{kind}");
        }
    }

    #[test]
    fn documents_are_a_candidate_only_with_documents() {
        let tile = TileShape::default();
        let docs = ringattn_runtime::Documents::from_lengths(&[64; 64]).unwrap();
        let p = plan(
            LayoutChoice::Auto,
            4,
            4096,
            Mask::span(true, None, Some(docs)),
            tile,
        );
        let kinds: Vec<_> = p.estimates.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, LayoutKind::NAMED);
        assert!(p.reason.contains("docs "), "{}", p.reason);
        let plain = plan(LayoutChoice::Auto, 4, 4096, Mask::Causal, tile);
        assert_eq!(plain.estimates.len(), LayoutKind::ALL.len());
        for kind in LayoutKind::NAMED {
            assert_eq!(kind.name().parse::<LayoutKind>().unwrap(), kind);
            assert_eq!(
                kind.name().parse::<LayoutChoice>().unwrap(),
                LayoutChoice::Fixed(kind)
            );
        }
    }

    #[test]
    fn unknown_layout_is_a_config_error() {
        let err = "diagonal".parse::<LayoutChoice>().unwrap_err();
        assert!(err.is_user_error() && err.to_string().contains("diagonal"));
    }
}
