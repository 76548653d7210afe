#!/usr/bin/env bash
# Session of 2026-12-03 (sixth): issue #16's kernel grid again on this 2-core Zen 4 with the
# binary of 4c09ff2 (kernel modules split; no kernel change since the fifth session), three runs
# into run1/..run3/
# here: each run is the third session's kernel.sh (AVX-512 f32 + bf16 K/V, AVX2 f32, N 8192 and
# 16384, each row the median of 5 repeats, then the run path vs the kernel), scheduler skipped.
# Nothing else may run meanwhile.
#   bash benches/results/zen4-2026-12-03g/grid.sh
# Table: python3 benches/results/zen4-2026-12-03e/runs.py benches/results/zen4-2026-12-03g/run*
set -u
cd "$(dirname "$0")/../../.."  # the repository root
HERE=benches/results/zen4-2026-12-03g
for run in $(seq 1 ${RUNS:-3}); do
  echo "== run $run $(date +%T)"
  OUT=$HERE/run$run SCHED=0 bash benches/results/zen4-2026-12-03d/kernel.sh
done
echo "== done $(date +%T)"
# before/ holds one earlier run of the same kernel with the binary of 8bf2cc3 (17:19–17:32 UTC).
