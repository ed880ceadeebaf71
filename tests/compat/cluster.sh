#!/usr/bin/env bash
# etcdctl conformance of the Cluster and Maintenance commands on 3 members: a real 3-member
# etcd and 3 storaged members with one gateway each (gateway i prefers member i) get the same
# etcdctl commands; outputs are compared after removing what differs between any two clusters
# (ids, ports, sizes, timings, which member leads, row order by id).
#
# usage: tests/compat/cluster.sh [--engine memory|rocksdb] [--bin-dir DIR]
set -u
. "$(dirname "$0")/lib.sh"
compat_args "$@"
export ETCDCTL_API=3

# Reference: etcd members s1..s3.
declare -a EC EPP SP MPP GW
for i in 1 2 3; do EC[$i]=$(port); EPP[$i]=$(port); SP[$i]=$(port); MPP[$i]=$(port); GW[$i]=$(port); done
ETCD_CLUSTER="s1=http://127.0.0.1:${EPP[1]},s2=http://127.0.0.1:${EPP[2]},s3=http://127.0.0.1:${EPP[3]}"
MS_CLUSTER="s1=http://127.0.0.1:${MPP[1]},s2=http://127.0.0.1:${MPP[2]},s3=http://127.0.0.1:${MPP[3]}"
for i in 1 2 3; do
  etcd --name s$i --data-dir "$WORK/etcd$i" \
    --listen-client-urls http://127.0.0.1:${EC[$i]} --advertise-client-urls http://127.0.0.1:${EC[$i]} \
    --listen-peer-urls http://127.0.0.1:${EPP[$i]} --initial-advertise-peer-urls http://127.0.0.1:${EPP[$i]} \
    --initial-cluster "$ETCD_CLUSTER" >"$WORK/etcd$i.log" 2>&1 &
  PIDS+=($!); disown
  "$BIN_DIR/metastore-storaged" --name s$i --engine "$ENGINE" --data-dir "$WORK/ms$i" \
    --listen-storage-urls http://127.0.0.1:${SP[$i]} --listen-peer-urls http://127.0.0.1:${MPP[$i]} \
    --initial-advertise-peer-urls http://127.0.0.1:${MPP[$i]} --initial-cluster "$MS_CLUSTER" \
    >"$WORK/storaged$i.log" 2>&1 &
  PIDS+=($!); disown
done
for i in 1 2 3; do
  wait_port ${SP[$i]}
  j=$((i % 3 + 1)); k=$((j % 3 + 1))
  "$BIN_DIR/metastore-gateway" --listen-client-urls http://127.0.0.1:${GW[$i]} \
    --advertise-client-urls http://127.0.0.1:${GW[$i]} \
    --storage-endpoints http://127.0.0.1:${SP[$i]},http://127.0.0.1:${SP[$j]},http://127.0.0.1:${SP[$k]} \
    >"$WORK/gateway$i.log" 2>&1 &
  PIDS+=($!); disown
done
for i in 1 2 3; do wait_port ${EC[$i]}; wait_port ${GW[$i]}; done
REF="127.0.0.1:${EC[1]},127.0.0.1:${EC[2]},127.0.0.1:${EC[3]}"
OURS="127.0.0.1:${GW[1]},127.0.0.1:${GW[2]},127.0.0.1:${GW[3]}"
# Both clusters must have a leader before the comparison starts.
for eps in "$REF" "$OURS"; do
  for _ in $(seq 1 100); do etcdctl --endpoints "$eps" put ready 1 >/dev/null 2>&1 && break; sleep 0.2; done
done
# Gateways announce their URLs every few seconds; wait until all three are listed.
for _ in $(seq 1 60); do
  [ "$(etcdctl --endpoints "127.0.0.1:${GW[1]}" member list | grep -c ', http://127.0.0.1:[0-9]*, http://')" = 3 ] && break
  sleep 0.5
done

# etcd refuses membership changes until its members have been connected for 5 s.
sleep 6

# Sorted lines (members are listed by id, and ids differ between the clusters), with the
# member list inside ETCD_INITIAL_CLUSTER sorted too.
sorted() {
  normalize | python3 -c '
import sys
for line in sys.stdin.read().splitlines():
    if line.startswith("ETCD_INITIAL_CLUSTER=\""):
        items = line[len("ETCD_INITIAL_CLUSTER=\""):-1].split(",")
        line = "ETCD_INITIAL_CLUSTER=\"" + ",".join(sorted(items)) + "\""
    print(line)' | sort
}
# check_cluster NAME SCRIPT [REGEX]: runs SCRIPT with $E = etcdctl on the first endpoint, $ALL = etcdctl
# on all three, and $ID_OF NAME printing a member's hex id, on each cluster.
check_cluster() {
  local name=$1 body=$2 expect=${3:-} want got
  local prelude='ID_OF() { $E member list | grep ", $1, " | cut -d, -f1; }
    PEER_OF() { $E member list | grep ", $1, " | cut -d, -f4 | tr -d " "; }
    FOLLOWER() { $ALL endpoint status -w json | python3 -c "
import json, sys
st = [r[\"Status\"] for r in json.load(sys.stdin)]
print(next(\"%x\" % s[\"header\"][\"member_id\"] for s in st if s[\"header\"][\"member_id\"] != s[\"leader\"]))"; }'
  want=$(E="etcdctl --endpoints 127.0.0.1:${EC[1]} --command-timeout=10s" \
    ALL="etcdctl --endpoints $REF --command-timeout=10s" bash -c "$prelude; $body" 2>&1 | sorted)
  got=$(E="etcdctl --endpoints 127.0.0.1:${GW[1]} --command-timeout=10s" \
    ALL="etcdctl --endpoints $OURS --command-timeout=10s" bash -c "$prelude; $body" 2>&1 | sorted)
  verdict "$name" "$want" "$got" "$expect"
}
# Facts from `endpoint status -w json` that any healthy 3-member cluster shares.
STATUS_FACTS='python3 -c "
import json, sys
rows = json.load(sys.stdin)
st = [r[\"Status\"] for r in rows]
ids = {s[\"header\"][\"member_id\"] for s in st}
leaders = {s[\"leader\"] for s in st}
print(\"endpoints\", len(rows), \"distinct members\", len(ids), \"agreed leader\", len(leaders) == 1,
      \"leader among them\", leaders <= ids, \"learners\", sum(1 for s in st if s.get(\"isLearner\")),
      \"terms\", all(s[\"raft_term\"] >= 1 for s in st),
      \"applied<=index\", all(s.get(\"raftAppliedIndex\", 0) <= s[\"raftIndex\"] for s in st))
"'

check_cluster member-list '$E member list'
check_cluster member-list-table '$E member list -w table | grep -v "^+"'
check_cluster endpoint-status-facts "\$ALL endpoint status -w json | $STATUS_FACTS"
check_cluster endpoint-status-table-shape '$ALL endpoint status -w table | head -3 | tail -1'
check_cluster endpoint-health '$ALL endpoint health 2>&1 | sed "s/took = .*//"'
check_cluster endpoint-status-cluster "\$E endpoint status --cluster -w json | $STATUS_FACTS"
check_cluster defrag-all '$ALL defrag' 'Finished defragmenting'
check_cluster defrag-cluster '$E defrag --cluster' 'Finished defragmenting'
check_cluster endpoint-health-cluster '$E endpoint health --cluster 2>&1 | sed "s/took = .*//"'
check_cluster member-add-learner "\$E member add s4 --learner --peer-urls=http://127.0.0.1:$(port)"
check_cluster member-list-with-learner '$E member list'
check_cluster member-add-second-learner "\$E member add s5 --learner --peer-urls=http://127.0.0.1:$(port)"
check_cluster member-promote-unready '$E member promote $(ID_OF s4)'
check_cluster member-promote-voter '$E member promote $(ID_OF s1)'
check_cluster member-update "\$E member update \$(ID_OF s4) --peer-urls=http://127.0.0.1:$(port)"
check_cluster member-add-existing-url '$E member add s6 --peer-urls=$(PEER_OF s2)'
check_cluster member-remove-learner '$E member remove $(ID_OF s4)'
check_cluster member-remove-unknown '$E member remove 1234abcd'
check_cluster member-update-unknown "\$E member update 1234abcd --peer-urls=http://127.0.0.1:$(port)"
check_cluster move-leader-unknown '$ALL move-leader 1234abcd'
check_cluster move-leader '$ALL move-leader $(FOLLOWER)'
check_cluster endpoint-status-after-move "\$ALL endpoint status -w json | $STATUS_FACTS"
check_cluster member-add-voter "\$E member add s7 --peer-urls=http://127.0.0.1:$(port)"
check_cluster member-add-with-unstarted-voter "\$E member add s8 --peer-urls=http://127.0.0.1:$(port)" 'unhealthy cluster'
check_cluster member-remove-unstarted-voter '$E member remove $(ID_OF "")'
check_cluster member-list-final '$E member list'

echo "$PASS passed, $FAIL failed"
[ $FAIL -eq 0 ]
