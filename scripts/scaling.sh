#!/usr/bin/env bash
# Scaling on one workstation (local backend), MODE strong (fixed N = SEQ) or weak (N = SEQ ×
# workers: tokens per worker fixed, so ideal time grows linearly): workers 1, 2, 4, ... up to
# twice the cores, every layout, causal; then the simulator's prediction for the same runs with
# this machine calibrated. Re-running resumes: finished runs in OUT/results.jsonl are skipped.
# Usage: bash scripts/scaling.sh MODE OUT SEQ HEADS DIM (scaling-strong.sh, scaling-weak.sh)
# Writes OUT/results.jsonl, OUT/scaling.png/.svg, OUT/balance.png/.svg, OUT/simulated.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=$1 out=$2 seq=$3 heads=$4 dim=$5
source scripts/build-release.sh
cores=$(nproc)
workers=1
p=2
while [ "$p" -le $((2 * cores)) ]; do workers="$workers,$p"; p=$((2 * p)); done
"$bin" bench scaling --workers "$workers" --seq "$seq" --heads "$heads" --head-dim "$dim" \
  --causal --layout contiguous,striped,zigzag --mode "$mode" --threads 1 --out "$out"
: > "$out/simulated.jsonl"
for p in ${workers//,/ }; do
  n=$seq
  if [ "$mode" = weak ]; then n=$((seq * p)); fi
  for layout in contiguous striped zigzag; do
    "$bin" simulate --workers "$p" --seq "$n" --heads "$heads" --head-dim "$dim" --causal \
      --layout "$layout" --calibrate --cores "$cores" --link-gbps inf --latency-us 0 --json - \
      >> "$out/simulated.jsonl"
  done
done
echo "simulated: $out/simulated.jsonl"
