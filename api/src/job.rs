//! A validated job: what every rank runs, whatever the backend (built from a [`RunSpec`]).

use ringattn_ring::{DuoPlan, FaultInjection, RingConfig};
use ringattn_runtime::io::FileSource;
use ringattn_runtime::io_docs::read_documents;
use ringattn_runtime::{Dtype, Mask, Result, RowSource, Synthetic, TensorKind};
use ringattn_striped::partitioner::MAX_MODEL_WORLD;
use ringattn_striped::{plan, plan_mixed, HeadMix, Plan};

use crate::error::{nonzero, ApiError};
use crate::layout::LayoutChoice;
use crate::memory::{check_job_memory, JobSizes, MemoryCheck};
use crate::sched_spec::SchedSpec;
use crate::spec::{check_fault, check_mask, check_sizes, CheckRows, RunSpec};

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
        self.ring.mask.clone()
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

    /// Validates `spec` and builds the job (including the layout plan); `allowed_cores` is the
    /// default world and the cores the ranks share. Makes no memory check: the entry points
    /// ([`crate::run_local`], [`crate::run_rank`], [`crate::prepare_local`]) use
    /// [`Job::from_spec_checked`].
    pub fn from_spec(spec: &RunSpec, allowed_cores: usize) -> Result<Job, ApiError> {
        Self::build(spec, allowed_cores, None)
    }

    /// [`Job::from_spec`], refusing (bad input, after the layout is planned and before
    /// anything is allocated) a job whose buffers this process cannot hold, its largest rank
    /// as the layout gives it (see [`crate::memory`]).
    pub fn from_spec_checked(
        spec: &RunSpec,
        allowed_cores: usize,
        memory: MemoryCheck,
    ) -> Result<Job, ApiError> {
        Self::build(spec, allowed_cores, Some(memory))
    }

    fn build(
        spec: &RunSpec,
        allowed_cores: usize,
        memory: Option<MemoryCheck>,
    ) -> Result<Job, ApiError> {
        let input = match &spec.input {
            Some(path) => Input::File(FileSource::open(path)?),
            None => Input::Synthetic(Synthetic { seed: spec.seed }),
        };
        let (seq, heads, kv_heads, dim) = resolve_sizes(spec, &input)?;
        let world = spec.world.unwrap_or(allowed_cores.max(1));
        nonzero(&[
            ("seq", seq),
            ("heads", heads),
            ("kv_heads", kv_heads),
            ("head_dim", dim),
            ("world", world),
            ("tile.q", spec.tile.q),
            ("tile.k", spec.tile.k),
        ])?;
        check_sizes(heads, kv_heads, world, seq)?;
        let threads = match spec.threads {
            Some(t) => t,
            None => (allowed_cores / world).max(1),
        };
        nonzero(&[("threads", threads)])?;
        if let Some(f) = spec.fault {
            check_fault(f, world)?;
        }
        let mask = run_mask(spec, &input, seq)?;
        let check_rows = Self::check_rows_of(spec.check, seq)?;
        if spec.duo.is_some() && !spec.causal {
            return Err(ApiError::DuoNeedsCausal);
        }
        let fault = spec.fault.map(|f| FaultInjection {
            rank: f.rank,
            step: f.step,
        });
        let mut job = Job {
            world,
            seq,
            heads,
            kv_heads,
            dim,
            causal: spec.causal,
            threads,
            cores: Vec::new(),
            plan: plan(
                spec.layout.plan_choice(),
                world,
                seq,
                mask.clone(),
                spec.tile,
            ),
            ring: RingConfig {
                mask,
                tile: spec.tile,
                fault,
            },
            check_rows,
            dtype: spec.dtype,
            want_output: spec.want_output,
            input,
            sched: spec.sched.clone(),
            duo: None,
        };
        if let Some(duo) = &spec.duo {
            job.set_duo(duo.plan(kv_heads)?, spec.layout)?;
        }
        if let Some(memory) = memory {
            job.check_memory(memory)?;
        }
        Ok(job)
    }

    /// Refuses a job this process cannot hold, every rank sized like the layout's largest
    /// (see [`Job::largest_rank`]).
    fn check_memory(&self, memory: MemoryCheck) -> Result<(), ApiError> {
        let sizes = JobSizes {
            world: self.world,
            seq: self.seq,
            heads: self.heads,
            kv_heads: self.kv_heads,
            dim: self.dim,
            threads: self.threads,
            tile: self.ring.tile,
            dtype: self.dtype,
            largest_rank: self.largest_rank(),
        };
        check_job_memory(&sizes, memory)
    }

    /// Rows of Q and of KV the layout's largest rank holds, when the layout decides them per
    /// document (the documents layout: whole documents, so counts differ); `None` for the
    /// block layouts, whose ranks hold about N/P each (the memory check's default), and above
    /// [`MAX_MODEL_WORLD`] ranks (each rank's positions walk the documents: P × documents).
    pub fn largest_rank(&self) -> Option<usize> {
        if !self.plan.kind.needs_documents() || self.world > MAX_MODEL_WORLD {
            return None;
        }
        let layout = self.plan.kind.build(&self.ring.mask);
        (0..self.world)
            .map(|r| layout.positions(r, self.world, self.seq).len())
            .max()
    }

    /// The rows `run` checks for `check` at `seq` tokens (`usize::MAX`: all of them).
    fn check_rows_of(check: Option<CheckRows>, seq: usize) -> Result<Option<usize>, ApiError> {
        Ok(match check {
            None => None,
            Some(CheckRows::Rows(0)) => {
                return Err(ApiError::Zero {
                    field: "check_rows",
                })
            }
            Some(CheckRows::Rows(n)) => Some(n),
            Some(CheckRows::Auto) if seq <= CHECK_ALL_UP_TO => Some(usize::MAX),
            Some(CheckRows::Auto) => Some(DEFAULT_CHECK_ROWS),
        })
    }

    /// Turns DuoAttention on with `duo` (one kind per KV head of the job) and re-plans the
    /// layout (`layout` as asked) for that head mix: streaming heads are costed by their
    /// windows. Fails when the plan's number of KV heads differs from the job's.
    pub fn set_duo(&mut self, duo: DuoPlan, layout: LayoutChoice) -> Result<(), ApiError> {
        if duo.kv_heads() != self.kv_heads {
            return Err(ApiError::DuoHeads {
                plan: duo.kv_heads(),
                kv_heads: self.kv_heads,
            });
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
        self.plan = plan_mixed(layout.plan_choice(), world, seq, mask, tile, Some(&mix));
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
        ringattn_ring::metrics::attention_flops(self.dim, group * pairs)
    }
}

/// The mask of a run: causal or not, the sliding window, and the packed documents (the spec's,
/// else the input file's `doc_lens` / `cu_seqlens`), checked to cover exactly `seq` tokens.
fn run_mask(spec: &RunSpec, input: &Input, seq: usize) -> Result<Mask, ApiError> {
    check_mask(spec.window, spec.docs.is_some(), spec.duo.is_some())?;
    let docs = match (&spec.docs, &spec.input, input) {
        (Some(d), _, _) => Some(d.documents()?),
        (None, Some(path), Input::File(_)) => read_documents(path)?,
        _ => None,
    };
    spec.layout.check_docs(docs.is_some())?;
    if let Some(d) = &docs {
        d.check_total(seq)?;
        if spec.duo.is_some() {
            return Err(ApiError::DuoWithDocs);
        }
    }
    Ok(Mask::span(spec.causal, spec.window, docs))
}

/// The sizes of the job: the spec's, or the input file's (which given ones must match), or the
/// defaults for synthetic inputs.
fn resolve_sizes(spec: &RunSpec, input: &Input) -> Result<(usize, usize, usize, usize), ApiError> {
    let from_file = |field: &'static str, given: Option<usize>, file: usize| match given {
        Some(g) if g != file => Err(ApiError::FileMismatch {
            field,
            given: g,
            file,
        }),
        _ => Ok(file),
    };
    Ok(match input {
        Input::File(f) => (
            from_file("seq", spec.seq, f.seq())?,
            from_file("heads", spec.heads, f.heads())?,
            from_file("kv_heads", spec.kv_heads, f.kv_heads())?,
            from_file("head_dim", spec.head_dim, f.dim())?,
        ),
        Input::Synthetic(_) => {
            let heads = spec.heads.unwrap_or(8);
            (
                spec.seq.unwrap_or(4096),
                heads,
                spec.kv_heads.unwrap_or(heads),
                spec.head_dim.unwrap_or(128),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::job_need;
    use crate::spec::DocsSpec;

    /// Documents of 4000, 2000 and 2000 tokens then 64 of 128 (N = 16192, P = 2): the
    /// documents layout balances their cost (short documents are cheap per token), so one rank
    /// gets 10192 rows, 1.26 × N / P; the check sizes every rank by it.
    #[test]
    fn the_memory_check_counts_the_docs_layouts_largest_rank() {
        let lens: Vec<usize> = [vec![4000, 2000, 2000], vec![128; 64]].concat();
        let spec = RunSpec {
            world: Some(2),
            seq: Some(16192),
            heads: Some(2),
            head_dim: Some(8),
            causal: true,
            layout: LayoutChoice::Docs,
            docs: Some(DocsSpec::Lengths(lens)),
            ..RunSpec::default()
        };
        let job = Job::from_spec_checked(&spec, 2, MemoryCheck::LOCAL).unwrap();
        let largest = job.largest_rank().unwrap();
        assert!(largest >= 8096 * 6 / 5, "largest rank {largest} rows");
        let sizes = |largest_rank| JobSizes {
            world: 2,
            seq: 16192,
            heads: 2,
            kv_heads: 2,
            dim: 8,
            threads: job.threads,
            tile: job.ring.tile,
            dtype: job.dtype,
            largest_rank,
        };
        let (counted, _) = job_need(&sizes(Some(largest)), MemoryCheck::LOCAL).unwrap();
        let (even, _) = job_need(&sizes(None), MemoryCheck::LOCAL).unwrap();
        assert!(counted > even, "{counted} vs {even}");
        // A block layout holds N / P per rank: nothing to add.
        let zigzag = RunSpec {
            layout: LayoutChoice::Zigzag,
            ..spec
        };
        assert_eq!(Job::from_spec(&zigzag, 2).unwrap().largest_rank(), None);
    }
}
