#!/usr/bin/env bash
# The hybrid-core scheduler (issue #5): N=8192 attention on 2 pinned threads, CALLS calls per
# scheduler (interleaved), in three situations; prints one JSON object per line:
#   1. thread on CPU 1 slowed 2x (--slow-cores 1:2, the testing aid),
#   2. a busy neighbour: the bench's own spinning process (own session) pinned to CPU 1,
#   3. an idle machine (hybrid's overhead against static).
# Usage: bash scripts/bench-sched.sh [CALLS]
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-50}
source scripts/build-release.sh
"$bin" bench sched --calls "$calls" --slow-cores 1:2 --json -
"$bin" bench sched --calls "$calls" --busy-neighbour 1 --json -
"$bin" bench sched --calls "$calls" --json -
