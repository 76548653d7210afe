#!/usr/bin/env bash
# Everything CI checks: formatting, lints (warnings are errors) and every test of the workspace.
# Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo test --workspace --all-features
