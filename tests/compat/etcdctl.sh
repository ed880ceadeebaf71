#!/usr/bin/env bash
# etcdctl conformance: runs the official etcdctl against a real etcd and against MetaStore
# (storaged + gateway started here on free ports), and checks that both give the same output
# and exit status. Prints PASS/FAIL per check and a final "N passed, M failed" line.
#
# usage: tests/compat/etcdctl.sh [--members 1|3] [--engine memory|rocksdb] [--bin-dir DIR]
# With 3 members, etcdctl talks to the first etcd member and to MetaStore's first gateway
# (which prefers the first storaged member, leader or not): the same checks, every one that
# does not depend on which member leads.
set -u

. "$(dirname "$0")/lib.sh"
compat_args "$@"

cluster=""
declare -a ECP EPP
for i in $(seq 1 "$MEMBERS"); do
  ECP[$i]=$(port); EPP[$i]=$(port)
  cluster="$cluster${cluster:+,}ref$i=http://127.0.0.1:${EPP[$i]}"
done
for i in $(seq 1 "$MEMBERS"); do
  etcd --name ref$i --data-dir "$WORK/etcd$i" \
    --listen-client-urls http://127.0.0.1:${ECP[$i]} --advertise-client-urls http://127.0.0.1:${ECP[$i]} \
    --listen-peer-urls http://127.0.0.1:${EPP[$i]} --initial-advertise-peer-urls http://127.0.0.1:${EPP[$i]} \
    --initial-cluster "$cluster" >"$WORK/etcd$i.log" 2>&1 &
  PIDS+=($!); disown
done
EP=${ECP[1]}
start_metastore "$MEMBERS" --untouched
MP=${MS_ENDPOINTS%%,*}; MP=${MP##*:}
# Both empty (revision 1) and serving before the first check.
for _ in $(seq 1 100); do
  ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$EP" get ready >/dev/null 2>&1 && break
  sleep 0.2
done

run_on() { # endpoint, stdin file, args...
  local ep=$1 input=$2; shift 2
  local out rc
  out=$(ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$ep" --command-timeout=10s "$@" <"$input" 2>&1); rc=$?
  printf '%s\nexit=%s\n' "$out" "$rc" | normalize
}
# check NAME [--stdin TEXT] [--expect REGEX] -- etcdctl args...
check() {
  local name=$1; shift
  local input=/dev/null expect=""
  while [ "$1" != "--" ]; do
    case "$1" in
      --stdin) printf '%b' "$2" >"$WORK/stdin"; input="$WORK/stdin"; shift 2 ;;
      --expect) expect=$2; shift 2 ;;
    esac
  done
  shift
  local want got
  want=$(run_on $EP "$input" "$@")
  got=$(run_on $MP "$input" "$@")
  verdict "$name" "$want" "$got" "$expect"
}

# A watch runs for 3 s on each target while the given writes (one etcdctl command per line)
# are made; with --interactive, the watch commands are typed into `etcdctl watch -i`.
watch_run() { # endpoint, writes, interactive-input, args...
  local ep=$1 writes=$2 typed=$3; shift 3
  local out="$WORK/watch.$ep"
  if [ -n "$typed" ]; then
    ( (printf '%b' "$typed"; sleep 5) | ETCDCTL_API=3 timeout 3 etcdctl --endpoints "127.0.0.1:$ep" "$@" >"$out" 2>&1 ) &
  else
    ( ETCDCTL_API=3 timeout 3 etcdctl --endpoints "127.0.0.1:$ep" "$@" >"$out" 2>&1 ) &
  fi
  local pid=$!
  sleep 1
  while IFS= read -r line; do
    [ -n "$line" ] && eval "ETCDCTL_API=3 etcdctl --endpoints 127.0.0.1:$ep $line" >/dev/null 2>&1
  done <<<"$writes"
  wait $pid
  normalize <"$out"
}
# check_watch NAME WRITES [--interactive TEXT] -- etcdctl args...
check_watch() {
  local name=$1 writes=$2; shift 2
  local typed=""
  if [ "$1" = "--interactive" ]; then typed=$2; shift 2; fi
  shift
  local want got
  want=$(watch_run $EP "$writes" "$typed" "$@")
  got=$(watch_run $MP "$writes" "$typed" "$@")
  verdict "$name" "$want" "$got"
}

check put --expect '^OK' -- put foo bar
check get --expect '^bar$' -- get foo
check get-missing -- get nothing-here
for k in a/1 a/2 a/3 b c/x c/y; do check "put-$k" -- put "$k" "value-of-$k"; done
check get-prefix --expect 'a/3' -- get a/ --prefix
check get-from-key -- get b --from-key
check get-range -- get a/2 c
check get-limit -- get a/ --prefix --limit 2
check get-sort-desc -- get a/ --prefix --sort-by=KEY --order=DESCEND
check get-sort-value -- get "" --prefix --sort-by=VALUE --order=ASCEND
check get-sort-create -- get "" --prefix --sort-by=CREATE --order=DESCEND
check get-sort-modify -- get "" --prefix --sort-by=MODIFY --order=ASCEND
check get-keys-only -- get a/ --prefix --keys-only
check get-count-only -- get a/ --prefix --count-only -w json
check get-print-value-only -- get foo --print-value-only
check put-overwrite -- put foo bar2
check put-prev-kv --expect 'bar2' -- put foo bar3 --prev-kv
check get-rev --expect '^bar$' -- get foo --rev=2
check get-json -- get foo -w json
check get-prefix-json -- get a/ --prefix -w json
check get-future-rev --expect 'future revision' -- get foo --rev=1000
check put-ignore-value -- put foo --ignore-value
check put-ignore-value-missing --expect 'key not found' -- put missing --ignore-value
check put-lease-unknown --expect 'lease not found' -- put foo x --lease=1234abcd
check del -- del b
check del-missing -- del b
check del-prefix -- del a/ --prefix
check del-prev-kv -- del c/x --prev-kv
check del-range -- del c/ c0 --prev-kv
check del-from-key-json -- del zz --from-key -w json
check txn-success --stdin 'value("foo") = "bar3"\n\nput t1 yes\nget foo\n\nput t1 no\n\n' -- txn
check txn-failure --stdin 'value("foo") = "nope"\n\nput t2 yes\n\nput t2 no\nget t2\n\n' -- txn
check txn-compares --stdin 'version("foo") > "1"\nmod("foo") > "0"\ncreate("missing") = "0"\n\ndel t1\n\n\n' -- txn
check txn-interactive --stdin 'value("t2") = "no"\n\nput t3 interactive\nget t3\n\nget t2\n\n' -- txn -i
check txn-json --stdin 'value("t3") = "interactive"\n\nget t3\n\n\n' -- txn -w json
check txn-duplicate --expect 'duplicate key' --stdin '\nput d 1\nput d 2\n\n\n' -- txn
check_watch watch-prefix $'put w/a 1\nput w/b 2\ndel w/a\nput other x' -- watch w/ --prefix
check_watch watch-rev-history $'put w/b 3' -- watch foo --rev=2
check_watch watch-prev-kv $'put w/b 4\ndel w/b' -- watch w/b --prev-kv
check_watch watch-json $'put w/c 1\ndel w/c' -- watch w/c --prev-kv -w json
check_watch watch-range $'put w/a 5\nput w/d 6\nput w/z 7' -- watch w/a w/e
check_watch watch-interactive $'put w/c x\nput w/d y\nput w/d z' --interactive 'watch w/c\nwatch w/d --prev-kv\n' -- watch -i
# HashKV is etcd's hash, so the same history (no server-chosen lease ids yet) hashes alike.
check endpoint-hashkv -- endpoint hashkv
check endpoint-hashkv-rev -- endpoint hashkv --rev 4 -w json
# check_script NAME SCRIPT: runs a bash script on each target with $E = etcdctl for it.
check_script() {
  local name=$1 body=$2 want got
  want=$(E="etcdctl --endpoints 127.0.0.1:$EP --command-timeout=10s" bash -c "$body" 2>&1 | normalize)
  got=$(E="etcdctl --endpoints 127.0.0.1:$MP --command-timeout=10s" bash -c "$body" 2>&1 | normalize)
  verdict "$name" "$want" "$got"
}
export ETCDCTL_API=3
check_script lease-grant-put-timetolive 'L=$($E lease grant 60 | cut -d" " -f2); $E put --lease=$L lk1 v; $E lease timetolive $L --keys | sed "s/remaining([0-9]*s)/remaining(R)/"; $E put --lease=$L lk2 v; $E lease timetolive $L | sed "s/remaining([0-9]*s)/remaining(R)/"; $E get lk --prefix'
check_script lease-list-keepalive-once 'L=$($E lease grant 30 | cut -d" " -f2); $E lease list | grep -c "$L"; $E lease keep-alive --once $L'
check_script lease-revoke-deletes-keys 'L=$($E lease grant 60 | cut -d" " -f2); $E put --lease=$L rk1 v; $E put --lease=$L rk2 v; $E lease revoke $L; $E get rk --prefix --count-only -w json; $E lease timetolive $L'
check_script lease-errors '$E lease revoke 1234; $E lease timetolive 1234; $E lease keep-alive --once 1234; $E put --lease=1234 x y; $E lease grant 10000000000'
check_script lease-grant-json '$E lease grant 1 -w json'
check_script lease-expiry 'L=$($E lease grant 2 | cut -d" " -f2); $E put --lease=$L ek v; $E get ek; sleep 4; $E get ek; $E lease timetolive $L'
check_script lock-runs-command '$E lock mylock echo holding-the-lock'
check_script lock-mutual-exclusion '( $E lock excl sh -c "echo first-in; sleep 2; echo first-out" ) & sleep 0.7; $E lock excl echo second-in; wait'
check_script elect-leader 'timeout 3 $E elect myelection candidate-a >/dev/null & sleep 1; $E elect -l myelection & P=$!; sleep 1; kill $P; wait'
check compaction --expect 'compacted revision 5' -- compaction 5
check get-compacted --expect 'has been compacted' -- get foo --rev=3
check get-at-compacted-rev -- get foo --rev=5
check compaction-again --expect 'has been compacted' -- compaction 4
check compaction-physical -- compaction 8 --physical
check compaction-future --expect 'future revision' -- compaction 100000
check get-all-after-compaction -- get "" --prefix -w json
check defrag --expect 'Finished defragmenting' -- defrag
check get-all-after-defrag -- get "" --prefix -w json
check endpoint-hashkv-compacted -- endpoint hashkv --rev 5
# Snapshots: saved with the SHA-256 trailer, read by `snapshot status` (the revision is the
# store's; hash, key count and size differ with member ids and layout), restored by etcdctl.
check_script snapshot-save-status-restore 'F=$(mktemp -u); $E snapshot save $F 2>/dev/null | sed "s|$F|FILE|"; etcdctl snapshot status $F -w json | python3 -c "import json,sys; d=json.load(sys.stdin); print(sorted(d), d[\"revision\"])"; etcdctl snapshot restore $F --data-dir $F.restored >/dev/null 2>&1; echo restore=$?; ls $F.restored/member; rm -rf $F $F.restored'
check alarm-list-none -- alarm list
check alarm-disarm-none -- alarm disarm
check_watch watch-compacted-rev "" -- watch foo --rev=2
check endpoint-health-shape --expect 'is healthy' -- endpoint health
# Endpoints given as URLs: etcdctl 3.4 then sends the whole URL as the HTTP/2 authority.
# (Which member leads shows in `endpoint status`; cluster.sh compares that on 3 members.)
[ "$MEMBERS" = 1 ] && check_script endpoint-status-url-endpoints 'U=${E/--endpoints /--endpoints http://}; $U endpoint status | cut -d, -f5,6; $U endpoint status --cluster | cut -d, -f5,6; $U endpoint health --cluster 2>&1 | sed "s/took = .*//"'

# Auth: users, roles and permissions, a read-only user on /app/, root, and auth off again.
check_script auth-enable-needs-root '$E auth enable; $E user add root:rootpw --interactive=false; $E user get root'
check_script auth-users-roles '$E user add reader:readerpw --interactive=false; $E user add reader:x --interactive=false; $E role add app-read; $E role add app-read; $E role grant-permission app-read read /app/ --prefix; $E role grant-permission app-read readwrite /b /c; $E role grant-permission app-read write /f --from-key; $E role get app-read; $E role list; $E user grant-role reader app-read; $E user grant-role reader missing; $E user get reader; $E user get reader --detail; $E user list; $E role get missing; $E user get missing; $E role revoke-permission app-read /b /c; $E role revoke-permission app-read /zz; $E role get app-read -w json | python3 -c "import json,sys; print(json.load(sys.stdin)[\"perm\"])"'
check_script auth-enabled-access '$E put /app/a 1; $E user grant-role root root; $E auth enable; $E get /app/a; R="$E --user reader:readerpw"; $R get /app/a; $R get /app/ --prefix --keys-only; $R put /app/a 2; $R get foo; $R get "" --prefix; $E --user reader:wrong get /app/a; $E --user root:rootpw put /app/a 3; $E --user root:rootpw get /app/a --print-value-only; $R user list; $E --user root:rootpw user list; $R watch /other'
check_script auth-change-revoke-disable 'A="$E --user root:rootpw"; echo newpw | $A user passwd reader --interactive=false; $E --user reader:readerpw get /app/a; $E --user reader:newpw get /app/a --print-value-only; $A user revoke-role reader app-read; $E --user reader:newpw get /app/a; $A user revoke-role root root; $A role delete app-read; $A user delete reader; $A user list; $A role list; $A auth disable; $E put /app/a 4; $E user delete root; $E user list'

echo "$PASS passed, $FAIL failed"
[ $FAIL -eq 0 ]
