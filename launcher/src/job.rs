//! A validated job: what every rank runs, whatever the backend.

use ringattn_ring::{DuoPlan, FaultInjection, RingConfig};
use ringattn_runtime::io::FileSource;
use ringattn_runtime::{Dtype, Error, Mask, Result, RowSource, Synthetic, TensorKind, TileShape};
use ringattn_striped::{plan, plan_mixed, HeadMix, LayoutChoice, LayoutKind, Plan};

use crate::cli::{LayoutArg, RunArgs};
use crate::sched_args::SchedSpec;

/// Rows checked per worker by a bare `--check` on long sequences.
pub const DEFAULT_CHECK_ROWS: usize = 32;
/// Up to this length a bare `--check` verifies every row.
pub const CHECK_ALL_UP_TO: usize = 2048;

/// Where Q/K/V come from.
#[derive(Debug)]
pub enum Input {
    /// Deterministic synthetic tensors.
    Synthetic(Synthetic),
    /// A safetensors file.
    File(FileSource),
}

impl RowSource for Input {
    fn fill_row(&self, tensor: TensorKind, head: usize, pos: usize, out: &mut [f32]) -> Result<()> {
        match self {
            Input::Synthetic(s) => s.fill_row(tensor, head, pos, out),
            Input::File(f) => f.fill_row(tensor, head, pos, out),
        }
    }
}

/// Everything a rank needs to run its part, identical on every rank.
#[derive(Debug)]
pub struct Job {
    /// Ring size P.
    pub world: usize,
    /// Sequence length N.
    pub seq: usize,
    /// Query heads.
    pub heads: usize,
    /// KV heads.
    pub kv_heads: usize,
    /// Head dimension.
    pub dim: usize,
    /// Causal or not.
    pub causal: bool,
    /// Kernel threads per rank.
    pub threads: usize,
    /// CPU ids each rank pins its kernel threads to, by rank (see `cores.rs`); an empty list
    /// (or none at all) leaves the rank unpinned.
    pub cores: Vec<Vec<usize>>,
    /// The partitioner's decision.
    pub plan: Plan,
    /// Ring configuration (mask, tiles, fault hook).
    pub ring: RingConfig,
    /// Rows per rank to verify (`usize::MAX` = all), or `None`.
    pub check_rows: Option<usize>,
    /// Storage type of K and V.
    pub dtype: Dtype,
    /// Whether ranks must send their outputs to the root (for `--output`).
    pub want_output: bool,
    /// Inputs.
    pub input: Input,
    /// How each rank's kernel threads share the work.
    pub sched: SchedSpec,
    /// DuoAttention plan (kind of every KV head, sink / recent), or `None` for plain attention.
    pub duo: Option<DuoPlan>,
}

impl Job {
    /// The CPU ids rank `rank` pins its kernel threads to (empty: unpinned).
    pub fn cores_of(&self, rank: usize) -> &[usize] {
        match self.cores.get(rank) {
            Some(cores) => cores,
            None => &[],
        }
    }

    /// The mask of the run (of retrieval heads, when DuoAttention is on).
    pub fn mask(&self) -> Mask {
        self.ring.mask
    }

    /// The mask of every KV head (and its query heads), in head order: the run's mask, or with
    /// a DuoAttention plan the streaming mask for streaming heads.
    pub fn kv_head_masks(&self) -> Vec<Mask> {
        (0..self.kv_heads)
            .map(|h| match &self.duo {
                Some(plan) if h < plan.kv_heads() => plan.mask_of(h, self.mask()),
                _ => self.mask(),
            })
            .collect()
    }

    /// Validates the arguments and builds the job (including the layout plan).
    pub fn from_args(args: &RunArgs, allowed_cores: usize) -> Result<Job> {
        let input = match &args.input {
            Some(path) => Input::File(FileSource::open(path)?),
            None => Input::Synthetic(Synthetic { seed: args.seed }),
        };
        let from_file = |name: &str, given: Option<usize>, file: usize| -> Result<usize> {
            match given {
                Some(g) if g != file => Err(Error::config(format!(
                    "--{name} {g} does not match the input file's {file}"
                ))),
                _ => Ok(file),
            }
        };
        let (seq, heads, kv_heads, dim) = match &input {
            Input::File(f) => (
                from_file("seq", args.seq, f.seq())?,
                from_file("heads", args.heads, f.heads())?,
                from_file("kv-heads", args.kv_heads, f.kv_heads())?,
                from_file("head-dim", args.head_dim, f.dim())?,
            ),
            Input::Synthetic(_) => {
                let heads = args.heads.unwrap_or(8);
                (
                    args.seq.unwrap_or(4096),
                    heads,
                    args.kv_heads.unwrap_or(heads),
                    args.head_dim.unwrap_or(128),
                )
            }
        };
        let world = args.workers.unwrap_or(allowed_cores.max(1));
        for (name, value) in [
            ("--seq", seq),
            ("--heads", heads),
            ("--kv-heads", kv_heads),
            ("--head-dim", dim),
            ("--workers", world),
            ("--tile-q", args.tile_q),
            ("--tile-k", args.tile_k),
        ] {
            if value == 0 {
                return Err(Error::config(format!("{name} must be at least 1")));
            }
        }
        if heads % kv_heads != 0 {
            return Err(Error::config(format!(
                "--heads {heads} is not a multiple of --kv-heads {kv_heads}"
            )));
        }
        if world > seq {
            return Err(Error::config(format!(
                "more workers ({world}) than tokens ({seq}): every worker needs at least one token"
            )));
        }
        let threads = match args.threads {
            Some(0) => return Err(Error::config("--threads must be at least 1")),
            Some(t) => t,
            None => (allowed_cores / world).max(1),
        };
        let fault = args.inject_fault.as_deref().map(parse_fault).transpose()?;
        if let Some(f) = fault {
            if f.rank >= world || f.step >= world {
                return Err(Error::config(format!(
                    "--inject-fault {}:{} is outside the ring ({world} ranks, steps 0..{world})",
                    f.rank, f.step
                )));
            }
        }
        let mask = if args.causal {
            Mask::Causal
        } else {
            Mask::None
        };
        let tile = TileShape {
            q: args.tile_q,
            k: args.tile_k,
        };
        let choice = layout_choice(args.layout);
        let check_rows = match args.check {
            None => None,
            Some(Some(0)) => return Err(Error::config("--check ROWS must be at least 1")),
            Some(Some(n)) => Some(n),
            Some(None) if seq <= CHECK_ALL_UP_TO => Some(usize::MAX),
            Some(None) => Some(DEFAULT_CHECK_ROWS),
        };
        if args.duo.enabled() && !args.causal {
            return Err(Error::config(
                "--duo/--retrieval-ratio need --causal (DuoAttention's streaming heads are causal)",
            ));
        }
        let mut job = Job {
            world,
            seq,
            heads,
            kv_heads,
            dim,
            causal: args.causal,
            threads,
            cores: Vec::new(),
            plan: plan(choice, world, seq, mask, tile),
            ring: RingConfig { mask, tile, fault },
            check_rows,
            dtype: args.dtype.dtype(),
            want_output: args.output.is_some(),
            input,
            sched: args.sched.spec()?,
            duo: None,
        };
        if let Some(plan) = args.duo.plan(kv_heads)? {
            job.set_duo(plan, args)?;
        }
        Ok(job)
    }

    /// Turns DuoAttention on with `duo` (one kind per KV head of the job) and re-plans the
    /// layout for that head mix (`--layout` as in `args`): streaming heads are costed by their
    /// windows. Fails when the plan's number of KV heads differs from the job's.
    pub fn set_duo(&mut self, duo: DuoPlan, args: &RunArgs) -> Result<()> {
        if duo.kv_heads() != self.kv_heads {
            return Err(Error::config(format!(
                "the DuoAttention plan has {} KV heads but the run has {}",
                duo.kv_heads(),
                self.kv_heads
            )));
        }
        let mix = HeadMix {
            retrieval: duo.retrieval_count(),
            streaming: duo.streaming_count(),
            streaming_mask: Mask::Streaming {
                sink: duo.sink,
                recent: duo.recent,
            },
        };
        let (world, seq, mask, tile) = (self.world, self.seq, self.mask(), self.ring.tile);
        self.plan = plan_mixed(
            layout_choice(args.layout),
            world,
            seq,
            mask,
            tile,
            Some(&mix),
        );
        self.duo = Some(duo);
        Ok(())
    }

    /// FLOPs the masks actually require: 4 · D · Σ over query heads of the allowed (query, key)
    /// pairs of that head's mask (streaming heads of a DuoAttention plan count their windows).
    pub fn flops(&self) -> f64 {
        let group = (self.heads / self.kv_heads.max(1)) as f64;
        let pairs: f64 = self
            .kv_head_masks()
            .iter()
            .map(|m| m.allowed_pairs(self.seq) as f64)
            .sum();
        4.0 * self.dim as f64 * group * pairs
    }
}

fn layout_choice(layout: LayoutArg) -> LayoutChoice {
    match layout {
        LayoutArg::Auto => LayoutChoice::Auto,
        LayoutArg::Contiguous => LayoutChoice::Fixed(LayoutKind::Contiguous),
        LayoutArg::Striped => LayoutChoice::Fixed(LayoutKind::Striped),
        LayoutArg::Zigzag => LayoutChoice::Fixed(LayoutKind::Zigzag),
    }
}

fn parse_fault(s: &str) -> Result<FaultInjection> {
    let bad = || Error::config(format!("--inject-fault expects RANK:STEP, got `{s}`"));
    let (rank, step) = s.split_once(':').ok_or_else(bad)?;
    Ok(FaultInjection {
        rank: rank.trim().parse().map_err(|_| bad())?,
        step: step.trim().parse().map_err(|_| bad())?,
    })
}
