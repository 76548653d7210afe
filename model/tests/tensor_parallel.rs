//! Tensor-parallel decode (each rank computes a row range of every projection and of the LM
//! head, then all-gathers): the same greedy tokens for P = 1, 2, 3 and every layout on a short
//! prompt, the split actually in use with the default weights, and `generate_rank` called from
//! threads outside any rayon pool (as an MPI rank's main thread is) giving the same tokens, its
//! progress and text reaching the caller's callbacks.

mod common;

use ringattn_model::tensor_parallel::DecodeSplit;
use ringattn_model::{
    default_model_path, generate_rank_progress, generate_with, GenerateReport, GenerateSpec,
    Progress,
};
use ringattn_runtime::local::local_world;

const PROMPT: &str = "The capital of Japan is Tokyo. The capital of France is";
const STEPS: usize = 16;

/// What one rank saw: prefill progress events, streamed text, and its report.
type RankRun = (Vec<(usize, usize)>, String, GenerateReport);

fn spec(world: usize, layout: &str) -> GenerateSpec {
    let mut s = GenerateSpec::new(default_model_path(), PROMPT, STEPS, world);
    s.layout = layout.parse().unwrap();
    s.ignore_eos = true;
    s
}

#[test]
fn the_default_weights_are_split_by_rows_on_every_rank() {
    let Some(model) = common::model() else { return };
    for world in [1, 2, 3] {
        for rank in 0..world {
            assert!(
                DecodeSplit::new(&model.weights, rank, world).is_some(),
                "rank {rank} of {world}: decode would run every projection redundantly"
            );
        }
    }
}

#[test]
fn greedy_tokens_are_the_same_for_one_two_and_three_ranks_and_every_layout() {
    let Some(model) = common::model() else { return };
    let one = generate_with(model, &spec(1, "striped"), &mut |_, _| {}).unwrap();
    assert_eq!(one.generated_tokens, STEPS);
    for world in [2, 3] {
        for layout in ["contiguous", "striped", "zigzag"] {
            let rep = generate_with(model, &spec(world, layout), &mut |_, _| {}).unwrap();
            assert_eq!(
                rep.token_ids, one.token_ids,
                "P={world} {layout}: {:?} vs {:?}",
                rep.text, one.text
            );
        }
    }
}

/// Two ranks on plain threads (no rayon pool of their own): each starts its pool; rank 0's
/// tokens and every layer's progress arrive on the calling thread.
#[test]
fn ranks_outside_a_pool_run_on_their_own_and_stream_to_the_caller() {
    let Some(model) = common::model() else { return };
    let local = generate_with(model, &spec(2, "striped"), &mut |_, _| {}).unwrap();
    let mut s = spec(2, "striped");
    s.pin = false;
    let layers = model.weights.config.layers;
    let results: Vec<RankRun> = std::thread::scope(|scope| {
        let handles: Vec<_> = local_world(2)
            .into_iter()
            .map(|mut comm| {
                let s = &s;
                scope.spawn(move || {
                    assert!(rayon::current_thread_index().is_none());
                    let (mut events, mut text) = (Vec::new(), String::new());
                    let progress = Progress {
                        on_layer: &mut |d, l| events.push((d, l)),
                        on_token: &mut |_, piece| text.push_str(piece),
                    };
                    let rep = generate_rank_progress(model, s, &mut comm, progress).unwrap();
                    (events, text, rep)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let want: Vec<(usize, usize)> = (1..=layers).map(|d| (d, layers)).collect();
    for (rank, (events, text, rep)) in results.iter().enumerate() {
        assert_eq!(*events, want, "rank {rank}: prefill progress");
        if rank == 0 {
            assert_eq!(rep.token_ids, local.token_ids);
            assert_eq!(*text, rep.text);
            assert_eq!(rep.ranks.len(), 2);
        } else {
            assert!(text.is_empty(), "only rank 0 streams text");
        }
    }
}
