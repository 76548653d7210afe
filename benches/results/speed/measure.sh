#!/usr/bin/env bash
# Decode before/after the packed projections, interleaved with llama.cpp (same GGUF, prompt,
# 2 threads), at 3,072 and 8,192 prompt tokens, P = 1 and 2 local ranks; three rounds.
# Usage (repo root, release build): BIN=target/release/ringattn bash benches/results/speed/measure.sh DIR
set -euo pipefail
BIN="${BIN:-target/release/ringattn}"
OUT="${1:-benches/results/speed/session}"
for round in 1 2 3; do
  "$BIN" bench model --context 3072,8192 --workers 1,2 --max-tokens 32 --llamacpp \
    --out "$OUT/r$round-packed" --no-plot
  "$BIN" bench model --context 3072,8192 --workers 1,2 --max-tokens 32 --dense-decode \
    --out "$OUT/r$round-dense" --no-plot
done
