#!/usr/bin/env bash
# Everything CI checks: formatting, lints (warnings are errors) and every test of the workspace.
# `--all-features` includes the MPI backend, so MPI (MPICH) and libclang are installed first
# (scripts/install-mpi.sh does nothing when they are present); the MPI tests run under mpirun.
# scripts/get-model.sh fetches the model the ringattn-model tests use (once; idempotent).
# Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-mpi.sh
# The model tests need SmolLM2's GGUF (cached in ~/.cache/ringattn/models; CI caches that folder).
bash scripts/get-model.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo test --workspace --all-features
