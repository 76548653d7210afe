//! `ringattn bench scaling`: every (length, workers, layout) combination through the local
//! backend, one run report per line in `DIR/results.jsonl`, then the plots.
//!
//! With `--backend mpi` every combination is its own `mpirun -n P ringattn run --backend mpi
//! --json -` (see [`super::scaling_mpi`]); the lines are the same, with `"backend": "mpi"`.
//!
//! With `--backend slurm` the combinations still to run are one SLURM job array (see
//! [`super::scaling_slurm`]); the lines are the same, with `"backend": "mpi"`.
//!
//! Resumable: the combinations already in the file are skipped, so an interrupted sweep picks
//! up where it stopped (a line cut short by a kill is ignored and its run redone). Each line is
//! the run report of `ringattn run --json -` plus a `sweep` object (`mode`, `base_seq`,
//! `cores`).

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use ringattn_runtime::{Error, Result};
use serde_json::Value;

use crate::cli::{DtypeArg, LayoutArg};
use crate::plot;
use ringattn::sched_spec::SchedSpec;
use ringattn::RunSpec;
use ringattn_runtime::sched::ratios::default_cache_path;

use crate::run::spec::flag_error;
use ringattn::job::Job;
use ringattn::local::run_local;
use ringattn::report::Report;

pub use super::results_file::read_results;
use super::results_file::record;
use super::scaling_mpi::MpiSweep;
use super::scaling_slurm::SlurmSweep;
use crate::sbatch::PmiArg;

/// Name of the results file inside the output directory.
pub const RESULTS_FILE: &str = "results.jsonl";

/// How the sequence length follows the number of workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Fixed total length: N = --seq for every worker count.
    Strong,
    /// Fixed tokens per worker: N = --seq × workers.
    Weak,
}

impl Mode {
    /// Name as written in results.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Strong => "strong",
            Mode::Weak => "weak",
        }
    }
}

/// Backends a sweep can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchBackend {
    /// Workers are threads of this process.
    Local,
    /// One process per rank: each combination is its own `mpirun -n P` launch (needs a build
    /// with `--features mpi`).
    Mpi,
    /// One SLURM job array, one task per combination (`srun` of an MPI build; submitted with
    /// `sbatch --wait` from this machine).
    Slurm,
}

/// Options of `ringattn bench scaling`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    ringattn bench scaling --workers 1,2,4 --seq 8192 --layout contiguous,striped,zigzag --causal --out bench-out\n  \
    ringattn bench scaling --workers 1,2,4 --seq 2048 --mode weak --causal --out weak-out")]
pub struct ScalingArgs {
    /// Worker counts, comma separated.
    #[arg(short = 'p', long, value_delimiter = ',', required = true)]
    pub workers: Vec<usize>,
    /// Sequence lengths (strong) or tokens per worker (weak), comma separated.
    #[arg(short = 'n', long, value_delimiter = ',', default_values_t = [8192])]
    pub seq: Vec<usize>,
    /// Layouts, comma separated (contiguous, striped, zigzag).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [LayoutArg::Contiguous, LayoutArg::Striped, LayoutArg::Zigzag])]
    pub layout: Vec<LayoutArg>,
    /// Causal mask.
    #[arg(long)]
    pub causal: bool,
    /// DuoAttention for every run (needs --causal): retrieval heads full, streaming heads
    /// sink + recent; the plan is part of each run's identity in results.jsonl.
    #[command(flatten)]
    pub duo: crate::args::duo::DuoArgs,
    /// Strong scaling (fixed N) or weak scaling (N = --seq × workers).
    #[arg(long, value_enum, default_value_t = Mode::Strong)]
    pub mode: Mode,
    /// Query heads.
    #[arg(long, default_value_t = 8)]
    pub heads: usize,
    /// Key/value heads [default: --heads].
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// Head dimension.
    #[arg(short = 'd', long, default_value_t = 128)]
    pub head_dim: usize,
    /// How K and V are stored and sent.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    pub dtype: DtypeArg,
    /// Kernel threads per worker (1 = one core per worker, like one MPI rank per core).
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,
    /// Communication backend: `local` (threads of this process) or `mpi` (one `mpirun -n P`
    /// per combination).
    #[arg(long, value_enum, default_value_t = BenchBackend::Local)]
    pub backend: BenchBackend,
    /// With `--backend mpi`: the MPI launcher [default: `mpirun`, else `mpiexec`, on PATH].
    #[arg(long, value_name = "PATH")]
    pub mpirun: Option<PathBuf>,
    /// With `--backend mpi`: one extra argument for the MPI launcher; repeat it for several.
    #[arg(long = "mpi-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub mpi_args: Vec<String>,
    /// With `--backend slurm`: the `srun --mpi` plugin (pmi2 for MPICH, pmix for Open MPI 5).
    #[arg(long, value_enum, default_value_t = PmiArg::Pmi2)]
    pub slurm_mpi: PmiArg,
    /// With `--backend slurm`: one extra option for `sbatch` (e.g. `--partition=cpu`,
    /// `--time=00:30:00`); repeat it for several.
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Output directory (created if missing) for results.jsonl and the plots.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Do not draw the plots at the end.
    #[arg(long)]
    pub no_plot: bool,
}

/// One combination of the sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Combo {
    /// Workers.
    pub world: usize,
    /// Base length (--seq).
    pub base_seq: usize,
    /// Sequence length actually run.
    pub seq: usize,
    /// Layout name.
    pub layout: &'static str,
}

/// The DuoAttention part of a run's identity (empty without a plan).
fn duo_key(retrieval: u64, streaming: u64, sink: u64, recent: u64) -> String {
    format!("/duo=R{retrieval}S{streaming}:{sink}:{recent}")
}

/// Identity of a run in results.jsonl: what must match for a line to count as done.
pub fn record_key(v: &Value) -> Option<String> {
    let threads = v["ranks"]
        .get(0)
        .and_then(|r| r["threads"].as_u64())
        .unwrap_or(0);
    let mode = v["sweep"]["mode"].as_str().unwrap_or("strong");
    let dtype = v["dtype"].as_str().unwrap_or("f32");
    let d = &v["duo"];
    let duo = if d.is_object() {
        duo_key(
            d["retrieval_kv_heads"].as_u64()?,
            d["streaming_kv_heads"].as_u64()?,
            d["sink"].as_u64()?,
            d["recent"].as_u64()?,
        )
    } else {
        String::new()
    };
    Some(format!(
        "{mode}/P{}/N{}/{}/causal={}/H{}/Hkv{}/D{}/T{threads}/{dtype}{duo}",
        v["world"].as_u64()?,
        v["seq"].as_u64()?,
        v["layout"].as_str()?,
        v["causal"].as_bool()?,
        v["heads"].as_u64()?,
        v["kv_heads"].as_u64()?,
        v["head_dim"].as_u64()?,
    ))
}

/// Runs the sweep.
pub fn run_scaling(args: &ScalingArgs, allowed_cores: usize) -> Result<ExitCode> {
    let mpi = match args.backend {
        BenchBackend::Mpi => Some(MpiSweep::new(args)?),
        BenchBackend::Local | BenchBackend::Slurm => None,
    };
    let slurm = match args.backend {
        BenchBackend::Slurm => Some(SlurmSweep::new(args)?),
        _ => None,
    };
    if args.workers.contains(&0) || args.seq.contains(&0) || args.threads == 0 {
        return Err(Error::config(
            "--workers, --seq and --threads must be at least 1",
        ));
    }
    if args.layout.contains(&LayoutArg::Auto) {
        return Err(Error::config(
            "bench scaling needs explicit layouts (contiguous, striped, zigzag), not auto",
        ));
    }
    let combos = combinations(args);
    let kv_heads = args.kv_heads.unwrap_or(args.heads);
    // Validate every job before running any (bad sizes fail fast with exit 2).
    let jobs = combos
        .iter()
        .map(|c| build_job(args, c, kv_heads, allowed_cores))
        .collect::<Result<Vec<Job>>>()?;
    std::fs::create_dir_all(&args.out).map_err(|e| Error::Io {
        context: format!("creating {}", args.out.display()),
        source: e,
    })?;
    let results = args.out.join(RESULTS_FILE);
    let (existing, bad) = read_results(&results)?;
    if bad > 0 {
        eprintln!("ringattn: note: ignoring {bad} unreadable line(s) of {} (an interrupted run is redone)", results.display());
    }
    let done: HashSet<String> = existing.iter().filter_map(record_key).collect();
    let todo: Vec<(usize, &Combo, &Job)> = combos
        .iter()
        .zip(&jobs)
        .enumerate()
        .filter(|(_, (c, j))| !done.contains(&job_key(args, c, j)))
        .map(|(i, (c, j))| (i, c, j))
        .collect();
    let skipped = combos.len() - todo.len();
    eprintln!(
        "ringattn bench scaling: {} runs, {} already in {} ({} to do)",
        combos.len(),
        skipped,
        results.display(),
        todo.len()
    );
    // Progress in units of predicted work, so the time left is meaningful.
    let weights: Vec<u64> = todo
        .iter()
        .map(|(_, _, j)| weight(j, allowed_cores))
        .collect();
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(weights.iter().sum::<u64>().max(1));
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30.cyan/blue} {percent:>3}% [{elapsed_precise}, ~{eta} left] {msg}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(bar)
    } else {
        None
    };
    let sweep_start = Instant::now();
    if let Some(sweep) = &slurm {
        let words: Vec<(&Combo, Vec<String>)> = todo
            .iter()
            .map(|(_, c, _)| (*c, run_words(args, c, kv_heads)))
            .collect();
        sweep.run_and_record(args, &words, &results, allowed_cores)?;
    }
    let local_todo = if slurm.is_some() { &[][..] } else { &todo[..] };
    for (n, ((_, combo, job), w)) in local_todo.iter().zip(&weights).enumerate() {
        let label = format!(
            "run {}/{}: P={} {} N={}",
            n + 1,
            todo.len(),
            combo.world,
            combo.layout,
            combo.seq
        );
        if let Some(b) = &bar {
            b.set_message(label.clone());
        }
        let value = match &mpi {
            Some(m) => m.run(&run_words(args, combo, kv_heads), combo)?,
            None => {
                let gathered = run_local(job)?;
                let report = Report::new(job, "local", &gathered);
                serde_json::to_value(&report).expect("a report serialises")
            }
        };
        let line = record(args, &results, combo, value, allowed_cores, &label)?;
        match &bar {
            Some(b) => {
                b.println(line);
                b.inc(*w);
            }
            None => eprintln!("{line}"),
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if !todo.is_empty() {
        eprintln!(
            "ringattn bench scaling: {} runs in {:.1} s",
            todo.len(),
            sweep_start.elapsed().as_secs_f64()
        );
    }
    if !args.no_plot {
        for path in plot::render_dir(&args.out)? {
            println!("wrote {}", path.display());
        }
    }
    println!("results: {}", results.display());
    Ok(ExitCode::SUCCESS)
}

/// Every combination, in run order: lengths, then workers, then layouts. With one worker all
/// layouts are the same run, so only the first layout is run (plots reuse it for the others).
pub fn combinations(args: &ScalingArgs) -> Vec<Combo> {
    let mut out = Vec::new();
    for &base in &args.seq {
        for &p in &args.workers {
            for (i, l) in args.layout.iter().enumerate() {
                if p == 1 && i > 0 {
                    continue;
                }
                out.push(Combo {
                    world: p,
                    base_seq: base,
                    seq: match args.mode {
                        Mode::Strong => base,
                        Mode::Weak => base * p,
                    },
                    layout: ringattn::LayoutChoice::from(*l).name(),
                });
            }
        }
    }
    out
}

/// The `ringattn run` words of one combination (without backend or report options).
pub fn run_words(args: &ScalingArgs, c: &Combo, kv_heads: usize) -> Vec<String> {
    let mut words: Vec<String> = [
        "run",
        "--workers",
        &c.world.to_string(),
        "--seq",
        &c.seq.to_string(),
        "--heads",
        &args.heads.to_string(),
        "--kv-heads",
        &kv_heads.to_string(),
        "--head-dim",
        &args.head_dim.to_string(),
        "--threads",
        &args.threads.to_string(),
        "--layout",
        c.layout,
        "--dtype",
        args.dtype.dtype().name(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if args.causal {
        words.push("--causal".into());
    }
    words.extend(args.duo.to_words());
    words
}

/// The job of one combination, built from its spec as `run` builds it from the same words.
fn build_job(args: &ScalingArgs, c: &Combo, kv_heads: usize, cores: usize) -> Result<Job> {
    let spec = RunSpec {
        world: Some(c.world),
        seq: Some(c.seq),
        heads: Some(args.heads),
        kv_heads: Some(kv_heads),
        head_dim: Some(args.head_dim),
        threads: Some(args.threads),
        causal: args.causal,
        layout: c.layout.parse().map_err(flag_error)?,
        dtype: args.dtype.dtype(),
        sched: SchedSpec {
            cache: default_cache_path(),
            ..SchedSpec::default()
        },
        duo: args.duo.spec()?,
        ..RunSpec::default()
    };
    Job::from_spec(&spec, cores).map_err(flag_error)
}

fn job_key(args: &ScalingArgs, c: &Combo, j: &Job) -> String {
    let duo = match &j.duo {
        Some(p) => duo_key(
            p.retrieval_count() as u64,
            p.streaming_count() as u64,
            p.sink as u64,
            p.recent as u64,
        ),
        None => String::new(),
    };
    format!(
        "{}/P{}/N{}/{}/causal={}/H{}/Hkv{}/D{}/T{}/{}{duo}",
        args.mode.name(),
        c.world,
        c.seq,
        c.layout,
        j.causal,
        j.heads,
        j.kv_heads,
        j.dim,
        j.threads,
        j.dtype.name()
    )
}

/// Predicted relative cost of a job (partitioner makespan × heads × D, slowed down when the
/// workers' threads exceed the cores).
fn weight(job: &Job, cores: usize) -> u64 {
    let makespan = job
        .plan
        .estimates
        .iter()
        .find(|e| e.kind == job.plan.kind)
        .map_or(1.0, |e| e.makespan);
    let over = (job.world * job.threads) as f64 / cores.max(1) as f64;
    (makespan * job.heads as f64 * job.dim as f64 * over.max(1.0)).max(1.0) as u64
}
