#!/usr/bin/env bash
# The image and docker-compose.yml, end to end: builds the image from the release binaries,
# brings the stack up (3 storaged + 2 gateways, health checks), runs etcdctl checks through both
# gateways, kills the storaged leader's container (SIGKILL) while a writer puts keys through both
# gateways, checks that every acknowledged put is readable through both gateways and that no key
# was invented, restarts the container, checks again once it is healthy, and brings everything
# down (volumes too). Prints PASS/FAIL per check; exits 1 on any FAIL.
#
# usage: tests/compose/run.sh [--bin-dir DIR]   (skipped with exit 0 where docker is missing,
# except under CI=true, where a missing docker is a failure)
set -u
cd "$(dirname "$0")/../.."
BIN_DIR=${METASTORE_BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/metastore-target}/release}
[ "${1:-}" = "--bin-dir" ] && BIN_DIR=$2
if ! command -v docker >/dev/null || ! command -v docker-compose >/dev/null || ! docker info >/dev/null 2>&1; then
  if [ "${CI:-}" = true ]; then echo "FAIL compose test: no docker engine or docker-compose here"; exit 1; fi
  echo "SKIP compose test: no docker engine or docker-compose here"; exit 0
fi
. tests/compat/lib.sh
export CARGO_TARGET_DIR=$(cd "$BIN_DIR/.." && pwd)
export ETCDCTL_API=3
PROJECT=metastore-compose-test
export METASTORE_GW1_PORT=$(port) METASTORE_GW2_PORT=$(port)
GW1=127.0.0.1:$METASTORE_GW1_PORT
GW2=127.0.0.1:$METASTORE_GW2_PORT
# The members' volumes: folders of their own under data/ (docker-compose.yml binds them).
export METASTORE_COMPOSE_DATA=data/compose-test-$$
mkdir -p "$METASTORE_COMPOSE_DATA"/s1 "$METASTORE_COMPOSE_DATA"/s2 "$METASTORE_COMPOSE_DATA"/s3
compose() { docker-compose -p "$PROJECT" "$@"; }
teardown() {
  compose down -v --remove-orphans >/dev/null 2>&1
  # The members' files belong to the image's user: removable here as root only.
  rm -rf "$METASTORE_COMPOSE_DATA" 2>/dev/null || echo "left behind: $METASTORE_COMPOSE_DATA (owned by uid 10001)"
  cleanup
}
trap teardown EXIT
ok() { PASS=$((PASS+1)); echo "PASS $1"; }
bad() { FAIL=$((FAIL+1)); echo "FAIL $1"; }
ctl() { etcdctl --command-timeout=5s "$@"; }
container() { compose ps -q "$1"; }
health() { docker inspect -f '{{.State.Health.Status}}' "$(container "$1")" 2>/dev/null; }
wait_healthy() { # services... (up to about 90 s)
  local s
  for _ in $(seq 1 90); do
    for s in "$@"; do [ "$(health "$s")" = healthy ] || { sleep 1; continue 2; }; done
    return 0
  done
  return 1
}

start=$(date +%s)
scripts/docker-image.sh --no-build || { bad "image build"; exit 1; }
ok "image built: $(docker image inspect -f '{{.Size}}' metastore:local | awk '{printf "%.0f MB", $1/1e6}'), user $(docker image inspect -f '{{.Config.User}}' metastore:local), stop signal $(docker image inspect -f '{{.Config.StopSignal}}' metastore:local)"
compose down -v --remove-orphans >/dev/null 2>&1
compose up -d || { bad "compose up"; exit 1; }
if wait_healthy s1 s2 s3 gw1 gw2; then ok "stack up, all 5 containers healthy ($(( $(date +%s) - start )) s after the image build began)"; else bad "stack not healthy: s1=$(health s1) s2=$(health s2) s3=$(health s3) gw1=$(health gw1) gw2=$(health gw2)"; compose logs --tail 20; exit 1; fi

for s in s1 s2 s3; do
  [ -n "$(ls -A "$METASTORE_COMPOSE_DATA/$s/member" 2>/dev/null)" ] || { bad "no member data in $METASTORE_COMPOSE_DATA/$s"; continue; }
done && ok "members keep their data in $METASTORE_COMPOSE_DATA/s1..s3"

# etcdctl through both gateways, each reading what the other wrote.
[ "$(ctl --endpoints $GW1 put compose/a 1)" = OK ] && [ "$(ctl --endpoints $GW2 get compose/a --print-value-only)" = 1 ] \
  && ok "put through gw1, get through gw2" || bad "put through gw1, get through gw2"
[ "$(ctl --endpoints $GW2 put compose/b 2)" = OK ] && [ "$(ctl --endpoints $GW1 get compose/b --print-value-only)" = 2 ] \
  && ok "put through gw2, get through gw1" || bad "put through gw2, get through gw1"
got=$(ctl --endpoints $GW1 txn <<<$'value("compose/a") = "1"\n\nput compose/a 10\n\nput compose/a 20\n' | head -1)
[ "$got" = SUCCESS ] && [ "$(ctl --endpoints $GW2 get compose/a --print-value-only)" = 10 ] && ok "txn through gw1" || bad "txn through gw1: $got"
[ "$(ctl --endpoints $GW1,$GW2 member list | wc -l)" = 3 ] && ok "member list: 3 members" || bad "member list"
# The watch starts at the next revision, so it sees the put whenever it is established.
REV=$(ctl --endpoints $GW1 get compose/a -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
etcdctl --endpoints $GW1 watch compose/w --rev $((REV + 1)) >"$WORK/watch" 2>&1 & WATCH=$!
ctl --endpoints $GW2 put compose/w seen >/dev/null
for _ in $(seq 1 100); do grep -q '^seen$' "$WORK/watch" && break; sleep 0.1; done
kill $WATCH 2>/dev/null
grep -q '^seen$' "$WORK/watch" && ok "watch on gw1 sees a put through gw2" || bad "watch on gw1 sees a put through gw2"
LEASE=$(ctl --endpoints $GW2 lease grant 60 | awk '{print $2}')
ctl --endpoints $GW1 put compose/leased x --lease "$LEASE" >/dev/null
ctl --endpoints $GW1 lease revoke "$LEASE" >/dev/null
[ -z "$(ctl --endpoints $GW2 get compose/leased)" ] && ok "lease granted on gw2, revoked on gw1, key gone" || bad "lease revoke"

# The leader: Status names its member id; member list maps ids to names (s1..s3).
leader_id=$(ctl --endpoints $GW1 endpoint status -w json | python3 -c 'import json,sys; print("%x" % json.load(sys.stdin)[0]["Status"]["leader"])')
LEADER=$(ctl --endpoints $GW1 member list | awk -F', ' -v id="$leader_id" '$1 == id {print $3}')
[ -n "$LEADER" ] && ok "leader is $LEADER" || { bad "no leader found (id $leader_id)"; exit 1; }

# A writer through both gateways; its history: acknowledged puts, and puts whose outcome is unknown.
writer() {
  local i=0 gw out
  while [ ! -e "$WORK/stop" ]; do
    i=$((i+1)); gw=$GW1; [ $((i % 2)) = 0 ] && gw=$GW2
    out=$(ctl --endpoints $gw put "compose/k/$(printf %06d $i)" "v$i" 2>&1)
    if [ "$out" = OK ]; then echo "$i" >>"$WORK/acked"; else echo "$i" >>"$WORK/unknown"; fi
  done
  echo "$i" >"$WORK/attempted"
}
: >"$WORK/acked"; : >"$WORK/unknown"
writer & WRITER=$!
sleep 3
docker kill "$(container "$LEADER")" >/dev/null && ok "killed the leader's container ($LEADER, SIGKILL) while writing"
sleep 10
touch "$WORK/stop"; wait $WRITER
echo "writer: $(cat "$WORK/attempted") puts sent, $(wc -l <"$WORK/acked") acknowledged, $(wc -l <"$WORK/unknown") failed or unknown"

# Nothing acknowledged is lost, nothing unwritten appears, every value is the one written.
check_history() { # gateway, label
  ctl --endpoints "$1" get compose/k/ --prefix -w json | python3 -c '
import base64, json, sys
acked = {int(l) for l in open(sys.argv[1])}
unknown = {int(l) for l in open(sys.argv[2])}
kvs = json.load(sys.stdin).get("kvs", [])
seen = {}
for kv in kvs:
    i = int(base64.b64decode(kv["key"]).decode().rsplit("/", 1)[1])
    seen[i] = base64.b64decode(kv["value"]).decode()
lost = sorted(acked - seen.keys())
invented = sorted(i for i in seen if i not in acked and i not in unknown)
wrong = sorted(i for i, v in seen.items() if v != "v%d" % i)
if lost or invented or wrong or not acked:
    sys.exit("lost %s invented %s wrong %s (acknowledged %d)" % (lost[:5], invented[:5], wrong[:5], len(acked)))
print("%d acknowledged puts all present, %d of %d unknown outcomes applied" % (len(acked), len(seen.keys() & unknown), len(unknown)))
' "$WORK/acked" "$WORK/unknown"
}
for gw in $GW1 $GW2; do
  out=$(check_history $gw 2>&1) && ok "after the kill, through $gw: $out" || bad "after the kill, through $gw: $out"
done

docker start "$(container "$LEADER")" >/dev/null
if wait_healthy s1 s2 s3 gw1 gw2; then ok "$LEADER restarted and healthy again"; else bad "$LEADER not healthy after restart: $(health "$LEADER")"; fi
for gw in $GW1 $GW2; do
  out=$(check_history $gw 2>&1) && ok "after the restart, through $gw: $out" || bad "after the restart, through $gw: $out"
done
[ "$(ctl --endpoints $GW1,$GW2 endpoint health 2>&1 | grep -c 'is healthy')" = 2 ] && ok "endpoint health through both gateways" || bad "endpoint health"

stop_start=$(date +%s)
compose down -v >/dev/null 2>&1 && ok "compose down in $(( $(date +%s) - stop_start )) s" || bad "compose down"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
