#!/usr/bin/env bash
# Installs what building and testing leaderhook needs beyond rustup itself.
# Idempotent; sourced by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# rust-toolchain.toml pins the toolchain and lists the wasm32-wasip2 target;
# older rustup versions install the toolchain but not its targets, so ask.
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup target list --installed --toolchain "$toolchain" 2>/dev/null | grep -qx wasm32-wasip2; then
  rustup toolchain install "$toolchain" --profile minimal --component rustfmt,clippy --target wasm32-wasip2
fi
