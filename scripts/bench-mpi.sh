#!/usr/bin/env bash
# MPI vs local backend (issue #3) and ring overlap (issue #4): P=2, N=32768, H=8, D=128,
# non-causal and causal striped, REPEATS interleaved runs each; prints one JSON report per line.
# Usage: bash scripts/bench-mpi.sh [REPEATS]   (needs scripts/install-mpi.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${1:-3}
bash scripts/install-mpi.sh >/dev/null
cargo build --release --features mpi -q
bin=target/release/ringattn
job=(--seq "${SEQ:-32768}" --heads 8 --head-dim 128)
for i in $(seq "$repeats"); do
  for mask in "" "--causal --layout striped"; do
    # shellcheck disable=SC2086
    "$bin" run --backend local --workers 2 "${job[@]}" $mask --json -
    # shellcheck disable=SC2086
    mpirun -n 2 "$bin" run --backend mpi "${job[@]}" $mask --json -
  done
done
