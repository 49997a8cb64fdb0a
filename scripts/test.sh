#!/usr/bin/env bash
# Every test: formatting, lints, then the whole workspace's tests (which
# build the plugins they use for wasm32-wasip2 themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
