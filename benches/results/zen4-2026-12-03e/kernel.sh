#!/usr/bin/env bash
# Session of 2026-12-03 (fourth): issue #16 on this 2-core Zen 4 after K and V were packed in
# column blocks of the register tiles (aa0fa1a): the third session's kernel grid and run-path
# check, writing beside this file (OUT=DIR from the repository root for another run; run 2 and
# run 3 went to run2/ and run3/). Nothing else may run meanwhile. The scheduler is unchanged since
# zen4-2026-12-03d, so `bench sched` is skipped (SCHED=1 runs it too).
#   bash benches/results/zen4-2026-12-03e/kernel.sh
# Tables: python3 benches/results/zen4-2026-12-03e/runs.py DIR... (per run and median),
#         python3 benches/results/zen4-2026-12-03d/tables.py DIR (one run, with the run path).
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../../.."  # the repository root
OUT=${OUT:-benches/results/zen4-2026-12-03e} SCHED=${SCHED:-0} \
    exec bash benches/results/zen4-2026-12-03d/kernel.sh
