#!/usr/bin/env bash
# Runs every test: formatting and lints, unit and property tests, engine conformance,
# integration tests against real processes, the differential test against a real etcd, and
# the etcdctl conformance scripts (single member, and 3 members) on both engines.
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
for engine in memory rocksdb; do
  echo "== etcdctl conformance ($engine)"
  tests/compat/etcdctl.sh --engine "$engine" --bin-dir "$METASTORE_BIN_DIR"
  echo "== etcdctl cluster conformance, 3 members ($engine)"
  tests/compat/cluster.sh --engine "$engine" --bin-dir "$METASTORE_BIN_DIR"
done
echo "== robustness: every fault kind on both engines, short mode, histories checked"
METASTORE_NO_BUILD=1 scripts/robustness.sh --short
