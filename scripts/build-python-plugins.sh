#!/usr/bin/env bash
# Builds the Python plugins (plugins/<name>/app.py) into components with
# componentize-py, against the newest contract line, to
# target/wasm-guests/python/<name>.wasm. The tests build them the same way
# (host/hooks/src/guest_build.rs); this is the command for plugin authors.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/wasm-guests/python
mkdir -p "$out"
for app in plugins/*/app.py; do
    dir=$(dirname "$app")
    name=$(basename "$dir")
    componentize-py -d wit/since_v0.2.0 -w leadership-hook componentize \
        -p "$dir" app -o "$out/${name//-/_}.wasm"
    echo "built $out/${name//-/_}.wasm"
done
