//! Whole jobs from a [`RunSpec`]: on threads of this process ([`run_local`]) or as one rank of
//! any [`Comm`] ([`run_rank`], e.g. under MPI).

use ringattn_runtime::Comm;

use crate::cores::plan_local;
use crate::error::ApiError;
use crate::job::Job;
use crate::memory::MemoryCheck;
use crate::output::reassemble;
use crate::rank::Gathered;
use crate::report::Report;
use crate::spec::RunSpec;

/// What a whole job returns on the root.
#[derive(Debug)]
pub struct RunOutput {
    /// `out` [heads, seq, head_dim] in original token order, when `want_output` was set.
    pub out: Option<Vec<f32>>,
    /// `lse` [heads, seq] in original token order, when `want_output` was set.
    pub lse: Option<Vec<f32>>,
    /// The run report (DESIGN.md's JSON contract).
    pub report: Report,
}

/// What one rank of a job returns: the whole output on the root (rank 0), nothing elsewhere.
#[derive(Debug)]
pub struct RankOutput {
    /// This rank.
    pub rank: usize,
    /// The job's output, on the root only.
    pub root: Option<RunOutput>,
}

/// Cores this process may run on (the affinity mask set by mpirun, SLURM or taskset).
pub fn allowed_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The job of `spec` for the local backend, with its ranks' kernel threads placed on cores
/// (pinned when `spec.pin` and they fit; a warning on stderr when `spec.threads` was given and
/// they do not).
pub fn prepare_local(spec: &RunSpec) -> Result<Job, ApiError> {
    prepare_local_with(spec, MemoryCheck::LOCAL)
}

/// [`prepare_local`] with the memory check of a job that holds more than the prefill
/// (decode: [`MemoryCheck::decoding`]).
pub fn prepare_local_with(spec: &RunSpec, memory: MemoryCheck) -> Result<Job, ApiError> {
    let mut job = Job::from_spec_checked(spec, allowed_cores(), memory)?;
    job.cores = plan_local(job.world, job.threads, spec.threads.is_some(), spec.pin).cores;
    Ok(job)
}

/// Runs the whole job of `spec` on `world` threads of this process.
pub fn run_local(spec: &RunSpec) -> Result<RunOutput, ApiError> {
    let job = prepare_local(spec)?;
    let gathered = crate::local::run_local(&job)?;
    output(&job, "local", &gathered)
}

/// Runs this rank's part of the job of `spec` over `comm` (the spec's `world`, when given,
/// must equal the communicator's size). Collective: every rank calls it with the same spec.
pub fn run_rank(spec: &RunSpec, comm: &mut dyn Comm) -> Result<RankOutput, ApiError> {
    if spec.world.is_some_and(|w| w != comm.size()) {
        return Err(ApiError::RankMismatch {
            rank: comm.rank(),
            world: comm.size(),
            what: "the spec's world",
        });
    }
    let spec = RunSpec {
        world: Some(comm.size()),
        ..spec.clone()
    };
    let job = Job::from_spec_checked(&spec, allowed_cores(), MemoryCheck::ONE_RANK)?;
    let rank = comm.rank();
    let root = match crate::rank::run_rank(comm, &job)? {
        Some(g) => Some(output(&job, comm.backend(), &g)?),
        None => None,
    };
    Ok(RankOutput { rank, root })
}

/// The root's output of a finished job.
fn output(job: &Job, backend: &str, g: &Gathered) -> Result<RunOutput, ApiError> {
    let (out, lse) = if job.want_output {
        let (out, lse) = reassemble(job, g)?;
        (Some(out), Some(lse))
    } else {
        (None, None)
    };
    Ok(RunOutput {
        out,
        lse,
        report: Report::new(job, backend, g),
    })
}
