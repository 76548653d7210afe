#!/usr/bin/env bash
# Weak scaling on one workstation (local backend): N = SEQ × workers (tokens per worker fixed,
# so each worker's work grows ∝ workers: ideal time grows linearly), workers 1, 2, 4, ... up to
# twice the cores, every layout, causal. Re-running resumes where it stopped.
# Usage: bash scripts/scaling-weak.sh [OUT=scaling-weak] [SEQ=4096] [HEADS=8] [DIM=128]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-scaling-weak}
seq=${2:-4096}
heads=${3:-8}
dim=${4:-128}
cargo build --release -q
cores=$(nproc)
workers=1
p=2
while [ "$p" -le $((2 * cores)) ]; do workers="$workers,$p"; p=$((2 * p)); done
target/release/ringattn bench scaling --workers "$workers" --seq "$seq" --heads "$heads" \
  --head-dim "$dim" --causal --layout contiguous,striped,zigzag --mode weak --threads 1 --out "$out"
