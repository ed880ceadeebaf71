//! Maintenance calls through real processes with the `etcd-client` crate, on every engine and
//! topology.

use anyhow::Result;
use etcd_client::{CompactionOptions, DeleteOptions, GetOptions};
use metastore_tests::{Deployment, matrix, retry_until};
use std::time::Duration;

matrix!(defragment_gives_space_back_and_keeps_data);
matrix!(status_answers_carry_the_revision);

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
    let full = retry_until(
        &format!("{}: the preferred member holding 12.5 MB", d.case),
        Duration::from_secs(20),
        || {
            let mut c = c.clone();
            async move {
                let size = c.status().await?.db_size();
                Ok((size >= 12 << 20).then_some(size))
            }
        },
    )
    .await?;
    let deleted = c
        .delete("big/", Some(DeleteOptions::new().with_prefix()))
        .await?;
    assert_eq!(deleted.deleted(), 200);
    let rev = deleted.header().map_or(0, |h| h.revision());
    c.compact(rev, Some(CompactionOptions::new().with_physical()))
        .await?;
    // The member the gateway prefers may be a follower that applies the compaction a little
    // later: defragment until its size has come down.
    let after = retry_until(
        &format!("{}: size down after defragment (was {full})", d.case),
        Duration::from_secs(20),
        || {
            let mut c = c.clone();
            async move {
                let defrag = c.defragment().await?;
                assert!(defrag.header().is_none(), "etcd sends no header here");
                let after = c.status().await?.db_size();
                Ok((after < full / 4).then_some(after))
            }
        },
    )
    .await?;
    assert!(after < full / 4);
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

/// Status answers carry the member's current revision in their header, as etcd's do (the
/// member the gateway prefers may be a follower that applies the put a little later).
async fn status_answers_carry_the_revision(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    for i in 0..3 {
        let put = c.put(format!("status/{i}"), "v", None).await?;
        let rev = put.header().map_or(0, |h| h.revision());
        let status = retry_until(
            &format!("{}: Status at revision {rev}", d.case),
            Duration::from_secs(20),
            || {
                let mut c = c.clone();
                async move {
                    let s = c.status().await?;
                    let at = s.header().map_or(0, |h| h.revision());
                    assert!(at <= rev, "Status at {at}, ahead of the last write {rev}");
                    Ok((at == rev).then_some(s))
                }
            },
        )
        .await?;
        let h = status.header().expect("checked above");
        assert!(h.cluster_id() != 0 && h.member_id() != 0 && h.raft_term() != 0);
    }
    Ok(())
}
