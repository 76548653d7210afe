#!/usr/bin/env bash
# Issue #14's grid on a quiet machine: SmolLM2-135M prefill/decode at 2K/4K/8K prompts, P = 1, 2,
# threads (local) and processes (mpirun), three rounds interleaved, llama.cpp in every local round.
# Needs target/release/ringattn built with --features mpi and llama-cpp-python 0.3.36.
# Medians: python3 benches/results/zen4-2026-12-03/medians.py benches/results/zen4-2026-12-03
set -u
cd "$(dirname "$0")/../../.."  # the repository root
B=target/release/ringattn
OUT=benches/results/zen4-2026-12-03
$B info > $OUT/info.txt 2>&1
for round in 1 2 3; do
  echo "== round $round local $(date +%T)"
  $B bench model --context 2048,4096,8192 --workers 1,2 --max-tokens 32 --llamacpp --no-plot \
    --out $OUT/model-local-r$round 2>>$OUT/err.log
  echo "== round $round mpi $(date +%T)"
  $B bench model --context 2048,4096,8192 --workers 1,2 --max-tokens 32 --backend mpi --no-plot \
    --out $OUT/model-mpi-r$round 2>>$OUT/err.log
done
echo "== done $(date +%T)"
