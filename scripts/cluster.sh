#!/usr/bin/env bash
# The main job: build leaderhook (the default plugin is compiled to wasm and
# embedded on the way) and run a 3-node loopback cluster in the foreground,
# configs and data in ./cluster. Ctrl-C stops every node.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet -p leaderhook
exec target/release/leaderhook cluster up --dir cluster "$@"
