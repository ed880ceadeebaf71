#!/usr/bin/env bash
# Builds and runs a local 3-member cluster (configs/storaged-cluster-s{1,2,3}.yaml) with two
# gateways: 127.0.0.1:2379 (prefers s1) and 127.0.0.1:22379 (prefers s2). Ctrl-C stops all.
# Try: etcdctl --endpoints 127.0.0.1:2379,127.0.0.1:22379 endpoint status -w table
#      etcdctl --endpoints 127.0.0.1:2379 member list -w table
set -eu
cd "$(dirname "$0")/.."
scripts/deps.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/metastore-target}
cargo build --release --workspace --all-targets
BIN=$CARGO_TARGET_DIR/release
PIDS=""
trap 'kill $PIDS 2>/dev/null' EXIT
for i in 1 2 3; do
  "$BIN/metastore-storaged" --config "configs/storaged-cluster-s$i.yaml" &
  PIDS="$PIDS $!"
done
for port in 21390 22390 23390; do
  for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
"$BIN/metastore-gateway" --config configs/gateway-cluster-b.yaml &
PIDS="$PIDS $!"
echo "3 members up; gateways on http://127.0.0.1:2379 and http://127.0.0.1:22379" >&2
"$BIN/metastore-gateway" --config configs/gateway-cluster-a.yaml
