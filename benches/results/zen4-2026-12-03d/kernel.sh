#!/usr/bin/env bash
# Session of 2026-12-03 (third): issue #16 on this 2-core Zen 4 after the grouped softmax,
# degree-5 exp2, 64-row blocks and the stealing hybrid scheduler. Nothing else may run meanwhile.
#   bash benches/results/zen4-2026-12-03d/kernel.sh   (from anywhere; writes beside itself)
# Each `bench kernel` row is the median of 5 repeats inside the bench (this VM is noisy).
# SEQS="8192" runs the kernel grid for those lengths only; OUT=DIR (from the repository root)
# writes there instead (later sessions' results); SCHED=0 skips `bench sched`.
set -u
cd "$(dirname "$0")/../../.."  # the repository root
B=${RINGATTN_BIN:-target/release/ringattn}
OUT=${OUT:-benches/results/zen4-2026-12-03d}
mkdir -p "$OUT"
stamp() { echo "== $* $(date +%T)"; }
$B info > $OUT/info.txt 2>&1
for seq in ${SEQS:-8192 16384}; do
  stamp "kernel avx512 N=$seq"
  $B bench kernel --isa avx512 --seq $seq --head-dim 64,128 --threads 1,2 --causal false,true \
    --dtype f32,bf16 --repeats 5 --json $OUT/kernel-avx512-$seq.jsonl 2>>$OUT/err.log
  stamp "kernel avx2 N=$seq"
  $B bench kernel --isa avx2 --seq $seq --head-dim 64,128 --threads 1,2 --causal false,true \
    --dtype f32 --repeats 5 --json $OUT/kernel-avx2-$seq.jsonl 2>>$OUT/err.log
done
stamp "run vs kernel"
for i in 1 2 3; do
  $B bench kernel --isa avx512 --seq 8192 --head-dim 128 --threads 2 --causal true --dtype f32 \
    --repeats 1 --json - >> $OUT/runpath-kernel.jsonl 2>>$OUT/err.log
  $B run --workers 1 --threads 2 --seq 8192 --heads 8 --head-dim 128 --causal --json - \
    >> $OUT/runpath-run.jsonl 2>>$OUT/err.log
done
[ "${SCHED:-1}" = 0 ] && { stamp done; exit 0; }
for case in idle slowed busy; do
  stamp "sched $case"
  extra=()
  [ $case = slowed ] && extra=(--slow-cores 1:2)
  [ $case = busy ] && extra=(--busy-neighbour)
  $B bench sched --calls 10 "${extra[@]}" --json $OUT/sched-$case.json > $OUT/sched-$case.txt 2>>$OUT/err.log
done
stamp done
