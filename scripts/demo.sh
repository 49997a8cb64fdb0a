#!/usr/bin/env bash
# The main job: build leaderhook (the default plugin is compiled to wasm and
# embedded on the way) and run the scripted-election demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --release --quiet -p leaderhook -- demo "$@"
