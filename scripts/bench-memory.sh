#!/usr/bin/env bash
# Resident memory of storaged under a steady put load (a benchmark run, not a test): one member
# and one gateway (release builds), then ROUNDS rounds of PUTS puts of 256-byte values over
# KEYS distinct keys (100 clients); after each round prints the number of puts, storaged's
# RSS, its peak RSS so far (VmHWM: snapshots' transient copies show there) and its data size. Extra storaged flags and environment come from STORAGED_ARGS and
# STORAGED_ENV (for example STORAGED_ENV=MALLOC_ARENA_MAX=2).
#
# usage: scripts/bench-memory.sh [memory|rocksdb]   (env: ROUNDS=6 PUTS=50000 KEYS=100000)
set -eu
cd "$(dirname "$0")/.."
ENGINE=${1:-rocksdb}
ROUNDS=${ROUNDS:-6}; PUTS=${PUTS:-50000}; KEYS=${KEYS:-100000}
BIN=${METASTORE_BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/metastore-target}/release}
. tests/compat/lib.sh
SP=$(port); PP=$(port); GW=$(port)
env ${STORAGED_ENV:-} "$BIN/metastore-storaged" --name s1 --engine "$ENGINE" --data-dir "$WORK/ms" \
  --listen-storage-urls http://127.0.0.1:$SP --listen-peer-urls http://127.0.0.1:$PP \
  --initial-advertise-peer-urls http://127.0.0.1:$PP --initial-cluster s1=http://127.0.0.1:$PP \
  ${STORAGED_ARGS:-} >"$WORK/storaged.log" 2>&1 &
STORAGED=$!; PIDS+=($STORAGED)
wait_port $SP
"$BIN/metastore-gateway" --listen-client-urls http://127.0.0.1:$GW --storage-endpoints http://127.0.0.1:$SP \
  >"$WORK/gateway.log" 2>&1 &
PIDS+=($!)
wait_port $GW
rss() { awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$1/status; }
peak() { awk '/VmHWM/ {printf "%.0f", $2/1024}' /proc/$1/status; }
echo "engine $ENGINE, ${STORAGED_ENV:-default allocator settings} ${STORAGED_ARGS:-}"
echo "puts    RSS(MB)  peak(MB) db size(MB)"
printf '%-7s %-8s %s\n' 0 "$(rss $STORAGED)" "$(peak $STORAGED)"
for r in $(seq 1 "$ROUNDS"); do
  "$BIN/metastore-bench" --endpoints http://127.0.0.1:$GW --clients 100 --total "$PUTS" \
    --key-space "$KEYS" --val-size 256 put >/dev/null
  size=$(ETCDCTL_API=3 etcdctl --endpoints 127.0.0.1:$GW endpoint status -w json |
    python3 -c 'import json,sys; print(round(json.load(sys.stdin)[0]["Status"]["dbSize"]/1e6))')
  printf '%-7s %-8s %-8s %s\n' $((r * PUTS)) "$(rss $STORAGED)" "$(peak $STORAGED)" "$size"
done
