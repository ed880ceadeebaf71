#!/usr/bin/env bash
# Replication benchmarks (a benchmark run, not a test): put throughput on 1 and 3 members for
# both engines next to a real 3-member etcd, leader failover time, the catch-up time of a
# member that was down while 100,000 keys were written, and lease keep-alive throughput
# through one gateway (on 3 members, a gateway in front of a follower). Everything runs on
# this machine over loopback. Prints one line per figure.
#
# usage: scripts/bench-cluster.sh [--total N] [--clients N] [--catchup-keys N]
#                                 [--keepalive-clients "16 256"] [--only keepalive]
set -u
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/metastore-target}
B=$CARGO_TARGET_DIR/release
TOTAL=20000; CLIENTS=16; CATCHUP=100000; KA_CLIENTS="16 256"; ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keepalive-clients) KA_CLIENTS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --total) TOTAL=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --catchup-keys) CATCHUP=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
. tests/compat/lib.sh
export ETCDCTL_API=3
now_ms() { date +%s%3N; }

# start_ms ENGINE N: N storaged members + one gateway per member; sets MS_EPS, SPIDS, GWS.
start_ms() {
  local engine=$1 n=$2 i cluster=""
  declare -ga SPORT PPORT SPIDS GWS
  SPORT=(); PPORT=(); SPIDS=(); GWS=()
  for i in $(seq 1 $n); do SPORT[$i]=$(port); PPORT[$i]=$(port); GWS[$i]=$(port); done
  for i in $(seq 1 $n); do cluster="$cluster${cluster:+,}s$i=http://127.0.0.1:${PPORT[$i]}"; done
  MS_CLUSTER=$cluster; MS_ENGINE=$engine; MS_DIR=$WORK/ms-$engine-$n
  for i in $(seq 1 $n); do start_member $i; done
  MS_EPS=""
  for i in $(seq 1 $n); do
    wait_port ${SPORT[$i]}
    local eps="" j
    for j in $(seq 0 $((n - 1))); do eps="$eps${eps:+,}http://127.0.0.1:${SPORT[$(( (i - 1 + j) % n + 1 ))]}"; done
    "$B/metastore-gateway" --listen-client-urls http://127.0.0.1:${GWS[$i]} \
      --advertise-client-urls http://127.0.0.1:${GWS[$i]} --storage-endpoints "$eps" >/dev/null 2>&1 &
    PIDS+=($!); disown
    wait_port ${GWS[$i]}
    MS_EPS="$MS_EPS${MS_EPS:+,}http://127.0.0.1:${GWS[$i]}"
  done
  for _ in $(seq 1 100); do etcdctl --endpoints "${MS_EPS//http:\/\//}" put ready 1 >/dev/null 2>&1 && break; sleep 0.2; done
}
start_member() {
  local i=$1
  "$B/metastore-storaged" --name s$i --engine "$MS_ENGINE" --data-dir "$MS_DIR/s$i" \
    --listen-storage-urls http://127.0.0.1:${SPORT[$i]} --listen-peer-urls http://127.0.0.1:${PPORT[$i]} \
    --initial-advertise-peer-urls http://127.0.0.1:${PPORT[$i]} --initial-cluster "$MS_CLUSTER" \
    >>"$WORK/storaged-$i.log" 2>&1 &
  SPIDS[$i]=$!; PIDS+=($!); disown
}
stop_all() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; PIDS=(); sleep 0.5; }
put_bench() {
  [ "$ONLY" = keepalive ] && { echo skipped; return; }
  "$B/metastore-bench" --endpoints "$1" --clients $CLIENTS --total $TOTAL put 2>&1 | grep -E "req/s|throughput" | head -1
}
# keepalive_bench NAME ENDPOINT: renewals through one endpoint, for each client count.
keepalive_bench() {
  local c
  for c in $KA_CLIENTS; do
    echo "$1 keep-alive, $c clients: $("$B/metastore-bench" --endpoints "$2" --clients $c --total $((c * 2000)) keepalive 2>&1 | grep renewals | head -1)"
  done
}
# follower_endpoint EPS: one of the comma-separated endpoints whose member does not lead.
follower_endpoint() {
  etcdctl --endpoints "${1//http:\/\//}" endpoint status -w json | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    s = r["Status"]
    if s["header"]["member_id"] != s["leader"]:
        print("http://" + r["Endpoint"]); break'
}
# Index (1-based) of the member leading, from the gateways' status answers (retried until
# every gateway answers from its own member and one of them leads).
leader_index() {
  local out
  for _ in $(seq 1 100); do
    out=$(etcdctl --endpoints "${MS_EPS//http:\/\//}" endpoint status -w json 2>/dev/null | python3 -c '
import json, sys
try:
    rows = json.load(sys.stdin)
except ValueError:
    sys.exit()
for i, r in enumerate(rows, 1):
    s = r["Status"]
    if s["header"]["member_id"] == s["leader"]:
        print(i); break')
    [ -n "$out" ] && { echo "$out"; return; }
    sleep 0.2
  done
}
# Hex member id behind gateway I (its preferred member when healthy).
member_id_of() {
  etcdctl --endpoints 127.0.0.1:${GWS[$1]} endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["member_id"])'
}

# Real etcd, 3 members.
declare -a EC EPP
ETCD_CLUSTER=""
for i in 1 2 3; do EC[$i]=$(port); EPP[$i]=$(port); ETCD_CLUSTER="$ETCD_CLUSTER${ETCD_CLUSTER:+,}e$i=http://127.0.0.1:${EPP[$i]}"; done
for i in 1 2 3; do
  etcd --name e$i --data-dir "$WORK/etcd$i" \
    --listen-client-urls http://127.0.0.1:${EC[$i]} --advertise-client-urls http://127.0.0.1:${EC[$i]} \
    --listen-peer-urls http://127.0.0.1:${EPP[$i]} --initial-advertise-peer-urls http://127.0.0.1:${EPP[$i]} \
    --initial-cluster "$ETCD_CLUSTER" >/dev/null 2>&1 &
  PIDS+=($!); disown
done
for i in 1 2 3; do wait_port ${EC[$i]}; done
ETCD_EPS="http://127.0.0.1:${EC[1]},http://127.0.0.1:${EC[2]},http://127.0.0.1:${EC[3]}"
for _ in $(seq 1 100); do etcdctl --endpoints "${ETCD_EPS//http:\/\//}" put ready 1 >/dev/null 2>&1 && break; sleep 0.2; done
echo "etcd 3 members put: $(put_bench "$ETCD_EPS")"
keepalive_bench "etcd 3 members, via a follower" "$(follower_endpoint "$ETCD_EPS")"
stop_all
etcd --name e1 --data-dir "$WORK/etcd-single" --listen-client-urls http://127.0.0.1:${EC[1]} \
  --advertise-client-urls http://127.0.0.1:${EC[1]} --listen-peer-urls http://127.0.0.1:${EPP[1]} \
  --initial-advertise-peer-urls http://127.0.0.1:${EPP[1]} --initial-cluster e1=http://127.0.0.1:${EPP[1]} >/dev/null 2>&1 &
PIDS+=($!); disown
wait_port ${EC[1]}
for _ in $(seq 1 100); do etcdctl --endpoints 127.0.0.1:${EC[1]} put ready 1 >/dev/null 2>&1 && break; sleep 0.2; done
keepalive_bench "etcd 1 member" "http://127.0.0.1:${EC[1]}"
stop_all

for engine in memory rocksdb; do
  for n in 1 3; do
    start_ms $engine $n
    echo "metastore $engine $n member(s) put: $(put_bench "$MS_EPS")"
    if [ $n = 1 ]; then
      keepalive_bench "metastore $engine 1 member" "$MS_EPS"
    else
      keepalive_bench "metastore $engine 3 members, via a follower" "$(follower_endpoint "$MS_EPS")"
    fi
    if [ $n = 3 ] && [ "$ONLY" != keepalive ]; then
      # Failover: kill -9 the leader, then time until a put through another gateway succeeds.
      L=$(leader_index); other=$(( L % 3 + 1 ))
      kill -9 ${SPIDS[$L]}; t0=$(now_ms)
      until etcdctl --endpoints 127.0.0.1:${GWS[$other]} --command-timeout=1s put failover x >/dev/null 2>&1; do :; done
      echo "metastore $engine failover (kill -9 leader -> first acknowledged put): $(( $(now_ms) - t0 )) ms"
      start_member $L; wait_port ${SPORT[$L]}
      # Catch-up: stop a follower, write CATCHUP keys, restart it, time until it has applied
      # everything the leader has.
      sleep 2; L=$(leader_index); F=$(( L % 3 + 1 ))
      FID=$(member_id_of $F)
      kill -9 ${SPIDS[$F]}
      "$B/metastore-bench" --endpoints "http://127.0.0.1:${GWS[$L]}" --clients $CLIENTS --total $CATCHUP --key-space $CATCHUP put >"$WORK/catchup-bench.log" 2>&1 \
        || { echo "catch-up load failed: $(tail -2 "$WORK/catchup-bench.log")"; }
      target=$(etcdctl --endpoints 127.0.0.1:${GWS[$L]} endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["raftIndex"])')
      t0=$(now_ms); start_member $F
      # Only answers from the restarted member itself count (its gateway may still be
      # answering from another member right after the restart).
      until [ "$(etcdctl --endpoints 127.0.0.1:${GWS[$F]} --command-timeout=1s endpoint status -w json 2>/dev/null | FID=$FID python3 -c '
import json, os, sys
try:
    s = json.load(sys.stdin)[0]["Status"]
    print(s.get("raftAppliedIndex", 0) if str(s["header"]["member_id"]) == os.environ["FID"] else 0)
except Exception:
    print(0)')" -ge "$target" ]; do sleep 0.05; done
      echo "metastore $engine catch-up of a restarted member after $CATCHUP keys: $(( $(now_ms) - t0 )) ms (to raft index $target)"
    fi
    stop_all
  done
done
