# Shared by the etcdctl conformance scripts: a scratch dir, process cleanup, free ports, output
# normalization and the PASS/FAIL verdict. Source it; it defines WORK, PIDS, PASS and FAIL.
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$WORK"; }
trap cleanup EXIT
# port: a port nobody listens on now, never handed out twice by this script. Ports come from below
# Linux's ephemeral range (32768 and up): a port-0 pick there can repeat, and an outgoing
# connection (a member dialing its peers) can take it before the server meant for it binds.
echo $(( 10000 + (RANDOM * 7 + $$) % 22000 )) >"$WORK/next-port"
port() {
  python3 - "$WORK/next-port" <<'PY'
import socket, sys
path = sys.argv[1]
n = int(open(path).read())
for _ in range(22000):
    candidate, n = n, 10000 + (n - 10000 + 1) % 22000
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", candidate))
    except OSError:
        continue
    finally:
        s.close()
    open(path, "w").write(str(n))
    print(candidate)
    break
else:
    sys.exit("no free port below the ephemeral range")
PY
}
wait_port() {
  for _ in $(seq 1 300); do
    (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; exit 1
}

PASS=0; FAIL=0
# Member-specific fields (and the client's own log timestamps and connection ids) differ
# between any two runs; everything else must not.
normalize() {
  python3 -c '
import json, re, sys
text = sys.stdin.read()
def scrub(o):
    if isinstance(o, dict):
        return {k: scrub(v) for k, v in o.items() if k not in ("cluster_id", "member_id", "raft_term", "ts", "target")}
    if isinstance(o, list):
        return [scrub(v) for v in o]
    return o
text = re.sub(r"127\.0\.0\.1:[0-9]+", "ENDPOINT", text)
text = re.sub(r"took = [0-9.]+[a-zµ]*s", "took = T", text)
# Lease ids are chosen by each server.
# etcdctl prints ids with %16x, so a shorter id comes with extra leading spaces.
text = re.sub(r"(?<= ) *\b[0-9a-f]{12,16}\b", "LEASE", text)
text = re.sub(r"\b[0-9a-f]{12,16}\b", "LEASE", text)
# Table columns are as wide as their widest cell, which differs with id and value lengths.
text = re.sub(r" {2,}\|", " |", text)
text = re.sub(r"\| {2,}", "| ", text)
text = re.sub(r"-{2,}", "--", text)
text = re.sub(r"\"(ID|lease)\": ?[0-9]+", "\"\\1\":0", text)
out = []
for line in text.splitlines():
    try:
        out.append(json.dumps(scrub(json.loads(line)), sort_keys=True))
    except ValueError:
        out.append(line)
print("\n".join(out))'
}
# verdict NAME WANT GOT [REGEX]: identical, non-empty output (matching REGEX if given).
verdict() {
  local name=$1 want=$2 got=$3 expect=${4:-}
  if [ "$want" != "$got" ]; then
    FAIL=$((FAIL+1)); echo "FAIL $name"
    diff <(echo "$want") <(echo "$got") | sed 's/^/    /' | head -20
  elif [ -z "$got" ]; then
    FAIL=$((FAIL+1)); echo "FAIL $name (no output)"
  elif [ -n "$expect" ] && ! grep -Eq "$expect" <<<"$got"; then
    FAIL=$((FAIL+1)); echo "FAIL $name (output does not match /$expect/)"; echo "$got" | sed 's/^/    /' | head -10
  else
    PASS=$((PASS+1)); echo "PASS $name"
  fi
}

# compat_args "$@": the conformance scripts' options (--engine, --bin-dir, --members) into
# ENGINE, BIN_DIR and MEMBERS, after checking that the tools and the built binaries are there.
compat_args() {
  ENGINE=rocksdb
  BIN_DIR=${METASTORE_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
  MEMBERS=1
  while [ $# -gt 0 ]; do
    case "$1" in
      --engine) ENGINE=$2; shift 2 ;;
      --bin-dir) BIN_DIR=$2; shift 2 ;;
      --members) MEMBERS=$2; shift 2 ;;
      *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
  done
  for tool in etcd etcdctl python3; do
    command -v $tool >/dev/null || { echo "missing $tool (apt-get install -y etcd-server etcd-client)" >&2; exit 2; }
  done
  [ -x "$BIN_DIR/metastore-storaged" ] || { echo "no binaries in $BIN_DIR: cargo build --release --workspace first" >&2; exit 2; }
}

# start_metastore N [--untouched]: N storaged members (engine $ENGINE, binaries in $BIN_DIR) and
# one gateway per member (gateway i prefers member i), on free ports; waits until a write of the
# key `ready` succeeds (with --untouched: until a linearizable read does, so the store stays at
# revision 1) and sets MS_ENDPOINTS to the gateways' host:port list (comma-separated).
start_metastore() {
  local n=$1 probe=(put ready 1) i j cluster="" storage
  [ "${2:-}" = --untouched ] && probe=(get ready)
  local -a sp pp gw
  for i in $(seq 1 "$n"); do
    sp[$i]=$(port); pp[$i]=$(port); gw[$i]=$(port)
    cluster="$cluster${cluster:+,}s$i=http://127.0.0.1:${pp[$i]}"
  done
  for i in $(seq 1 "$n"); do
    "$BIN_DIR/metastore-storaged" --name s$i --engine "$ENGINE" --data-dir "$WORK/ms$i" \
      --listen-storage-urls http://127.0.0.1:${sp[$i]} --listen-peer-urls http://127.0.0.1:${pp[$i]} \
      --initial-advertise-peer-urls http://127.0.0.1:${pp[$i]} --initial-cluster "$cluster" \
      >"$WORK/storaged$i.log" 2>&1 &
    PIDS+=($!); disown
  done
  MS_ENDPOINTS=""
  for i in $(seq 1 "$n"); do
    wait_port ${sp[$i]}
    storage=http://127.0.0.1:${sp[$i]}
    for j in $(seq 1 "$n"); do [ "$j" = "$i" ] || storage="$storage,http://127.0.0.1:${sp[$j]}"; done
    "$BIN_DIR/metastore-gateway" --listen-client-urls http://127.0.0.1:${gw[$i]} \
      --advertise-client-urls http://127.0.0.1:${gw[$i]} --storage-endpoints "$storage" \
      >"$WORK/gateway$i.log" 2>&1 &
    PIDS+=($!); disown
    MS_ENDPOINTS="$MS_ENDPOINTS${MS_ENDPOINTS:+,}127.0.0.1:${gw[$i]}"
  done
  for i in $(seq 1 "$n"); do wait_port ${gw[$i]}; done
  for _ in $(seq 1 100); do
    ETCDCTL_API=3 etcdctl --endpoints "$MS_ENDPOINTS" "${probe[@]}" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "MetaStore ($n members) did not serve: ${probe[*]}" >&2; exit 1
}
