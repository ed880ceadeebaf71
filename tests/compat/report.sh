#!/usr/bin/env bash
# The conformance report: on both engines, the etcdctl conformance against a real etcd on one
# member and on three (etcdctl.sh), the cluster and maintenance commands on three (cluster.sh),
# and the acceptance steps plus every example on one member and on three (examples.sh). Writes one PASS/FAIL table (engine × topology × suite)
# with every failed check listed to REPORT (default $CARGO_TARGET_DIR/compat-report.md), prints it,
# and exits 1 if anything failed.
#
# usage: tests/compat/report.sh [--bin-dir DIR] [--report FILE]
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BIN_DIR=${METASTORE_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
REPORT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) BIN_DIR=$2; shift 2 ;;
    --report) REPORT=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
REPORT=${REPORT:-$(cd "$BIN_DIR/.." && pwd)/compat-report.md}
LOGS=$(mktemp -d)
rows=""; failures=""; bad=0

run() { # engine, topology, suite, command...
  local engine=$1 topology=$2 suite=$3; shift 3
  local log="$LOGS/$engine-$topology-$suite.log" start pass fail verdict
  start=$(date +%s)
  echo "== $suite, $engine, $topology" >&2
  "$@" --engine "$engine" --bin-dir "$BIN_DIR" >"$log" 2>&1
  local rc=$?
  cat "$log" >&2
  pass=$(grep -c '^PASS' "$log"); fail=$(grep -c '^FAIL' "$log")
  verdict=PASS
  if [ "$rc" != 0 ] || [ "$fail" != 0 ] || [ "$pass" = 0 ]; then
    verdict=FAIL; bad=1
    failures="$failures\n### $suite, $engine, $topology (exit $rc)\n\n\`\`\`\n$(grep -A8 '^FAIL' "$log" | head -60)\n$(tail -3 "$log")\n\`\`\`\n"
  fi
  rows="$rows| $engine | $topology | $suite | $pass | $fail | $(( $(date +%s) - start )) s | **$verdict** |\n"
}

for engine in memory rocksdb; do
  run "$engine" "1 member" "etcdctl vs etcd 3.4" "$HERE/etcdctl.sh" --members 1
  run "$engine" "3 members" "etcdctl vs etcd 3.4" "$HERE/etcdctl.sh" --members 3
  run "$engine" "3 members" "cluster and maintenance vs etcd 3.4" "$HERE/cluster.sh"
  run "$engine" "1 member" "acceptance + examples" "$HERE/examples.sh" --members 1
  run "$engine" "3 members" "acceptance + examples" "$HERE/examples.sh" --members 3
done

{
  echo "# Conformance report"
  echo
  echo "Commit $(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u '+%Y-%m-%d %H:%M UTC'), produced by \`tests/compat/report.sh\`."
  echo
  echo "| engine | topology | suite | passed | failed | time | verdict |"
  echo "|---|---|---|---|---|---|---|"
  printf '%b' "$rows"
  if [ "$bad" = 0 ]; then echo; echo "Every check passed."; else echo; echo "## Failures"; printf '%b' "$failures"; fi
} >"$REPORT"
rm -rf "$LOGS"
cat "$REPORT"
exit "$bad"
