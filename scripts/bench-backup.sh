#!/usr/bin/env bash
# Backup and defragment figures, MetaStore next to a real etcd (release builds, one member
# each, same machine, same load): KEYS keys (default 1,000,000 of 100-byte values) are loaded,
# then
#   - `etcdctl snapshot save`: time and file size;
#   - restore: `etcdctl snapshot restore` for etcd, `metastore-ctl snapshot restore` (both
#     engines) for MetaStore: time;
#   - put latency (metastore-bench put, 16 clients) with and without `etcdctl defrag` running
#     in a loop, after a tenth of the keys were deleted and compacted away.
#
# usage: scripts/bench-backup.sh [KEYS]      (results on stdout, one line per figure)
set -eu
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/metastore-target}
BIN=$CARGO_TARGET_DIR/release
[ -n "${METASTORE_NO_BUILD:-}" ] || cargo build --release --workspace --bins
KEYS=${1:-1000000}
. tests/compat/lib.sh
export ETCDCTL_API=3

elapsed() { # runs "$@" quietly, prints seconds
  local start end
  start=$(date +%s.%N)
  "$@" >"$WORK/last.log" 2>&1 || { cat "$WORK/last.log" >&2; return 1; }
  end=$(date +%s.%N)
  python3 -c "print(f'{$end - $start:.1f}')"
}

# figures NAME ENDPOINT: load, snapshot, restore(s), defrag latency.
figures() {
  local name=$1 ep=$2
  local out
  out=$("$BIN/metastore-bench" --endpoints "http://127.0.0.1:$ep" \
    --clients 8 --key-size 8 --val-size 100 --total "$KEYS" fill)
  echo "$name: load: $out"
  local snap="$WORK/$name.db"
  out=$(elapsed etcdctl --endpoints "127.0.0.1:$ep" --command-timeout=600s snapshot save "$snap")
  echo "$name: snapshot save: $out s, $(stat -c %s "$snap") bytes"
  if [ "$name" = etcd ]; then
    out=$(elapsed etcdctl snapshot restore "$snap" --data-dir "$WORK/etcd-restored")
    echo "$name: etcdctl snapshot restore: $out s"
  else
    for engine in rocksdb memory; do
      out=$(elapsed "$BIN/metastore-ctl" snapshot restore "$snap" \
        --data-dir "$WORK/$name-restored-$engine" --engine $engine)
      echo "$name: metastore-ctl snapshot restore --engine $engine: $out s"
    done
  fi
  etcdctl --endpoints "127.0.0.1:$ep" --command-timeout=300s del 000 --prefix >/dev/null
  local rev
  rev=$(etcdctl --endpoints "127.0.0.1:$ep" endpoint status -w json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])')
  etcdctl --endpoints "127.0.0.1:$ep" --command-timeout=300s compaction --physical "$rev" >/dev/null
  local put=("$BIN/metastore-bench" --endpoints "http://127.0.0.1:$ep" --clients 16
    --key-size 8 --val-size 100 --key-space 100000 --total 20000 put)
  out=$("${put[@]}")
  echo "$name: puts, no defrag: $out"
  ( while :; do etcdctl --endpoints "127.0.0.1:$ep" --command-timeout=300s defrag >/dev/null 2>&1; done ) &
  local loop=$!
  sleep 0.5
  out=$("${put[@]}")
  echo "$name: puts, defrag in a loop: $out"
  kill $loop 2>/dev/null || true; wait $loop 2>/dev/null || true
}

EP=$(port); EPP=$(port)
etcd --name ref --data-dir "$WORK/etcd" --quota-backend-bytes 8589934592 \
  --listen-client-urls http://127.0.0.1:$EP --advertise-client-urls http://127.0.0.1:$EP \
  --listen-peer-urls http://127.0.0.1:$EPP --initial-advertise-peer-urls http://127.0.0.1:$EPP \
  --initial-cluster ref=http://127.0.0.1:$EPP >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
wait_port $EP
figures etcd $EP
kill "${PIDS[-1]}" || true

for engine in rocksdb memory; do
  SP=$(port); PP=$(port); MP=$(port)
  "$BIN/metastore-storaged" --name s1 --engine $engine --data-dir "$WORK/ms-$engine" \
    --listen-storage-urls http://127.0.0.1:$SP --listen-peer-urls http://127.0.0.1:$PP \
    --initial-advertise-peer-urls http://127.0.0.1:$PP --initial-cluster s1=http://127.0.0.1:$PP \
    >"$WORK/storaged-$engine.log" 2>&1 &
  PIDS+=($!)
  wait_port $SP
  "$BIN/metastore-gateway" --listen-client-urls http://127.0.0.1:$MP \
    --storage-endpoints http://127.0.0.1:$SP >"$WORK/gateway-$engine.log" 2>&1 &
  PIDS+=($!)
  wait_port $MP
  for _ in $(seq 1 100); do etcdctl --endpoints 127.0.0.1:$MP put ready 1 >/dev/null 2>&1 && break; sleep 0.1; done
  figures "metastore-$engine" $MP
  kill "${PIDS[-1]}" "${PIDS[-2]}" || true
done
