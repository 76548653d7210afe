//! `ringattn bench scaling`: every (length, workers, layout) combination through the local
//! backend, one run report per line in `DIR/results.jsonl`, then the plots.
//!
//! With `--backend mpi` every combination is its own `mpirun -n P ringattn run --backend mpi
//! --json -` (see [`ringattn::bench::mpi_sweep`]); the lines are the same, with `"backend": "mpi"`.
//!
//! With `--backend slurm` the combinations still to run are one SLURM job array (see
//! [`ringattn::slurm::array`]); the lines are the same, with `"backend": "mpi"`.
//!
//! Resumable: the combinations already in the file are skipped, so an interrupted sweep picks
//! up where it stopped (a line cut short by a kill is ignored and its run redone). Each line is
//! the run report of `ringattn run --json -` plus a `sweep` object (`mode`, `base_seq`,
//! `cores`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use ringattn_runtime::{Error, Result};

use crate::cli::{DtypeArg, LayoutArg};
use ringattn::bench::mpi_sweep::MpiSweep;
use ringattn::bench::scaling::{SweepEvent, SweepPlan};
use ringattn::job::Job;
use ringattn::plot;
use ringattn::sched_spec::SchedSpec;
use ringattn::slurm::array::SlurmSweep;
use ringattn::slurm::{cpu_binding, this_binary};
use ringattn::sweep::{run_local_value, SweepSpec};
use ringattn::{LayoutChoice, RunSpec};
use ringattn_runtime::sched::ratios::default_cache_path;

use crate::args::cli_error;
use crate::run::backend::{HOW_TO_BUILD_MPI, MPI_BUILT};
use crate::sbatch::PmiArg;

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
    #[arg(long, value_delimiter = ',', value_parser = fixed_layout(), default_values = ["contiguous", "striped", "zigzag"])]
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
    /// Heads and head dimension.
    #[command(flatten)]
    pub shape: crate::args::heads::HeadArgs,
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

pub use ringattn::sweep::Combo;

/// `--layout`'s parser: the fixed layouts only (so `--help` does not offer `auto`).
fn fixed_layout() -> impl clap::builder::TypedValueParser<Value = LayoutArg> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(["contiguous", "striped", "zigzag", "docs"]).map(|s| {
        match s.as_str() {
            "contiguous" => LayoutArg::Contiguous,
            "striped" => LayoutArg::Striped,
            "docs" => LayoutArg::Docs,
            _ => LayoutArg::Zigzag,
        }
    })
}

/// The sweep's plain data (the library's [`SweepSpec`]) from the arguments.
fn sweep_spec(args: &ScalingArgs) -> Result<SweepSpec> {
    Ok(SweepSpec {
        workers: args.workers.clone(),
        seqs: args.seq.clone(),
        layouts: args.layout.iter().map(|&l| LayoutChoice::from(l)).collect(),
        weak: args.mode == Mode::Weak,
        run: RunSpec {
            heads: Some(args.shape.heads),
            kv_heads: Some(args.shape.kv_heads()),
            head_dim: Some(args.shape.head_dim),
            threads: Some(args.threads),
            causal: args.causal,
            dtype: args.dtype.dtype(),
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
    let mpi = match args.backend {
        BenchBackend::Mpi => Some(mpi_sweep(args)?),
        BenchBackend::Local | BenchBackend::Slurm => None,
    };
    let slurm = match args.backend {
        BenchBackend::Slurm => Some(slurm_sweep(args)?),
        _ => None,
    };
    if args.workers.contains(&0) || args.seq.contains(&0) || args.threads == 0 {
        return Err(Error::config(
            "--workers, --seq and --threads must be at least 1",
        ));
    }
    crate::args::check_threads(Some(args.threads), allowed_cores, false)?;
    let plan = SweepPlan::new(sweep_spec(args)?, &args.out, allowed_cores).map_err(cli_error)?;
    if plan.unreadable > 0 {
        eprintln!(
            "ringattn: note: ignoring {} unreadable line(s) of {} (an interrupted run is redone)",
            plan.unreadable,
            plan.results.display()
        );
    }
    let (all, todo) = (plan.combos.len(), plan.todo.len());
    eprintln!(
        "ringattn bench scaling: {all} runs, {} already in {} ({todo} to do)",
        all - todo,
        plan.results.display(),
    );
    let sweep_start = Instant::now();
    let kv_heads = args.shape.kv_heads();
    if let Some(sweep) = &slurm {
        let words: Vec<(&Combo, Vec<String>)> = plan
            .pending()
            .into_iter()
            .map(|(c, _)| (c, run_words(args, c, kv_heads)))
            .collect();
        let tell = &mut |l: String| eprintln!("{l}");
        sweep.run_and_record(&plan.spec, &words, &plan.results, allowed_cores, tell)?;
    } else {
        let bar = progress_bar(plan.total_work(allowed_cores));
        let mut run_one = |combo: &Combo, job: &Job| match &mpi {
            Some(m) => {
                let mut words = run_words(args, combo, kv_heads);
                words.splice(1..1, ["--backend", "mpi", "--json", "-"].map(String::from));
                m.run(&words, combo)
            }
            None => run_local_value(job),
        };
        plan.run_each(
            allowed_cores,
            &mut run_one,
            &mut |event| match (event, &bar) {
                (SweepEvent::Starting(label), Some(b)) => b.set_message(label.to_string()),
                (SweepEvent::Recorded { line, work }, Some(b)) => {
                    b.println(line);
                    b.inc(work);
                }
                (SweepEvent::Recorded { line, .. }, None) => eprintln!("{line}"),
                (SweepEvent::Starting(_), None) => {}
            },
        )?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
    }
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

/// A progress bar on a terminal (none otherwise) over `total` units of predicted work.
fn progress_bar(total: u64) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(total.max(1));
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:30.cyan/blue} {percent:>3}% [{elapsed_precise}, ~{eta} left] {msg}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

/// What the MPI launch of [`BenchBackend::Mpi`] needs: this binary (it must have MPI) and the
/// launcher (exit 2 otherwise).
fn mpi_sweep(args: &ScalingArgs) -> Result<MpiSweep> {
    if !MPI_BUILT {
        return Err(Error::config(format!(
            "bench scaling --backend mpi: {HOW_TO_BUILD_MPI}"
        )));
    }
    MpiSweep::find(args.mpirun.as_deref(), args.mpi_args.clone()).map_err(cli_error)
}

/// What the job array of [`BenchBackend::Slurm`] needs: the binary the jobs run (it must have
/// MPI, unless `RINGATTN` names another) and core binding from the cluster's TaskPlugin.
fn slurm_sweep(args: &ScalingArgs) -> Result<SlurmSweep> {
    let exe = match std::env::var("RINGATTN") {
        Ok(p) if !p.is_empty() => p,
        _ if !MPI_BUILT => {
            return Err(Error::config(format!(
                "bench scaling --backend slurm: {HOW_TO_BUILD_MPI}"
            )))
        }
        _ => this_binary().map_err(cli_error)?,
    };
    let (bind, note) = cpu_binding(false, false);
    if let Some(note) = note {
        eprintln!("ringattn: note: {note}");
    }
    Ok(SlurmSweep {
        exe,
        dir: args.out.join("slurm"),
        pmi: args.slurm_mpi.pmi(),
        bind,
        threads: args.threads,
        extra: args.sbatch_args.clone(),
    })
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
        &args.shape.heads.to_string(),
        "--kv-heads",
        &kv_heads.to_string(),
        "--head-dim",
        &args.shape.head_dim.to_string(),
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
