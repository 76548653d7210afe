#!/usr/bin/env bash
# Session of 2026-12-03 (second), after the SIMD decode loops (9beefd6): the SmolLM2 grid again
# (2K/4K/8K x P 1, 2 x local with llama.cpp / mpirun, three rounds) on this 2-core Zen 4.
# Nothing else may run meanwhile. Needs target/release/ringattn built with --all-features (mpi)
# and llama-cpp-python 0.3.36.
#   bash benches/results/zen4-2026-12-03c/model.sh   (from anywhere; writes beside itself)
# Medians: python3 benches/results/zen4-2026-12-03b/medians.py benches/results/zen4-2026-12-03c
set -u
cd "$(dirname "$0")/../../.."  # the repository root
B=target/release/ringattn
OUT=benches/results/zen4-2026-12-03c
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
stamp done
