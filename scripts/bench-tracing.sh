#!/usr/bin/env bash
# What tracing costs (a benchmark run, not a test): the put benchmark against one memory
# member and one gateway, without tracing (A) and with traces sent at --otel-sampling-ratio
# 0.1 to a stand-in collector (B), interleaved A B B A so the machine's drift cancels out.
# Prints throughput, p99 and the server CPU (storaged + gateway) per 1,000 puts of each run.
#
# usage: scripts/bench-tracing.sh [--total N] [--clients N] [--ratio R] [--rounds N]
set -u
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/metastore-target}
B=$CARGO_TARGET_DIR/release
TOTAL=30000; CLIENTS=100; RATIO=0.1; ROUNDS=2
while [ $# -gt 0 ]; do
  case "$1" in
    --total) TOTAL=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --ratio) RATIO=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
. tests/compat/lib.sh
SINK=$(port)
"$B/metastore-bench" otlp-sink --port "$SINK" >"$WORK/sink.log" 2>&1 &
PIDS+=($!); disown
wait_port "$SINK"

# CPU seconds (user + system) a process has used.
cpu() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }

# run LABEL [FLAGS...]: a fresh member and gateway with FLAGS on both, then the put benchmark.
run() {
  local label=$1; shift
  local sp pp gp dir=$WORK/ms-$RANDOM
  sp=$(port); pp=$(port); gp=$(port)
  "$B/metastore-storaged" --name s1 --engine memory --data-dir "$dir" \
    --listen-storage-urls http://127.0.0.1:$sp --listen-peer-urls http://127.0.0.1:$pp \
    --initial-advertise-peer-urls http://127.0.0.1:$pp --initial-cluster s1=http://127.0.0.1:$pp \
    "$@" >"$WORK/storaged.log" 2>&1 &
  local spid=$!; PIDS+=($spid); disown
  wait_port "$sp"
  "$B/metastore-gateway" --listen-client-urls http://127.0.0.1:$gp \
    --storage-endpoints http://127.0.0.1:$sp "$@" >"$WORK/gateway.log" 2>&1 &
  local gpid=$!; PIDS+=($gpid); disown
  wait_port "$gp"
  for _ in $(seq 1 100); do etcdctl --endpoints 127.0.0.1:$gp put ready 1 >/dev/null 2>&1 && break; sleep 0.2; done
  local before after line
  before=$(echo "$(cpu $spid) + $(cpu $gpid)" | bc)
  line=$("$B/metastore-bench" --endpoints http://127.0.0.1:$gp --clients "$CLIENTS" --total "$TOTAL" put 2>&1 | grep "req/s")
  after=$(echo "$(cpu $spid) + $(cpu $gpid)" | bc)
  echo "$label: $line; server CPU $(echo "scale=1; ($after - $before) * 1000000 / $TOTAL" | bc) ms per 1000 puts"
  kill -9 $spid $gpid 2>/dev/null
  sleep 0.5
}

for _ in $(seq 1 "$ROUNDS"); do
  run "A no tracing"
  run "B tracing $RATIO" --otel-endpoint http://127.0.0.1:$SINK --otel-sampling-ratio "$RATIO"
  run "B tracing $RATIO" --otel-endpoint http://127.0.0.1:$SINK --otel-sampling-ratio "$RATIO"
  run "A no tracing"
done
sleep 2
echo "collector: $(tail -1 "$WORK/sink.log")"
