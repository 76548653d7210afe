#!/usr/bin/env bash
# Prefill and decode tokens/s of SmolLM2-135M through the ring, local ranks as threads:
# prompts of {2K, 4K, 8K} tokens (README.md + BENCHMARKS.md repeated) × P × layouts, one JSON
# report per line in $OUT/results.jsonl (resumable: a line already there is not re-run).
# Measure on a quiet machine. Usage:
#   bash scripts/bench-model.sh [OUT_DIR]   (env: TOKENS="2048 4096 8192" WORKERS="1 2"
#                                            LAYOUTS="striped zigzag contiguous" THREADS=... DECODE=32
#                                            BIN=path/to/built/generate-example
#                                            MPI=1: P processes under mpirun instead of threads)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benches/results/model-$(date +%Y-%m-%d)}"
TOKENS="${TOKENS:-2048 4096 8192}"
WORKERS="${WORKERS:-1 2}"
LAYOUTS="${LAYOUTS:-striped zigzag contiguous}"
CORES="$(nproc)"
DECODE="${DECODE:-32}"
mkdir -p "$OUT"
bash scripts/get-model.sh >/dev/null
# BIN: an already built example (e.g. a quick check with the test profile's build).
MPI="${MPI:-0}"
FEATURES=()
if [[ "$MPI" == 1 ]]; then FEATURES=(--features mpi); fi
if [[ -z "${BIN:-}" ]]; then
  cargo build --release -p ringattn-model "${FEATURES[@]}" --example generate
  BIN=target/release/examples/generate
fi
PROMPT="$OUT/prompt.txt"
cat README.md BENCHMARKS.md > "$PROMPT"
touch "$OUT/results.jsonl"
for n in $TOKENS; do
  for p in $WORKERS; do
    for layout in $LAYOUTS; do
      if [[ "$p" == 1 && "$layout" != "$(echo $LAYOUTS | cut -d' ' -f1)" ]]; then continue; fi
      key="\"tokens\":$n,\"workers\":$p,\"mpi\":$MPI,\"layout\":\"$layout\""
      if grep -qF "$key" "$OUT/results.jsonl"; then continue; fi
      threads="${THREADS:-$(( CORES / p > 0 ? CORES / p : 1 ))}"
      if [[ "$MPI" == 1 ]]; then run=(mpirun -n "$p" "$BIN" --mpi); else run=("$BIN" --workers "$p"); fi
      report="$("${run[@]}" --prompt-file "$PROMPT" --prompt-tokens "$n" \
        --threads "$threads" --layout "$layout" --max-tokens "$DECODE" --ignore-eos 2>&1 >/dev/null \
        | python3 -c 'import json,sys; print(json.dumps(json.loads(sys.stdin.read())))')"
      echo "{$key,\"threads_per_rank\":$threads,\"report\":$report}" >> "$OUT/results.jsonl"
      echo "done: $n tokens, P=$p, $layout"
    done
  done
done
