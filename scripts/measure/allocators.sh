#!/usr/bin/env bash
# The broker's allocator compared in one run: RF3 produce throughput
# (tests/kafka/bench_produce.py) with the shipped build (glibc's malloc) and
# the comparison build (`--features jemalloc`), alternating
# binaries round by round so neither always runs on the warmer machine.
# Extra variants are a label and environment settings for a binary, e.g.
#   VARIANTS="glibc-arena2:glibc:MALLOC_ARENA_MAX=2" scripts/measure/allocators.sh
# ROUNDS (default 3) rounds; the variant `before` etc. can be any binary
# copied to target/allocators/leaderhook-<name>; STORAGE=1 also runs bench_storage.py (RSS after
# 0.5 and 2 GiB, restart time) once per variant.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/allocators
mkdir -p "$out"
# NO_BUILD=1 measures the binaries built by an earlier run.
if [[ -z "${NO_BUILD:-}" ]]; then
    cargo build --release -p leaderhook --bin leaderhook --features jemalloc
    cp target/release/leaderhook "$out/leaderhook-jemalloc"
    cargo build --release -p leaderhook --bin leaderhook
    cp target/release/leaderhook "$out/leaderhook-glibc"
    # Leave target/release/leaderhook as shipped.
    cargo build --release -p leaderhook --bin leaderhook
fi

variants=("jemalloc:jemalloc:" "glibc:glibc:")
for v in ${VARIANTS:-}; do variants+=("$v"); done

run() { # label binary env bench
    local label=$1 bin=$2 env=$3 bench=$4
    echo "== $label ($bench)"
    env $env LEADERHOOK_BIN="$out/leaderhook-$bin" python3 "tests/kafka/$bench" | tail -1 | sed "s/^/$label: /"
}

for round in $(seq "${ROUNDS:-3}"); do
    # Alternate the order of the variants each round.
    if ((round % 2)); then order=("${variants[@]}"); else
        order=(); for ((i = ${#variants[@]} - 1; i >= 0; i--)); do order+=("${variants[i]}"); done
    fi
    for v in "${order[@]}"; do
        IFS=: read -r label bin env <<<"$v"
        run "$label" "$bin" "$env" bench_produce.py
    done
done
if [[ "${STORAGE:-0}" == 1 ]]; then
    for v in "${variants[@]}"; do
        IFS=: read -r label bin env <<<"$v"
        run "$label" "$bin" "$env" bench_storage.py
    done
fi
