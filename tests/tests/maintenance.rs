//! Maintenance calls through real processes with the `etcd-client` crate, on every engine and
//! topology.

use anyhow::Result;
use etcd_client::{CompactionOptions, DeleteOptions, GetOptions};
use metastore_tests::{Deployment, matrix};

matrix!(defragment_gives_space_back_and_keeps_data);

/// 12.5 MB written, then deleted and compacted away: defragmenting the member the gateway
/// prefers brings its reported size down to a fraction (RocksDB keeps deleted records' space
/// until a compaction drops them) and every live key keeps its value and revisions.
async fn defragment_gives_space_back_and_keeps_data(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    let kept = c.put("kept", "still here", None).await?;
    let value = vec![b'x'; 64 << 10];
    for i in 0..200 {
        c.put(format!("big/{i:03}"), value.clone(), None).await?;
    }
    let full = c.status().await?.db_size();
    assert!(full >= 12 << 20, "{}: {full} bytes after 12.5 MB", d.case);
    let deleted = c
        .delete("big/", Some(DeleteOptions::new().with_prefix()))
        .await?;
    assert_eq!(deleted.deleted(), 200);
    let rev = deleted.header().map_or(0, |h| h.revision());
    c.compact(rev, Some(CompactionOptions::new().with_physical()))
        .await?;
    let defrag = c.defragment().await?;
    assert!(defrag.header().is_none(), "etcd sends no header here");
    let after = c.status().await?.db_size();
    assert!(
        after < full / 4,
        "{}: {after} bytes after defragment, {full} before",
        d.case
    );
    let got = c.get("kept", None).await?;
    let kv = &got.kvs()[0];
    let put_rev = kept.header().map_or(0, |h| h.revision());
    assert_eq!(
        (kv.value(), kv.mod_revision(), kv.create_revision()),
        (&b"still here"[..], put_rev, put_rev)
    );
    let none = c
        .get(
            "big/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await?;
    assert_eq!(none.count(), 0);
    // Writes go on after it.
    let next = c.put("after", "defrag", None).await?;
    assert_eq!(next.header().map(|h| h.revision()), Some(rev + 1));
    Ok(())
}
