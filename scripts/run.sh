#!/usr/bin/env bash
# Builds and runs a single-node MetaStore: one storaged (rocksdb engine, data in
# data/rocksdb/default) and one gateway serving etcd clients on 127.0.0.1:2379.
# Ctrl-C stops both. Try: etcdctl --endpoints 127.0.0.1:2379 put foo bar
set -eu
cd "$(dirname "$0")/.."
scripts/deps.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/metastore-target}
cargo build --release --workspace --all-targets
BIN=$CARGO_TARGET_DIR/release
ENGINE=${METASTORE_ENGINE:-rocksdb}
"$BIN/metastore-storaged" --name default --engine "$ENGINE" &
STORAGED=$!
trap 'kill $STORAGED 2>/dev/null' EXIT
for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/2390) 2>/dev/null && break; sleep 0.1; done
echo "storaged up (engine $ENGINE); gateway on http://127.0.0.1:2379" >&2
"$BIN/metastore-gateway" --listen-client-urls http://127.0.0.1:2379 --storage-endpoints http://127.0.0.1:2390
