#!/usr/bin/env bash
# The hybrid-core scheduler (issue #5): N=8192 attention on 2 pinned threads, CALLS calls per
# scheduler (interleaved), in three situations; prints one JSON object per line:
#   1. thread on CPU 1 slowed 2x (--slow-cores 1:2, the testing aid),
#   2. a real busy loop pinned to CPU 1 (a noisy neighbour; needs taskset),
#   3. an idle machine (hybrid's overhead against static).
# Usage: bash scripts/bench-sched.sh [CALLS]
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-50}
# The features of the binary this replaces: with MPI when mpicc exists (a later `launch`
# or `--backend mpi` keeps working).
mpi_features=$(command -v mpicc >/dev/null 2>&1 && echo "--features mpi" || true)
cargo build --release -q $mpi_features
bin=target/release/ringattn
"$bin" bench sched --calls "$calls" --slow-cores 1:2 --json -
taskset -c 1 sh -c 'while :; do :; done' &
busy=$!
trap 'kill $busy 2>/dev/null || true' EXIT
"$bin" bench sched --calls "$calls" --json - | sed 's/"slow_cores":null/"slow_cores":"busy loop on cpu 1"/'
kill "$busy"
wait "$busy" 2>/dev/null || true
"$bin" bench sched --calls "$calls" --json -
