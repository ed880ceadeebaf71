//! `metastore-ctl snapshot restore`: a snapshot taken from MetaStore while clients write
//! (every engine and topology) restored into a new 3-member cluster on the other engine holds
//! exactly the source's data at the snapshot's revision (same keys, revisions, leases,
//! compaction point and HashKV on every member), keeps it across a restart of every member,
//! and takes writes; a real etcd's snapshot restored into MetaStore serves what that etcd
//! served.

use anyhow::{Context, Result};
use etcd_client::{Client, CompactionOptions, DeleteOptions, LeaseTimeToLiveOptions, PutOptions};
use metastore_tests::cluster::Cluster;
use metastore_tests::{Deployment, Etcd, etcdctl, matrix, range_all};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

matrix!(a_snapshot_taken_under_writes_restores_on_the_other_engine);

/// Puts, overwrites, a lease with keys, deletes and a compaction; returns the lease and the
/// compaction revision.
async fn history(c: &mut Client) -> Result<(i64, i64)> {
    let lease = c.lease_grant(900, None).await?.id();
    for i in 0..400 {
        c.put(format!("k/{i:03}"), format!("v{i}"), None).await?;
    }
    for i in 0..100 {
        c.put(format!("k/{i:03}"), format!("again {i}"), None)
            .await?;
    }
    for i in 0..5 {
        c.put(
            format!("leased/{i}"),
            "x",
            Some(PutOptions::new().with_lease(lease)),
        )
        .await?;
    }
    let del = c
        .delete("k/07", Some(DeleteOptions::new().with_prefix()))
        .await?;
    let compacted = del.header().map_or(0, |h| h.revision()) - 30;
    c.compact(compacted, Some(CompactionOptions::new().with_physical()))
        .await?;
    Ok((lease, compacted))
}

/// [`range_all`] without the header's revision (the source has moved on since).
async fn data_at(endpoint: &str, revision: i64) -> Result<String> {
    let all = range_all(endpoint, revision).await?;
    Ok(all
        .split_once(", ")
        .map_or(all.clone(), |(_, rest)| rest.to_string()))
}

fn save(endpoint: &str, file: &Path) -> Result<i64> {
    let path = file.to_str().context("path")?;
    etcdctl(&["--endpoints", endpoint, "snapshot", "save", path])?;
    let status: serde_json::Value =
        serde_json::from_str(&etcdctl(&["snapshot", "status", path, "-w", "json"])?)?;
    status["revision"].as_i64().context("snapshot revision")
}

/// The restored cluster holds the source's data as of the snapshot's `revision`: every key
/// now and at older revisions (the compaction point included), and the same HashKV on every
/// member.
async fn same_data(
    d: &Deployment,
    restored: &Cluster,
    revision: i64,
    compacted: i64,
) -> Result<()> {
    let (target, source) = (restored.gateway(0), d.endpoint());
    assert_eq!(
        range_all(&target, 0).await?,
        format!("revision {revision}, {}", data_at(&source, revision).await?),
        "{}: the data at the snapshot's revision",
        d.case
    );
    for rev in [compacted - 1, compacted, revision - 40] {
        assert_eq!(
            data_at(&target, rev).await?,
            data_at(&source, rev).await?,
            "{}: at revision {rev}",
            d.case
        );
    }
    let want = d.cluster.member_hash_kv(0, revision).await?;
    for i in 0..restored.members.len() {
        let got = restored.member_hash_kv(i, revision).await?;
        assert_eq!(got, want, "{}: HashKV of member {i}", d.case);
    }
    Ok(())
}

async fn a_snapshot_taken_under_writes_restores_on_the_other_engine(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    let (lease, compacted) = history(&mut c).await?;
    // Writers go on while the snapshot is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (mut c, stop) = (c.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                c.put(format!("busy/{}", n % 100), vec![b'b'; 2000], None)
                    .await?;
                n += 1;
            }
            anyhow::Ok(n)
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("snapshot.db");
    let revision = save(&d.endpoint(), &file)?;
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await??;
    assert!(writes > 0);

    let other = if d.case.engine == "memory" {
        "rocksdb"
    } else {
        "memory"
    };
    let mut restored = Cluster::restored_from(other, 3, 1, &file)?;
    restored.leader(0).await?;
    same_data(&d, &restored, revision, compacted).await?;
    let mut rc = restored.client(0).await?;
    let ttl = rc.lease_time_to_live(lease, None).await?;
    assert_eq!(ttl.granted_ttl(), 900, "{}: the lease came across", d.case);

    // Every member restarted keeps it (the memory engine from its snapshot file).
    for i in 0..3 {
        restored.kill_member(i);
    }
    for i in 0..3 {
        restored.start_member(i)?;
    }
    restored.leader(0).await?;
    metastore_tests::retry_until(
        "the restarted cluster serving",
        std::time::Duration::from_secs(20),
        || {
            let target = restored.gateway(0);
            async move {
                Ok(range_all(&target, 0)
                    .await
                    .ok()
                    .filter(|r| !r.starts_with("error")))
            }
        },
    )
    .await?;
    same_data(&d, &restored, revision, compacted).await?;
    let mut rc = restored.client(0).await?;
    let next = rc.put("after-restore", "x", None).await?;
    assert_eq!(next.header().map(|h| h.revision()), Some(revision + 1));
    Ok(())
}

#[tokio::test]
async fn a_real_etcd_snapshot_restores_into_metastore() -> Result<()> {
    let etcd = Etcd::start()?;
    let mut c = Client::connect([etcd.endpoint()], None).await?;
    let (lease, compacted) = history(&mut c).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("etcd.db");
    let revision = save(&etcd.endpoint(), &file)?;
    for engine in ["memory", "rocksdb"] {
        let restored = Cluster::restored_from(engine, 3, 1, &file)?;
        restored.leader(0).await?;
        let target = restored.gateway(0);
        for rev in [0, compacted - 1, compacted, revision - 10] {
            assert_eq!(
                range_all(&target, rev).await?,
                range_all(&etcd.endpoint(), rev).await?,
                "{engine}: at revision {rev}"
            );
        }
        let mut rc = restored.client(0).await?;
        let keys = Some(LeaseTimeToLiveOptions::new().with_keys());
        let ttl = rc.lease_time_to_live(lease, keys).await?;
        assert_eq!(ttl.granted_ttl(), 900, "{engine}: the lease came across");
        let keys = ttl.keys().len();
        assert_eq!(keys, 5, "{engine}: the lease's keys");
    }
    Ok(())
}
