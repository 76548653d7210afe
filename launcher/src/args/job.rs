//! The options `run` and `decode` share (flattened into both), their mapping to the library's
//! [`RunSpec`] and the checks both make before any compute.

use clap::Args;
use ringattn::RunSpec;
use ringattn_runtime::Result;

use crate::cli::{BackendChoice, Dtype, LayoutChoice};

/// Options of a ring attention job shared by `run` and `decode`.
#[derive(Clone, Debug, Args)]
pub struct JobArgs {
    /// Communication backend: `local` (threads), `mpi` (processes under mpirun/srun) or `auto`.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Number of workers in the ring [default: cores allowed to this process; with MPI: the
    /// number of MPI processes, which it must equal when given].
    #[arg(short = 'p', long)]
    pub workers: Option<usize>,
    /// Query heads H [default: 8, or the input file's].
    #[arg(long)]
    pub heads: Option<usize>,
    /// Key/value heads (GQA when fewer than --heads; must divide it) [default: --heads].
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// Head dimension D [default: 128, or the input file's].
    #[arg(short = 'd', long)]
    pub head_dim: Option<usize>,
    /// Token layout over workers (decode: each new token goes to the worker the layout names:
    /// striped round robin, contiguous the last worker, zigzag worker 0, docs the owner of the
    /// last document). `auto` also weighs docs when the run has packed documents.
    #[arg(long, value_enum, default_value_t = LayoutChoice::Auto)]
    pub layout: LayoutChoice,
    /// Storage type of K and V (stored, sent and cached): bf16 halves KV memory and ring
    /// traffic; queries, the softmax state and all arithmetic stay f32 (--check compares bf16
    /// with the reference at 2e-2).
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Precision of Q in the blocked kernel's Q·Kᵀ (run; decode's prefill) for bf16 K/V: f32
    /// (Q exact) or bf16 (Q rounded to bf16 too: Q·Kᵀ on vdpbf16ps at twice the f32 rate, each
    /// score off by up to twice what bf16 K alone gives). bf16 needs --dtype bf16, the avx512
    /// micro-kernels and a CPU with AVX512-BF16 (else exit 2) [default: RINGATTN_QK_DTYPE when
    /// set, else f32].
    #[arg(long, value_enum)]
    pub qk_dtype: Option<Dtype>,
    /// Kernel threads per worker [default: allowed cores / workers, at least 1; with MPI:
    /// the rank's share of the cores its node's ranks may use]. Ranks sharing a node get
    /// disjoint cores, each kernel thread pinned to one (see --no-pin); when ranks × threads
    /// exceed the allowed cores, rank 0 warns and the job runs unpinned.
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Do not pin kernel threads to cores (the operating system places them).
    #[arg(long)]
    pub no_pin: bool,
    /// Allow --threads above the cores allowed to this process (up to 16 per core).
    #[arg(long)]
    pub oversubscribe: bool,
    /// Seed of the synthetic Q/K/V (a pure function of seed, tensor, head and position).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the JSON report to PATH ("-" = stdout, which replaces the human summary).
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,
    /// Kernel thread scheduling.
    #[command(flatten)]
    pub sched: crate::args::sched::SchedArgs,
    /// Micro-kernels (`--isa`).
    #[command(flatten)]
    pub isa: crate::args::isa::IsaArgs,
    /// DuoAttention: retrieval heads attend everything, streaming heads a sink + recent window.
    #[command(flatten)]
    pub duo: crate::args::duo::DuoArgs,
}

impl JobArgs {
    /// The spec fields these options set (`seq`, `causal` and the rest at their defaults).
    pub fn spec(&self) -> Result<RunSpec> {
        Ok(RunSpec {
            world: self.workers,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            layout: self.layout,
            dtype: self.dtype,
            threads: self.threads,
            pin: !self.no_pin,
            seed: self.seed,
            sched: self.sched.spec()?,
            duo: self.duo.spec()?,
            ..RunSpec::default()
        })
    }

    /// What both commands check before any compute: the micro-kernels and Q·Kᵀ precision
    /// asked for, threads within the allowed cores, and that `output` and `--json` can be
    /// written.
    pub fn precheck(&self, output: Option<&std::path::Path>) -> Result<()> {
        let isa = self.isa.isa.activate()?;
        ringattn_runtime::activate_qk_dtype(self.qk_dtype, isa, self.dtype)?;
        crate::args::check_threads(self.threads, ringattn::allowed_cores(), self.oversubscribe)?;
        crate::args::check_outputs(output, self.json.as_deref())
    }

    /// Prints the report where `--json` says: the JSON on stdout for `-` (no summary), else
    /// the JSON to the file (if given) and the human `summary` on stdout.
    pub fn emit(&self, write_json: impl Fn(&str) -> Result<()>, summary: &str) -> Result<()> {
        if let Some(path) = self.json.as_deref() {
            write_json(path)?;
        }
        if self.json.as_deref() != Some("-") {
            out!("{summary}");
        }
        Ok(())
    }
}
