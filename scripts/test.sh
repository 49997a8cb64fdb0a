#!/usr/bin/env bash
# Every test: formatting, lints, then the whole workspace's tests (which
# build the plugins they use for wasm32-wasip2 themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Every doc link resolves, private items included (the crate docs of host/
# and host/hooks link each step of ARCHITECTURE.md's event path, so a renamed
# function fails here). Reuses clippy's dependency metadata: only the
# workspace's own crates are documented (about 25-45 s on a warm target).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items
# The dependency policy (deny.toml): banned crates, licences, sources.
# Advisories are not checked here: that needs the RustSec database from
# GitHub, which CI cannot reach (README "Dependency checks"). Built without
# its default features (the database fetching): about 3.5 minutes.
if ! cargo deny --version >/dev/null 2>&1; then
    cargo install cargo-deny --locked --version 0.20.2 --no-default-features
fi
cargo deny check bans licenses sources
# host/tests/operations.rs reads the topic sink back with kcat.
if ! command -v kcat >/dev/null 2>&1; then
    apt-get update && apt-get install -y kcat
fi
# The Python example plugin (plugins/audit-py) is built by its tests with
# componentize-py (host/harness/tests/python_plugin.rs): one wheel from
# PyPI, pinned (guest_build::COMPONENTIZE_PY_VERSION).
python3 -m pip install --quiet componentize-py==0.25.1
cargo test --workspace
# Every Rust benchmark once, in its smoke mode (no `--bench` on the command
# line): a few iterations on the debug build, figures printed, not judged;
# a figure that fails fails the run.
cargo test --workspace --bench '*'

# The Kafka front end, judged by real clients (tests/kafka): confluent-kafka,
# kafka-python, aiokafka, kafkajs (tests/kafka/js, pinned in its
# package.json) and kcat against loopback clusters of the debug binary that
# `cargo test` built (its integration tests build target/debug/leaderhook).
python3 -m pip install --quiet -r tests/kafka/requirements.txt
if ! command -v npm >/dev/null 2>&1; then
    apt-get update && apt-get install -y nodejs npm
fi
npm ci --prefix tests/kafka/js --no-audit --no-fund
if ! command -v kcat >/dev/null 2>&1; then
    apt-get update && apt-get install -y kcat
fi
# Every test bounded (pytest-timeout): a hung client or cluster fails its
# test, not the CI run. Given here, not in a pytest.ini under tests/kafka:
# with such a file (which moves pytest's rootdir) the storage test's
# follower-catch-up-by-snapshot failed every run, without it it passes; why
# is not understood yet.
python3 -m pytest -q -p no:warnings --timeout 600 tests/kafka
# The Python benchmarks in their smoke mode, likewise.
python3 tests/kafka/bench_produce.py --smoke
python3 tests/kafka/bench_storage.py --smoke
