#!/usr/bin/env bash
# Session of 2026-12-03 (fifth): issue #16's bf16 target with `--qk-dtype bf16` (Q·Kᵀ on
# vdpbf16ps too) on this 2-core Zen 4. Per run, in one `bench kernel` call each: AVX-512 f32 and
# bf16 K/V with bf16 Q·Kᵀ, then bf16 K/V with exact Q (the default) — the 16 rows of the issue's
# grid, each the median of 3 repeats; then the accuracy of both bf16 modes on the benchmark
# shapes (`run --check`, N = 8192, D = 64 and 128, causal). Nothing else may run meanwhile.
#   bash benches/results/zen4-2026-12-03f/bf16.sh        (RUNS=3 by default; writes run1/.. here)
# Table: python3 benches/results/zen4-2026-12-03f/bf16.py benches/results/zen4-2026-12-03f/run*
set -u
cd "$(dirname "$0")/../../.."  # the repository root
B=${RINGATTN_BIN:-target/release/ringattn}
HERE=benches/results/zen4-2026-12-03f
$B info > $HERE/info.txt 2>&1
grid=(--isa avx512 --seq 8192,16384 --head-dim 64,128 --threads 1,2 --causal false,true --repeats 3)
for run in $(seq 1 ${RUNS:-3}); do
  OUT=$HERE/run$run
  mkdir -p $OUT
  echo "== run $run $(date +%T)"
  $B bench kernel "${grid[@]}" --dtype f32,bf16 --qk-dtype bf16 --json $OUT/kernel-qk-bf16.jsonl 2>>$OUT/err.log
  $B bench kernel "${grid[@]}" --dtype bf16 --qk-dtype f32 --json $OUT/kernel-qk-f32.jsonl 2>>$OUT/err.log
done
echo "== accuracy $(date +%T)"
for qk in f32 bf16; do
  for d in 64 128; do
    $B run --workers 1 --threads 2 --seq 8192 --heads 8 --head-dim $d --causal --dtype bf16 \
      --qk-dtype $qk --isa avx512 --check --json - >> $HERE/check.jsonl 2>>$HERE/err.log
  done
done
echo "== done $(date +%T)"
