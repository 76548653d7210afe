#!/usr/bin/env bash
# Prefill and decode tokens/s of SmolLM2-135M through the ring beside llama.cpp: a wrapper of
# `ringattn bench model` (resumable DIR/results.jsonl, DIR/model.png/svg) with the release
# build. Measure on a quiet machine. Usage:
#   bash scripts/bench-model.sh [OUT_DIR]   (env: TOKENS="1024 2048 4096 8192" WORKERS="1 2"
#                                            LAYOUTS="striped" DECODE=32 LLAMACPP=1
#                                            MPI=1: P processes under mpirun instead of threads)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benches/results/model-$(date +%Y-%m-%d)}"
join() { echo "$1" | tr ' ' ','; }
TOKENS="$(join "${TOKENS:-1024 2048 4096 8192}")"
WORKERS="$(join "${WORKERS:-1 2}")"
LAYOUTS="$(join "${LAYOUTS:-striped}")"
DECODE="${DECODE:-32}"
bash scripts/get-model.sh >/dev/null
ARGS=(--context "$TOKENS" --workers "$WORKERS" --layouts "$LAYOUTS" --max-tokens "$DECODE" --out "$OUT")
FEATURES=()
if [[ "${MPI:-0}" == 1 ]]; then FEATURES=(--features mpi); ARGS+=(--backend mpi); fi
if [[ "${LLAMACPP:-1}" == 1 ]]; then ARGS+=(--llamacpp); fi
cargo build --release -p ringattn-cli "${FEATURES[@]}"
target/release/ringattn bench model "${ARGS[@]}"
