#!/usr/bin/env bash
# Strong scaling on one workstation (local backend): fixed N, workers 1, 2, 4, ... up to twice
# the cores, every layout, causal; then the simulator's prediction for the same runs with this
# machine calibrated. Re-running resumes: finished runs in OUT/results.jsonl are skipped.
# Usage: bash scripts/scaling-strong.sh [OUT=scaling-strong] [SEQ=16384] [HEADS=8] [DIM=128]
# Writes OUT/results.jsonl, OUT/scaling.png/.svg, OUT/balance.png/.svg, OUT/simulated.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-scaling-strong}
seq=${2:-16384}
heads=${3:-8}
dim=${4:-128}
# The features of the binary this replaces: with MPI when mpicc exists (a later `launch`
# or `--backend mpi` keeps working).
mpi_features=$(command -v mpicc >/dev/null 2>&1 && echo "--features mpi" || true)
cargo build --release -q $mpi_features
bin=target/release/ringattn
cores=$(nproc)
workers=1
p=2
while [ "$p" -le $((2 * cores)) ]; do workers="$workers,$p"; p=$((2 * p)); done
"$bin" bench scaling --workers "$workers" --seq "$seq" --heads "$heads" --head-dim "$dim" \
  --causal --layout contiguous,striped,zigzag --mode strong --threads 1 --out "$out"
: > "$out/simulated.jsonl"
for p in ${workers//,/ }; do
  for layout in contiguous striped zigzag; do
    "$bin" simulate --workers "$p" --seq "$seq" --heads "$heads" --head-dim "$dim" --causal \
      --layout "$layout" --calibrate --cores "$cores" --link-gbps inf --latency-us 0 --json - \
      >> "$out/simulated.jsonl"
  done
done
echo "simulated: $out/simulated.jsonl"
