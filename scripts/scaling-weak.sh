#!/usr/bin/env bash
# Weak scaling on one workstation (local backend): N = SEQ × workers, workers 1, 2, 4, ... up to
# twice the cores, every layout, causal; then the simulator's prediction (see scripts/scaling.sh).
# Usage: bash scripts/scaling-weak.sh [OUT=scaling-weak] [SEQ=4096] [HEADS=8] [DIM=128]
set -euo pipefail
exec bash "$(dirname "$0")/scaling.sh" weak "${1:-scaling-weak}" "${2:-4096}" "${3:-8}" "${4:-128}"
