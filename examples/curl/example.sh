#!/usr/bin/env bash
# curl against MetaStore's HTTP APIs on the client port: etcd's JSON API (/v3/..., keys and
# values in base64, as etcd's grpc-gateway) and MetaStore's REST API (/api/v1/..., plain text,
# compare-and-swap with If-Match, watch as Server-Sent Events). Every printed line is
# deterministic, so expected.txt holds the whole output. Needs curl and python3 (for JSON).
#
# Endpoint: the first of ETCD_ENDPOINTS (comma-separated host:port, default 127.0.0.1:2379).
set -euo pipefail
EP=http://${ETCD_ENDPOINTS:-127.0.0.1:2379}
EP=${EP%%,*}
P=examples/curl/
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

b64() { printf %s "$1" | base64 -w0; }
# await_lines FILE PATTERN N PID: waits (up to 10 s) until FILE has N lines matching PATTERN,
# then ends the stream that writes it (process PID).
# (A stream started in the background may not have opened FILE yet: that counts as none.)
await_lines() {
  local n
  for _ in $(seq 1 100); do
    n=$(grep -c "$2" "$1" 2>/dev/null) || n=0
    [ "$n" -ge "$3" ] && break
    sleep 0.1
  done
  [ -z "$4" ] || { kill "$4" 2>/dev/null; wait "$4" 2>/dev/null; } || true
}
# field EXPR: evaluates a python expression over the JSON on stdin (bound to j).
field() { python3 -c 'import base64, json, sys; j = json.load(sys.stdin); d = lambda s: base64.b64decode(s).decode(); print(eval(sys.argv[1]))' "$1"; }
post() { curl -sS --fail-with-body "$EP$1" -X POST -H 'Content-Type: application/json' -d "$2"; }

# A clean slate: earlier runs left their keys under the prefix.
post /v3/kv/deleterange "{\"key\":\"$(b64 $P)\",\"range_end\":\"$(b64 examples/curl0)\"}" >/dev/null

echo "== etcd's JSON API"
post /v3/kv/put "{\"key\":\"$(b64 ${P}greeting)\",\"value\":\"$(b64 hello)\"}" >/dev/null
post /v3/kv/range "{\"key\":\"$(b64 ${P}greeting)\"}" |
  field '"range: " + d(j["kvs"][0]["key"]) + " = " + d(j["kvs"][0]["value"]) + ", count " + j["count"]'

post /v3/kv/put "{\"key\":\"$(b64 ${P}config)\",\"value\":\"$(b64 v1)\"}" >/dev/null
for _ in 1 2; do
  post /v3/kv/txn "{
    \"compare\":[{\"key\":\"$(b64 ${P}config)\",\"target\":\"VALUE\",\"result\":\"EQUAL\",\"value\":\"$(b64 v1)\"}],
    \"success\":[{\"request_put\":{\"key\":\"$(b64 ${P}config)\",\"value\":\"$(b64 v2)\"}}],
    \"failure\":[{\"request_put\":{\"key\":\"$(b64 ${P}config)\",\"value\":\"$(b64 v3)\"}}]}" |
    field '"txn if config == v1: succeeded=" + str(j.get("succeeded", False)).lower()'
done
post /v3/kv/range "{\"key\":\"$(b64 ${P}config)\"}" | field '"config is now " + d(j["kvs"][0]["value"])'

LEASE=$(post /v3/lease/grant '{"TTL":60}' | field 'j["ID"]')
post /v3/kv/put "{\"key\":\"$(b64 ${P}session)\",\"value\":\"$(b64 alive)\",\"lease\":\"$LEASE\"}" >/dev/null
post /v3/lease/timetolive "{\"ID\":\"$LEASE\",\"keys\":true}" |
  field '"lease granted 60s, holds " + ", ".join(d(k) for k in j["keys"])'
post /v3/lease/revoke "{\"ID\":\"$LEASE\"}" >/dev/null
post /v3/kv/range "{\"key\":\"$(b64 ${P}session)\"}" | field '"after revoke: count " + j.get("count", "0")'

# A watch stream: newline-delimited {"result":...} objects; the first confirms the watch.
REV=$(post /v3/kv/range "{\"key\":\"$(b64 ${P}greeting)\"}" | field 'j["header"]["revision"]')
curl -sS -N "$EP/v3/watch" -X POST \
  -d "{\"create_request\":{\"key\":\"$(b64 ${P}watched)\",\"start_revision\":\"$((REV + 1))\"}}" >"$TMP/watch" 2>/dev/null &
STREAM=$!
await_lines "$TMP/watch" '"created":true' 1 ""
post /v3/kv/put "{\"key\":\"$(b64 ${P}watched)\",\"value\":\"$(b64 live)\"}" >/dev/null
await_lines "$TMP/watch" '"events"' 1 $STREAM
python3 - "$TMP/watch" <<'PY'
import base64, json, sys
for line in open(sys.argv[1]):
    result = json.loads(line)["result"]
    if result.get("created"):
        print("watch created")
    for ev in result.get("events", []):
        kv = ev["kv"]
        print("watch event", ev.get("type", "PUT"), base64.b64decode(kv["key"]).decode(),
              base64.b64decode(kv.get("value", "")).decode())
PY

echo "== MetaStore's REST API"
curl -sS --fail-with-body -X PUT "$EP/api/v1/kv/${P}app/db" --data-binary 'postgres://db' >/dev/null
curl -sS --fail-with-body "$EP/api/v1/kv/${P}app/db" | field '"get: " + j["key"] + " = " + j["value"]'
# The same key over etcd's JSON API: one store behind both.
post /v3/kv/range "{\"key\":\"$(b64 ${P}app/db)\"}" | field '"over /v3/kv/range: " + d(j["kvs"][0]["value"])'
ETAG=$(curl -sS -o /dev/null -D - "$EP/api/v1/kv/${P}app/db" | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p')
STALE=$(curl -sS -o "$TMP/body" -w '%{http_code}' -X PUT "$EP/api/v1/kv/${P}app/db" -H 'If-Match: "1"' -d 'stale')
echo "compare-and-swap with a stale ETag: HTTP $STALE"
FRESH=$(curl -sS -o "$TMP/body" -w '%{http_code}' -X PUT "$EP/api/v1/kv/${P}app/db" -H "If-Match: $ETAG" -d 'postgres://db2')
echo "compare-and-swap with the current ETag: HTTP $FRESH"
curl -sS --fail-with-body -X POST "$EP/api/v1/kv" -d key=${P}app/mode -d value=prod >/dev/null
curl -sS --fail-with-body "$EP/api/v1/kv?prefix=${P}app/" |
  field '"list: " + ", ".join(kv["key"] + "=" + kv["value"] for kv in j["kvs"])'
MISSING=$(curl -sS -o "$TMP/body" -w '%{http_code}' "$EP/api/v1/kv/${P}nothing")
python3 -c 'import json,sys; p=json.load(open(sys.argv[2])); print("missing key: HTTP", sys.argv[1], "title:", p["title"])' "$MISSING" "$TMP/body"

# Watch as Server-Sent Events, from a revision: the history since then, then live events.
REV=$(curl -sS "$EP/api/v1/kv?prefix=${P}app/" | field 'j["revision"]')
curl -sS -N "$EP/api/v1/watch/${P}app/?prefix=true&start_revision=$REV" >"$TMP/sse" 2>/dev/null &
STREAM=$!
curl -sS --fail-with-body -X DELETE "$EP/api/v1/kv/${P}app/?prefix=true" | field '"delete prefix: deleted " + str(j["deleted"])'
await_lines "$TMP/sse" '^event:' 3 $STREAM
grep '^event:' "$TMP/sse" | sed 's/^event: /sse event: /'
