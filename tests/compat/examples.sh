#!/usr/bin/env bash
# Starts MetaStore (N members, one gateway each) and runs, against all its gateways, the
# requirements' acceptance steps (tests/compat/acceptance, Go clientv3) and every example in
# examples/, each example's output compared with its expected.txt. Prints PASS/FAIL per check
# and a final "N passed, M failed" line.
#
# usage: tests/compat/examples.sh [--members 1|3] [--engine memory|rocksdb] [--bin-dir DIR]
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
compat_args "$@"
command -v go >/dev/null || { echo "missing go (apt-get install -y golang-go golang-etcd-server-dev)" >&2; exit 2; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(cd "$BIN_DIR/.." && pwd)}

start_metastore "$MEMBERS"
export ETCD_ENDPOINTS=$MS_ENDPOINTS

# The acceptance program prints its own PASS/FAIL lines.
mkdir -p "$CARGO_TARGET_DIR/go"
if GO111MODULE=off GOPATH=/usr/share/gocode go build -o "$CARGO_TARGET_DIR/go/acceptance" \
  "$HERE/acceptance/main.go"; then
  out=$("$CARGO_TARGET_DIR/go/acceptance" 2>&1)
  echo "$out" | sed 's/^\(PASS\|FAIL\) /\1 acceptance: /'
  PASS=$((PASS + $(grep -c '^PASS' <<<"$out")))
  FAIL=$((FAIL + $(grep -c '^FAIL' <<<"$out")))
  grep -q '^PASS' <<<"$out" || { FAIL=$((FAIL+1)); echo "FAIL acceptance: no result"; echo "$out" | head; }
else
  FAIL=$((FAIL+1)); echo "FAIL acceptance: does not build"
fi

for example in go rust python curl; do
  got=$("$HERE/../../examples/run.sh" "$example" 2>&1)
  verdict "example $example" "$(cat "$HERE/../../examples/$example/expected.txt")" "$got"
done

echo "$PASS passed, $FAIL failed ($ENGINE, $MEMBERS members)"
[ "$FAIL" = 0 ]
