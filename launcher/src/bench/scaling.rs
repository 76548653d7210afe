//! `ringattn bench scaling`: every (length, workers, layout) combination, one run report per
//! line in `DIR/results.jsonl` (resumable: what is there is skipped), then the plots. The
//! sweep is [`ringattn::bench::scaling`]: locally, one `mpirun` per combination
//! (`--backend mpi`) or one SLURM job array (`--backend slurm`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::ProgressBar;
use ringattn_runtime::{Error, Result};

use crate::cli::Dtype;
use ringattn::bench::mpi_sweep::MpiSweep;
use ringattn::bench::scaling::{SweepBackend, SweepEvent, SweepPlan};
use ringattn::plot;
use ringattn::sched_spec::SchedSpec;
use ringattn::slurm::array::SlurmSweep;
use ringattn::slurm::this_binary;
use ringattn::sweep::SweepSpec;
use ringattn::RunSpec;
use ringattn_runtime::sched::ratios::default_cache_path;

use crate::args::cli_error;
use crate::out::progress_bar;

/// How the sequence length follows the number of workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Fixed total length: N = --seq for every worker count.
    Strong,
    /// Fixed tokens per worker: N = --seq × workers.
    Weak,
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
    /// Layouts, comma separated (fixed ones only: `auto` is not a layout to measure).
    #[arg(long, value_delimiter = ',', value_parser = FIXED_LAYOUTS, default_values = DEFAULT_LAYOUTS)]
    pub layout: Vec<String>,
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
    /// Heads and head dimension.
    #[command(flatten)]
    pub shape: crate::args::heads::HeadArgs,
    /// How K and V are stored and sent.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
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
    #[arg(long, value_enum, default_value_t = ringattn::slurm::Pmi::Pmi2)]
    pub slurm_mpi: ringattn::slurm::Pmi,
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

/// `--layout`'s values: the fixed layouts only (so `--help` does not offer `auto`); `docs`
/// needs documents in the run options.
const FIXED_LAYOUTS: [&str; 4] = ["contiguous", "striped", "zigzag", "docs"];
/// `--layout`'s default: the layouts that need no documents.
const DEFAULT_LAYOUTS: [&str; 3] = ["contiguous", "striped", "zigzag"];

/// The sweep's plain data (the library's [`SweepSpec`]) from the arguments.
fn sweep_spec(args: &ScalingArgs) -> Result<SweepSpec> {
    Ok(SweepSpec {
        workers: args.workers.clone(),
        seqs: args.seq.clone(),
        layouts: args
            .layout
            .iter()
            .map(|l| l.parse())
            .collect::<Result<_, _>>()?,
        weak: args.mode == Mode::Weak,
        run: RunSpec {
            heads: Some(args.shape.heads),
            kv_heads: Some(args.shape.kv_heads()),
            head_dim: Some(args.shape.head_dim),
            threads: Some(args.threads),
            causal: args.causal,
            dtype: args.dtype,
            sched: SchedSpec {
                cache: default_cache_path(),
                ..SchedSpec::default()
            },
            duo: args.duo.spec()?,
            ..RunSpec::default()
        },
    })
}

/// Runs the sweep.
pub fn run_scaling(args: &ScalingArgs, allowed_cores: usize) -> Result<ExitCode> {
    let backend = match args.backend {
        BenchBackend::Local => SweepBackend::Local,
        BenchBackend::Mpi => {
            crate::cli::needs_mpi("bench scaling --backend mpi")?;
            let mpirun = args.mpirun.as_deref();
            SweepBackend::Mpi(MpiSweep::find(mpirun, args.mpi_args.clone()).map_err(cli_error)?)
        }
        BenchBackend::Slurm => SweepBackend::Slurm(slurm_sweep(args)?),
    };
    if args.workers.contains(&0) || args.seq.contains(&0) || args.threads == 0 {
        return Err(Error::config(
            "--workers, --seq and --threads must be at least 1",
        ));
    }
    crate::args::check_threads(Some(args.threads), allowed_cores, false)?;
    let plan = SweepPlan::new(sweep_spec(args)?, &args.out, allowed_cores).map_err(cli_error)?;
    for line in plan.intro() {
        eprintln!("{line}");
    }
    let todo = plan.todo.len();
    let sweep_start = Instant::now();
    let bar = match backend {
        SweepBackend::Slurm(_) => ProgressBar::hidden(),
        _ => progress_bar(
            plan.total_work(allowed_cores).max(1),
            "{bar:30.cyan/blue} {percent:>3}% [{elapsed_precise}, ~{eta} left] {msg}",
        ),
    };
    if !bar.is_hidden() {
        bar.enable_steady_tick(Duration::from_millis(200));
    }
    let tell = &mut |event: SweepEvent| match event {
        SweepEvent::Starting(label) => bar.set_message(label.to_string()),
        SweepEvent::Recorded { line, work } if !bar.is_hidden() => {
            bar.println(line);
            bar.inc(work);
        }
        SweepEvent::Recorded { line, .. } | SweepEvent::Note(line) => eprintln!("{line}"),
    };
    plan.run_on(&backend, allowed_cores, &args.duo.to_words(), tell)?;
    bar.finish_and_clear();
    if todo > 0 {
        eprintln!(
            "ringattn bench scaling: {todo} runs in {:.1} s",
            sweep_start.elapsed().as_secs_f64()
        );
    }
    if !args.no_plot {
        for path in plot::render_dir(&args.out)? {
            outln!("wrote {}", path.display());
        }
    }
    outln!("results: {}", plan.results.display());
    Ok(ExitCode::SUCCESS)
}

/// What the job array of [`BenchBackend::Slurm`] needs: the binary the jobs run (it must have
/// MPI, unless `RINGATTN` names another) and core binding from the cluster's TaskPlugin.
fn slurm_sweep(args: &ScalingArgs) -> Result<SlurmSweep> {
    let exe = match std::env::var("RINGATTN") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            crate::cli::needs_mpi("bench scaling --backend slurm")?;
            this_binary().map_err(cli_error)?
        }
    };
    let pmi = args.slurm_mpi;
    let extra = args.sbatch_args.clone();
    let (sweep, note) = SlurmSweep::new(exe, &args.out, pmi, args.threads, extra);
    if let Some(note) = note {
        eprintln!("ringattn: note: {note}");
    }
    Ok(sweep)
}
