#!/usr/bin/env bash
# The foundation benchmark of BENCHMARKS.md: contiguous vs striped (and zigzag) on 2 workers,
# causal, N=16384, H=8, D=128, plus the single-worker baseline at N=8192.
# Usage: bash scripts/bench-layouts.sh [REPEATS]   (prints one JSON report per line)
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${1:-3}
source scripts/build-release.sh
for i in $(seq "$repeats"); do
  for layout in contiguous striped zigzag; do
    "$bin" run --workers 2 --threads 1 --seq 16384 --heads 8 --head-dim 128 --causal --layout "$layout" --json -
  done
  for causal in "" "--causal"; do
    "$bin" run --workers 1 --threads 1 --seq 8192 --heads 8 --head-dim 128 $causal --json -
    "$bin" run --workers 1 --threads 2 --seq 8192 --heads 8 --head-dim 128 $causal --json -
  done
done
