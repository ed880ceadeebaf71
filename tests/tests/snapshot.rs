//! Maintenance.Snapshot on every engine and topology is an etcd snapshot file: `etcdctl
//! snapshot save` takes it (checking the SHA-256 trailer), `etcdctl snapshot status` reads it,
//! and a real etcd restored from it with `etcdctl snapshot restore` serves the same keys,
//! revisions, leases and compaction point as MetaStore. `metastore-ctl snapshot status`
//! reads snapshot files of real etcd and of MetaStore exactly as `etcdctl snapshot status`.

use anyhow::{Context, Result};
use etcd_client::{CompactionOptions, DeleteOptions, GetOptions, PutOptions};
use metastore_tests::{Case, Deployment, Etcd, binary, etcdctl, matrix, range_all};
use std::path::Path;
use std::process::Command;

matrix!(a_snapshot_is_one_that_real_etcd_restores);

async fn a_snapshot_is_one_that_real_etcd_restores(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    // A history: puts, overwrites, a 1 MiB value, a lease with a key, deletes, a compaction.
    let lease = c.lease_grant(600, None).await?.id();
    for i in 0..300 {
        c.put(format!("k/{i:03}"), format!("v{i}"), None).await?;
    }
    for i in 0..60 {
        c.put(format!("k/{i:03}"), format!("again {i}"), None)
            .await?;
    }
    c.put("leased", "x", Some(PutOptions::new().with_lease(lease)))
        .await?;
    c.put("big", vec![7u8; 1 << 20], None).await?;
    let deleted = c
        .delete("k/05", Some(DeleteOptions::new().with_prefix()))
        .await?;
    assert_eq!(deleted.deleted(), 10);
    let compacted = deleted.header().map_or(0, |h| h.revision()) - 20;
    c.compact(compacted, Some(CompactionOptions::new().with_physical()))
        .await?;
    let last = c.put("last", "y", None).await?;
    let last = last.header().map_or(0, |h| h.revision());
    // The member the gateway asks has applied everything (a serializable read waits for it).
    c.get("last", Some(GetOptions::new().with_serializable()))
        .await?;

    let dir = tempfile::tempdir()?;
    let file = dir.path().join("snapshot.db");
    let file_arg = file.to_str().context("path")?;
    let endpoint = d.endpoint();
    save(&endpoint, &file)?;
    let len = std::fs::metadata(&file)?.len();
    assert_eq!(len % 512, 32, "{}: database plus SHA-256", d.case);

    let status: serde_json::Value =
        serde_json::from_str(&etcdctl(&["snapshot", "status", file_arg, "-w", "json"])?)?;
    assert_eq!(status["revision"], last, "{}: {status}", d.case);
    assert_eq!(status["totalSize"], len - 32, "{}: {status}", d.case);
    assert!(
        status["totalKey"].as_u64().unwrap_or(0) > 300,
        "{}: {status}",
        d.case
    );

    let etcd = Etcd::restored_from(Path::new(&file))?;
    let reference = etcd.endpoint();
    for revision in [0, compacted, compacted - 1, last - 5] {
        assert_eq!(
            range_all(&reference, revision).await?,
            range_all(&endpoint, revision).await?,
            "{}: at revision {revision}",
            d.case
        );
    }
    let mut restored = etcd_client::Client::connect([reference], None).await?;
    let ttl = restored.lease_time_to_live(lease, None).await?;
    assert_eq!(ttl.granted_ttl(), 600, "{}: the lease came across", d.case);
    Ok(())
}

/// A small history on `endpoint`: puts, a lease, deletes, a compaction.
async fn history(endpoint: &str) -> Result<()> {
    let mut c = etcd_client::Client::connect([endpoint], None).await?;
    let lease = c.lease_grant(300, None).await?.id();
    for i in 0..2000 {
        c.put(format!("h/{i:04}"), vec![b'x'; i % 300], None)
            .await?;
    }
    c.put("h/leased", "l", Some(PutOptions::new().with_lease(lease)))
        .await?;
    let del = c
        .delete("h/00", Some(DeleteOptions::new().with_prefix()))
        .await?;
    c.compact(del.header().map_or(0, |h| h.revision()) - 50, None)
        .await?;
    Ok(())
}

/// `etcdctl snapshot save` from `endpoint` into `file`.
fn save(endpoint: &str, file: &Path) -> Result<()> {
    let file = file.to_str().context("path")?;
    etcdctl(&["--endpoints", endpoint, "snapshot", "save", file]).map(drop)
}

/// `metastore-ctl snapshot status` and `etcdctl snapshot status` on the same file, in every
/// output format.
fn same_status(file: &Path, what: &str) -> Result<()> {
    let file_arg = file.to_str().context("path")?;
    for format in ["simple", "table", "json", "fields"] {
        let want = etcdctl(&["snapshot", "status", file_arg, "-w", format])?;
        let out = Command::new(binary("metastore-ctl")?)
            .args(["snapshot", "status", file_arg, "-w", format])
            .output()?;
        assert!(out.status.success(), "{what}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            want,
            "{what}, -w {format}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn snapshot_status_reads_files_of_etcd_and_metastore_as_etcdctl() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let etcd = Etcd::start()?;
    history(&etcd.endpoint()).await?;
    let from_etcd = dir.path().join("etcd.db");
    save(&etcd.endpoint(), &from_etcd)?;
    same_status(&from_etcd, "a real etcd's snapshot")?;

    let d = Deployment::start(Case::one("rocksdb"))?;
    d.ready().await?;
    history(&d.endpoint()).await?;
    let ours = dir.path().join("metastore.db");
    save(&d.endpoint(), &ours)?;
    same_status(&ours, "a MetaStore snapshot")?;
    Ok(())
}
