#!/usr/bin/env bash
# Strong scaling on one workstation (local backend): fixed N, workers 1, 2, 4, ... up to twice
# the cores, every layout, causal; then the simulator's prediction (see scripts/scaling.sh).
# Usage: bash scripts/scaling-strong.sh [OUT=scaling-strong] [SEQ=16384] [HEADS=8] [DIM=128]
set -euo pipefail
exec bash "$(dirname "$0")/scaling.sh" strong "${1:-scaling-strong}" "${2:-16384}" "${3:-8}" "${4:-128}"
