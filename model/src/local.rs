//! Running every rank of a generation as threads of this process ([`generate`],
//! [`generate_with`]): a local world, one matmul pool and one kernel scheduler per rank, pinned
//! to CPUs of their own when there are enough.

use std::sync::mpsc;

use ringattn_runtime::local::local_world;
use ringattn_runtime::sched::topology::allowed_cpus;

use crate::error::{ModelError, Result};
use crate::generate::{generate_rank, prompt_ids, GenerateReport, GenerateSpec};
use crate::Model;

/// Loads the model of `spec` and runs [`generate_with`].
pub fn generate(
    spec: &GenerateSpec,
    on_token: &mut dyn FnMut(u32, &str),
) -> Result<GenerateReport> {
    let model = Model::load(&spec.model, spec.weights)?;
    generate_with(&model, spec, on_token)
}

/// `spec.world` ranks as threads of this process, sharing `model`'s weights; rank 0's tokens
/// reach `on_token` on the calling thread as they are produced.
pub fn generate_with(
    model: &Model,
    spec: &GenerateSpec,
    on_token: &mut dyn FnMut(u32, &str),
) -> Result<GenerateReport> {
    if spec.world == 0 {
        return Err(ModelError::Invalid {
            field: "world",
            reason: "must be at least 1".into(),
        });
    }
    // Bad input is reported once, before any thread starts.
    prompt_ids(model, spec, spec.world)?;
    crate::quiet_candle_pool();
    let (tx, rx) = mpsc::channel::<(u32, String)>();
    let specs = rank_specs(spec);
    let results: Vec<Result<GenerateReport>> = std::thread::scope(|s| {
        let handles: Vec<_> = local_world(spec.world)
            .into_iter()
            .zip(&specs)
            .map(|(mut comm, spec)| {
                let tx = tx.clone();
                s.spawn(move || {
                    let mut send = |id: u32, piece: &str| {
                        let _ = tx.send((id, piece.to_string()));
                    };
                    crate::rank_pool::build(spec)?
                        .install(|| generate_rank(model, spec, &mut comm, &mut send))
                })
            })
            .collect();
        drop(tx);
        for (id, piece) in rx.iter() {
            on_token(id, &piece);
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(panicked())))
            .collect()
    });
    first_error_or_rank0(results)
}

/// One spec per in-process rank: with `pin` and enough allowed CPUs, rank r's threads get
/// CPUs `[r·t, (r+1)·t)` of the allowed list (t = threads per rank).
fn rank_specs(spec: &GenerateSpec) -> Vec<GenerateSpec> {
    let cpus = allowed_cpus();
    let t = spec.threads_per_rank.max(1);
    let fits = spec.pin && spec.cores.is_empty() && spec.world * t <= cpus.len();
    (0..spec.world)
        .map(|r| {
            let mut s = spec.clone();
            if fits {
                s.cores = cpus[r * t..(r + 1) * t].to_vec();
            }
            s
        })
        .collect()
}

fn panicked() -> ModelError {
    ModelError::Runtime(ringattn_runtime::Error::config(
        "a rank thread panicked".to_string(),
    ))
}

/// Rank 0's report, or the root cause: the first error that is not another rank's abort.
fn first_error_or_rank0(results: Vec<Result<GenerateReport>>) -> Result<GenerateReport> {
    let mut errors: Vec<ModelError> = Vec::new();
    let mut rank0 = None;
    for (r, res) in results.into_iter().enumerate() {
        match res {
            Ok(rep) if r == 0 => rank0 = Some(rep),
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    let aborted = |e: &ModelError| {
        matches!(
            e,
            ModelError::Runtime(ringattn_runtime::Error::Aborted { .. })
                | ModelError::Attention(crate::attn::ApiError::Runtime(
                    ringattn_runtime::Error::Aborted { .. }
                ))
        )
    };
    if let Some(i) = errors.iter().position(|e| !aborted(e)) {
        return Err(errors.swap_remove(i));
    }
    match (errors.pop(), rank0) {
        (Some(e), _) => Err(e),
        (None, Some(rep)) => Ok(rep),
        (None, None) => Err(panicked()),
    }
}
