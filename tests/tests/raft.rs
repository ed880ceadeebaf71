//! Replication through real processes: 3 storaged members behind gateways, on both engines.

use anyhow::{Context, Result, bail};
use etcd_client::{GetOptions, MemberAddOptions};
use metastore_tests::{Cluster, ENGINES, retry_until};
use std::time::{Duration, Instant};

/// Reads `key` linearizably through gateway `g`, retrying while the cluster elects.
async fn get(c: &Cluster, g: usize, key: &str) -> Result<Option<Vec<u8>>> {
    retry_until("a linearizable read", Duration::from_secs(20), || async {
        let r = c.client(g).await?.get(key, None).await?;
        Ok(Some(r.kvs().first().map(|kv| kv.value().to_vec())))
    })
    .await
}

#[tokio::test]
async fn write_on_one_gateway_read_on_another() -> Result<()> {
    for engine in ENGINES {
        let c = Cluster::start(engine, 3, 2, &[])?;
        c.leader(0).await?;
        let mut a = c.client(0).await?;
        let put = a.put("k", "v1", None).await?;
        let rev = put.header().map(|h| h.revision()).unwrap_or_default();
        assert_eq!(get(&c, 1, "k").await?, Some(b"v1".to_vec()), "{engine}");
        // Every member holds the write: each member's own store has the value (waiting for
        // followers to apply it).
        for i in 0..3 {
            let what = format!("{engine}: member {i} applying the write");
            let c = &c;
            retry_until(&what, Duration::from_secs(10), || async move {
                Ok((c.member_get(i, "k").await? == Some(b"v1".to_vec())).then_some(()))
            })
            .await?;
        }
        // And a serializable read through a gateway that just saw the write is not older.
        let mut b = c.client(1).await?;
        let r = b
            .get("k", Some(GetOptions::new().with_serializable()))
            .await?;
        assert!(r.header().map(|h| h.revision()).unwrap_or_default() >= rev);
        let list = a.member_list().await?;
        assert_eq!(list.members().len(), 3, "{engine}");
        let names: Vec<&str> = list.members().iter().map(|m| m.name()).collect();
        for n in ["s1", "s2", "s3"] {
            assert!(names.contains(&n), "{engine}: {names:?}");
        }
        // Gateways preferring different members report different members' status.
        let s0 = a.status().await?;
        let s1 = b.status().await?;
        assert_ne!(
            s0.header().map(|h| h.member_id()),
            s1.header().map(|h| h.member_id())
        );
        assert_eq!(s0.leader(), s1.leader());
        assert!(s0.raft_term() >= 1);
    }
    Ok(())
}

#[tokio::test]
async fn leader_kill_loses_no_acknowledged_write() -> Result<()> {
    for engine in ENGINES {
        let mut c = Cluster::start(engine, 3, 2, &[])?;
        let leader = c.leader(0).await?;
        // Gateway 0 prefers member 0; make sure the stream of writes runs through the member
        // that will be killed or through a follower, whichever gateway 0 prefers.
        let mut client = c.client(0).await?;
        let mut acked = Vec::new();
        let mut killed_at = None;
        let mut failover = None;
        let started = Instant::now();
        let mut i = 0u32;
        while acked.len() < 300 {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("{engine}: only {} writes acknowledged in 60 s", acked.len());
            }
            if acked.len() == 100 && killed_at.is_none() {
                c.kill_member(leader);
                killed_at = Some(Instant::now());
            }
            let key = format!("w/{i:05}");
            i += 1;
            match client.put(key.clone(), key.clone(), None).await {
                Ok(_) => {
                    if let (Some(k), None) = (killed_at, failover) {
                        failover = Some(k.elapsed());
                    }
                    acked.push(key);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        eprintln!("{engine}: failover (kill -> first acknowledged write) {failover:?}");
        // Restart everything from disk and check every acknowledged write.
        for m in 0..3 {
            c.kill_member(m);
        }
        for m in 0..3 {
            c.start_member(m)?;
        }
        c.leader(1).await?;
        let mut reader = c.client(1).await?;
        let all = reader
            .get("w/", Some(GetOptions::new().with_prefix()))
            .await?;
        let have: std::collections::HashSet<Vec<u8>> =
            all.kvs().iter().map(|kv| kv.key().to_vec()).collect();
        let lost: Vec<&String> = acked
            .iter()
            .filter(|k| !have.contains(k.as_bytes()))
            .collect();
        assert!(
            lost.is_empty(),
            "{engine}: lost {} of {} acknowledged writes: {lost:?}",
            lost.len(),
            acked.len()
        );
    }
    Ok(())
}

/// The member id of member `i`, from the member list.
async fn member_id(c: &Cluster, i: usize) -> Option<u64> {
    let mut client = c.client(0).await.ok()?;
    let list = client.member_list().await.ok()?;
    let name = &c.members[i].name;
    list.members()
        .iter()
        .find(|m| m.name() == name)
        .map(|m| m.id())
}

/// A member that was down while the log moved past a snapshot catches up from it.
#[tokio::test]
async fn lagging_member_catches_up_through_snapshot() -> Result<()> {
    for engine in ENGINES {
        let mut c = Cluster::start(engine, 3, 3, &["--snapshot-count", "50"])?;
        let leader = c.leader(0).await?;
        let lagging = (leader + 1) % 3;
        c.kill_member(lagging);
        let writer = if leader == 0 { 0 } else { leader };
        let mut client = c.client(writer).await?;
        // Enough entries that the leader's log is purged past the stopped member several
        // times over (a purge waits while a replication to it is in flight).
        for i in 0..1500 {
            client.put(format!("s/{i:04}"), "x", None).await?;
        }
        let last = client.put("s/last", "done", None).await?;
        let rev = last.header().map(|h| h.revision()).unwrap_or_default();
        c.member_logs = true;
        if let Err(e) = c.start_member(lagging) {
            let log = std::fs::read_to_string(c.member_log(lagging)).unwrap_or_default();
            bail!("{engine}: restarting the lagging member: {e:#}\n{log}");
        }
        // Gateway `lagging` prefers the restarted member: its Status shows that member's
        // applied index once the gateway is back on it.
        let target = client.status().await?.raft_index();
        let mut own = c.client(lagging).await?;
        let lagging_id = member_id(&c, lagging).await;
        let what = format!("{engine}: the restarted member catching up");
        retry_until(&what, Duration::from_secs(30), || {
            let mut own = own.clone();
            async move {
                let s = own.status().await?;
                Ok((s.raft_applied_index() >= target
                    && s.header().map(|h| h.member_id()) == lagging_id)
                    .then_some(()))
            }
        })
        .await?;
        let count = own
            .get(
                "s/",
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await?;
        assert_eq!(count.count(), 1501, "{engine}");
        // It caught up from a snapshot (the leader's log no longer reaches back that far).
        let log = std::fs::read_to_string(c.member_log(lagging))?;
        assert!(
            log.contains("installed raft snapshot"),
            "{engine}: the restarted member installed no snapshot:\n{log}"
        );
        // All members agree on the hash at the same revision.
        let mut hashes = Vec::new();
        for g in 0..3 {
            let mut cl = c.client(g).await?;
            hashes.push(cl.hash_kv(rev).await?.hash());
        }
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "{engine}: {hashes:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn membership_changes_under_traffic() -> Result<()> {
    let engine = "memory";
    let mut c = Cluster::start(engine, 3, 1, &[])?;
    c.leader(0).await?;
    let mut client = c.client(0).await?;
    let peer = metastore_tests::free_port()?;
    let url = format!("http://127.0.0.1:{peer}");
    let added = client
        .member_add(
            [url.clone()],
            Some(MemberAddOptions::new().with_is_learner()),
        )
        .await?;
    let id = added.member().map(|m| m.id()).unwrap_or_default();
    assert!(added.member().is_some_and(|m| m.is_learner()));
    // A second learner is refused as etcd refuses it.
    let other = format!("http://127.0.0.1:{}", metastore_tests::free_port()?);
    let err = client
        .member_add([other], Some(MemberAddOptions::new().with_is_learner()))
        .await
        .expect_err("second learner");
    assert_eq!(
        metastore_tests::grpc_status(&err).1,
        "etcdserver: too many learner members in cluster"
    );
    // Promoting before the learner runs is refused.
    let err = client.member_promote(id).await.expect_err("not ready");
    assert_eq!(
        metastore_tests::grpc_status(&err).1,
        "etcdserver: can only promote a learner member which is in sync with leader"
    );
    let new = c.add_member("s4", peer)?;
    for i in 0..50 {
        client.put(format!("m/{i}"), "v", None).await?;
    }
    // Through a gateway that prefers the learner: serializable reads work once it has caught
    // up, everything else is refused as etcd refuses it on a learner.
    let g = c.gateway_ports.len();
    c.start_gateway(new)?;
    let mut on_learner = c.client(g).await?;
    retry_until("the learner catching up", Duration::from_secs(20), || {
        let mut on_learner = on_learner.clone();
        async move {
            let r = on_learner
                .get("m/49", Some(GetOptions::new().with_serializable()))
                .await?;
            Ok((r.count() == 1).then_some(()))
        }
    })
    .await?;
    // The learner knows it is one once the membership reached it.
    retry_until(
        "the learner's gateway reporting a learner",
        Duration::from_secs(20),
        || {
            let mut on_learner = on_learner.clone();
            async move { Ok(on_learner.status().await?.is_learner().then_some(())) }
        },
    )
    .await?;
    let err = on_learner.put("x", "y", None).await.expect_err("learner");
    assert_eq!(
        metastore_tests::grpc_status(&err),
        (
            tonic::Code::Unavailable,
            "etcdserver: rpc not supported for learner".to_string()
        )
    );
    let promoted = retry_until("promoting the learner", Duration::from_secs(20), || {
        let mut client = client.clone();
        async move { Ok(Some(client.member_promote(id).await?)) }
    })
    .await?;
    assert!(promoted.members().iter().all(|m| !m.is_learner()));
    let err = client
        .member_promote(id)
        .await
        .expect_err("already a voter");
    assert_eq!(
        metastore_tests::grpc_status(&err).1,
        "etcdserver: can only promote a learner member"
    );
    // The started member published its name (empty after MemberAdd, as in etcd).
    retry_until(
        "the new member publishing its name",
        Duration::from_secs(10),
        || {
            let mut client = client.clone();
            async move {
                let list = client.member_list().await?;
                assert_eq!(list.members().len(), 4);
                let named = list
                    .members()
                    .iter()
                    .any(|m| m.id() == id && m.name() == "s4");
                Ok(named.then_some(()))
            }
        },
    )
    .await?;
    client.put("after-promote", "v", None).await?;
    client.member_remove(id).await?;
    c.kill_member(new);
    let list = client.member_list().await?;
    assert_eq!(list.members().len(), 3);
    let err = client.member_remove(id).await.expect_err("gone");
    assert_eq!(
        metastore_tests::grpc_status(&err).1,
        "etcdserver: member not found"
    );
    client.put("after-remove", "v", None).await?;
    Ok(())
}

/// Client URLs listed by MemberList (through gateway `g`), all members together.
async fn listed_client_urls(c: &Cluster, g: usize) -> Result<Vec<String>> {
    let mut client = c.client(g).await?;
    let list = client.member_list().await?;
    let mut urls: Vec<String> = list
        .members()
        .iter()
        .flat_map(|m| m.client_urls().to_vec())
        .collect();
    urls.sort();
    Ok(urls)
}

/// A gateway's client URLs are listed while it runs and withdrawn once it stops announcing
/// itself (after the publication TTL), as etcd lists only members that run.
#[tokio::test]
async fn silent_gateways_are_withdrawn_from_member_list() -> Result<()> {
    for engine in ENGINES {
        let mut c = Cluster::start(engine, 3, 2, &["--gateway-publication-ttl", "10s"])?;
        c.leader(0).await?;
        let (a, b) = (c.gateway(0), c.gateway(1));
        let mut both = vec![a.clone(), b.clone()];
        both.sort();
        retry_until(
            &format!("{engine}: both gateways listed"),
            Duration::from_secs(20),
            || async { Ok((listed_client_urls(&c, 0).await? == both).then_some(())) },
        )
        .await?;
        c.kill_gateway(1);
        let stopped = Instant::now();
        retry_until(
            &format!("{engine}: the stopped gateway withdrawn"),
            Duration::from_secs(30),
            || async {
                let urls = listed_client_urls(&c, 0).await?;
                assert!(
                    urls.contains(&a),
                    "{engine}: the running gateway stays listed: {urls:?}"
                );
                Ok((urls == [a.clone()]).then_some(()))
            },
        )
        .await?;
        assert!(
            stopped.elapsed() >= Duration::from_secs(3),
            "{engine}: withdrawn only after the TTL"
        );
    }
    Ok(())
}

/// A client reads its own writes with serializable reads, which the gateway spreads over all
/// members: whichever member answers has applied what the client was already told.
#[tokio::test]
async fn serializable_reads_see_own_writes() -> Result<()> {
    for engine in ENGINES {
        let c = Cluster::start(engine, 3, 1, &[])?;
        c.leader(0).await?;
        let mut client = c.client(0).await?;
        let mut stale = Vec::new();
        for i in 0..1000 {
            let v = format!("v{i}");
            client.put("ryw", v.clone(), None).await?;
            let got = client
                .get("ryw", Some(GetOptions::new().with_serializable()))
                .await?;
            let seen = got.kvs().first().map(|kv| kv.value().to_vec());
            if seen.as_deref() != Some(v.as_bytes()) {
                stale.push((i, seen.map(|s| String::from_utf8_lossy(&s).to_string())));
            }
        }
        assert!(stale.is_empty(), "{engine}: stale reads {stale:?}");
    }
    Ok(())
}

/// A member whose data dir was lost refuses to bootstrap again into the cluster that knows it
/// (it could vote twice in one term), as etcd does.
#[tokio::test]
async fn a_wiped_member_refuses_to_bootstrap_again() -> Result<()> {
    let mut c = Cluster::start("memory", 3, 1, &[])?;
    let leader = c.leader(0).await?;
    let victim = (leader + 1) % 3;
    // Wait until the cluster has recorded that the victim ran.
    let mut client = c.client(0).await?;
    let id = member_id(&c, victim).await.context("victim's id")?;
    retry_until(
        "the member recorded as started",
        Duration::from_secs(20),
        || async { Ok(c.member_knows_started(leader, id).await?.then_some(())) },
    )
    .await?;
    c.kill_member(victim);
    std::fs::remove_dir_all(c.dir.path().join(&c.members[victim].name))?;
    c.member_logs = true;
    let started = c.start_member(victim);
    assert!(started.is_err(), "a wiped member started again");
    let log = std::fs::read_to_string(c.member_log(victim))?;
    assert!(log.contains("has already been bootstrapped"), "{log}");
    // The others go on serving.
    client.put("after", "ok", None).await?;
    Ok(())
}
