#!/usr/bin/env bash
# Session of 2026-12-03 (second): every quiet-machine benchmark of issues #14, #17 and #16 in one
# run, in priority order, on this 2-core Zen 4. Nothing else may run meanwhile.
# Needs target/release/ringattn built with --all-features (mpi) and llama-cpp-python 0.3.36.
#   bash benches/results/zen4-2026-12-03b/quiet.sh   (from anywhere; writes beside itself)
# Medians of the model grid: python3 benches/results/zen4-2026-12-03/medians.py OUT
set -u
cd "$(dirname "$0")/../../.."  # the repository root
B=target/release/ringattn
OUT=benches/results/zen4-2026-12-03b
stamp() { echo "== $* $(date +%T)"; }
$B info > $OUT/info.txt 2>&1
# 1. #14: SmolLM2 2K/4K/8K, P = 1, 2, local (with llama.cpp) and mpirun, three interleaved rounds.
for round in 1 2 3; do
  stamp "model round $round local"
  $B bench model --context 2048,4096,8192 --workers 1,2 --max-tokens 32 --llamacpp --no-plot \
    --out $OUT/model-local-r$round 2>>$OUT/err.log
  stamp "model round $round mpi"
  $B bench model --context 2048,4096,8192 --workers 1,2 --max-tokens 32 --backend mpi --no-plot \
    --out $OUT/model-mpi-r$round 2>>$OUT/err.log
done
# 2. #17: packed documents / window 4096 at N = 65536, P = 2, 4, vs each document alone.
stamp "docs"
RINGATTN_BIN=$B bash scripts/bench-docs.sh --out $OUT/docs > $OUT/docs.md 2>>$OUT/err.log
# 3. #16: kernel grid per ISA (median of 3 repeats inside), run path vs kernel, scheduler.
stamp "kernel avx512"
$B bench kernel --isa avx512 --seq 8192 --head-dim 64,128 --threads 1,2 --causal false,true \
  --dtype f32,bf16 --json $OUT/kernel-avx512.jsonl > $OUT/kernel-avx512.txt 2>>$OUT/err.log
stamp "kernel avx2"
$B bench kernel --isa avx2 --seq 8192 --head-dim 64,128 --threads 1,2 --causal false,true \
  --dtype f32 --json $OUT/kernel-avx2.jsonl > $OUT/kernel-avx2.txt 2>>$OUT/err.log
stamp "run vs kernel"
for i in 1 2 3; do
  $B bench kernel --isa avx512 --seq 8192 --head-dim 128 --threads 2 --causal true --dtype f32 \
    --repeats 1 --json - >> $OUT/runpath-kernel.jsonl 2>>$OUT/err.log
  $B run --workers 1 --threads 2 --seq 8192 --heads 8 --head-dim 128 --causal --json - \
    >> $OUT/runpath-run.jsonl 2>>$OUT/err.log
done
for case in idle slowed busy; do
  stamp "sched $case"
  extra=()
  [ $case = slowed ] && extra=(--slow-cores 1:2)
  [ $case = busy ] && extra=(--busy-neighbour)
  $B bench sched --calls 10 "${extra[@]}" --json $OUT/sched-$case.json > $OUT/sched-$case.txt 2>>$OUT/err.log
done
stamp done
