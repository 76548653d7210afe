#!/usr/bin/env bash
# Everything CI checks: formatting, lints (warnings are errors), every test of the workspace and
# the library's examples (the MPI one under mpirun -n 3).
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
# No unused dependencies (cargo-machete from crates.io), API docs without warnings.
command -v cargo-machete > /dev/null || cargo install cargo-machete --locked
cargo machete
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features
# --all-features builds the ringattn binary the tests run with MPI, so the SLURM tests
# (launcher/tests/slurm.rs) can submit it: they start a one-node SLURM with
# scripts/slurm-local.sh (needs root and apt-get) and fail under CI=true when it cannot start.
cargo test --workspace --all-features --no-fail-fast
cargo run --release --example ring_attention
cargo run --release --example layer_loop
cargo build --release --features mpi -p ringattn --example mpi_ring
mpirun -n 3 target/release/examples/mpi_ring
