#!/usr/bin/env bash
# Runs every test: formatting and lints, unit and property tests, engine conformance,
# integration tests against real processes, the differential test against a real etcd, and
# the conformance report (etcdctl scripts, acceptance steps and examples; single member and 3
# members; both engines), and the container image with docker-compose.
set -eu
cd "$(dirname "$0")/.."
scripts/deps.sh --test
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/metastore-target}
# One profile for everything (see Cargo.toml): what is tested is what ships.
export METASTORE_BIN_DIR=$CARGO_TARGET_DIR/release
cargo fmt --all --check
cargo build --release --workspace --all-targets
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace
echo "== conformance: etcdctl against etcd, acceptance steps, examples; both engines, 1 and 3 members"
tests/compat/report.sh --bin-dir "$METASTORE_BIN_DIR"
echo "== the image and docker-compose.yml end to end (leader container killed while writing)"
tests/compose/run.sh --bin-dir "$METASTORE_BIN_DIR"
echo "== robustness: every fault kind on both engines, short mode, histories checked"
METASTORE_NO_BUILD=1 scripts/robustness.sh --short
