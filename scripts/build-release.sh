#!/usr/bin/env bash
# Sourced by the benchmark scripts (from the repository root): builds target/release/ringattn
# with the features of the binary it replaces — with MPI when mpicc exists, so a later `launch`
# or `--backend mpi` keeps working — and sets $bin to it.
mpi_features=$(command -v mpicc >/dev/null 2>&1 && echo "--features mpi" || true)
# shellcheck disable=SC2086 # empty or one word
cargo build --release -q $mpi_features
bin=target/release/ringattn
