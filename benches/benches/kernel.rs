//! Criterion micro-bench of the single-node kernel: one `attend` over a whole sequence.
//!
//! `cargo bench -p ringattn-benches --bench kernel` (the end-to-end numbers of BENCHMARKS.md
//! come from `ringattn run`; this isolates the kernel).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringattn_runtime::{attend, AttnState, KvBlock, Mask, Positions, QShard, Synthetic, TileShape};

fn kernel(c: &mut Criterion) {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let source = Synthetic { seed: 1 };
    let (heads, dim) = (8, 128);
    let mut group = c.benchmark_group("attend");
    group.sample_size(10);
    for seq in [2048usize, 4096] {
        let positions = Positions::contiguous(0, seq);
        let q = QShard::from_source(&source, heads, dim, positions.clone()).expect("synthetic q");
        let kv = KvBlock::from_source(&source, 0, heads, dim, positions).expect("synthetic kv");
        for mask in [Mask::None, Mask::Causal] {
            let flops = 4.0 * (dim * heads) as f64 * mask.allowed_pairs(seq) as f64;
            group.throughput(Throughput::Elements(flops as u64));
            let name = format!("{mask:?}/h{heads}/d{dim}/t{threads}");
            group.bench_with_input(BenchmarkId::new(name, seq), &seq, |b, _| {
                b.iter(|| {
                    let mut state = AttnState::new(heads, seq, dim);
                    attend(
                        &q,
                        &kv,
                        mask.clone(),
                        TileShape::default(),
                        &mut state,
                        &pool,
                    )
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, kernel);
criterion_main!(benches);
