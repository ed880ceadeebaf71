//! etcd's auto-compaction (`--auto-compaction-mode periodic --auto-compaction-retention 2s`):
//! while a client writes, the leader compacts, and never history younger than the retention.

use anyhow::{Context, Result};
use etcd_client::WatchOptions;
use metastore_tests::{Deployment, matrix};
use std::time::{Duration, Instant};

const RETENTION: Duration = Duration::from_secs(2);

matrix!(
    storaged_args = ["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s"];
    periodic_compaction_keeps_the_retention
);

/// The compacted revision, as a watch from revision 1 is told.
async fn compacted(c: &mut etcd_client::Client) -> Result<i64> {
    let mut stream = c
        .watch("k", Some(WatchOptions::new().with_start_revision(1)))
        .await?;
    loop {
        let resp = stream.message().await?.context("watch ended")?;
        if resp.canceled() {
            return Ok(resp.compact_revision());
        }
        if !resp.events().is_empty() {
            return Ok(0);
        }
    }
}

async fn periodic_compaction_keeps_the_retention(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    // An observer notes the compacted revision every 100 ms while a writer puts every 100 ms.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let observer = {
        let mut c = d.client().await?;
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen: Vec<(Instant, i64)> = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let rev = compacted(&mut c).await?;
                seen.push((Instant::now(), rev));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(seen)
        })
    };
    let mut written: Vec<(Instant, i64)> = Vec::new();
    let start = Instant::now();
    while start.elapsed() < RETENTION * 4 {
        let put = c.put("k", format!("{}", written.len()), None).await?;
        written.push((Instant::now(), put.header().context("header")?.revision()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = observer.await??;
    let compactions: Vec<&(Instant, i64)> = seen.iter().filter(|(_, rev)| *rev > 1).collect();
    assert!(
        !compactions.is_empty(),
        "{}: no auto-compaction in {:?}",
        d.case,
        RETENTION * 4
    );
    // A compaction targets the revision the leader saw one retention earlier, so whenever a
    // compaction is seen, the write that made its revision is at least that old (less the time
    // a put's answer takes to come back).
    let slack = Duration::from_millis(300);
    for (seen_at, compact) in &compactions {
        let (written_at, _) = written
            .iter()
            .rev()
            .find(|(_, rev)| rev <= compact)
            .context("compacted past every write")?;
        let age = seen_at.saturating_duration_since(*written_at);
        assert!(
            age + slack >= RETENTION,
            "{}: compaction to {compact} seen when its write was only {age:?} old",
            d.case
        );
    }
    Ok(())
}
