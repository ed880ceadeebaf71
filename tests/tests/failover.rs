//! Watch and lease guarantees across member failures on a 3-member cluster, both engines.

use anyhow::{Context, Result, bail};
use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use metastore_tests::{Cluster, ENGINES};
use std::time::{Duration, Instant};

/// Retries `put` until it is acknowledged (the cluster may be electing a leader).
async fn put_acked(c: &mut Client, key: &str, value: &str) -> Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.put(key, value, None).await {
            Ok(r) => return Ok(r.header().map(|h| h.revision()).unwrap_or_default()),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A watcher on the gateway whose preferred member is killed resumes on another member:
/// every event arrives once, in revision order.
#[tokio::test]
async fn watch_resumes_on_another_member() -> Result<()> {
    for engine in ENGINES {
        let mut c = Cluster::start(engine, 3, 2, &[])?;
        c.leader(0).await?;
        let mut watcher = c.client(0).await?;
        let mut stream = watcher
            .watch("f/", Some(WatchOptions::new().with_prefix()))
            .await?;
        let created = stream.message().await?.context("no created")?;
        assert!(created.created());
        let mut writer = c.client(1).await?;
        let mut revisions = Vec::new();
        for i in 0..100 {
            if i == 40 {
                // Gateway 0 prefers member 0: take it away under the watcher.
                c.kill_member(0);
            }
            revisions.push(put_acked(&mut writer, &format!("f/{i:03}"), "v").await?);
        }
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.len() < revisions.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(msg) = tokio::time::timeout(left, stream.message()).await else {
                bail!(
                    "{engine}: {} of {} events arrived",
                    got.len(),
                    revisions.len()
                );
            };
            let msg = msg?.context("watch stream ended")?;
            for e in msg.events() {
                assert_eq!(e.event_type(), EventType::Put);
                let kv = e.kv().context("event without kv")?;
                got.push((kv.mod_revision(), kv.key_str()?.to_string()));
            }
        }
        let want: Vec<(i64, String)> = revisions
            .iter()
            .enumerate()
            .map(|(i, r)| (*r, format!("f/{i:03}")))
            .collect();
        assert_eq!(got, want, "{engine}");
    }
    Ok(())
}

/// Keep-alives keep a lease alive across a leader failure (the new leader gives it a fresh
/// TTL), and once they stop the new leader expires it and deletes its key.
#[tokio::test]
async fn leases_survive_leader_failover_and_expire_on_the_new_leader() -> Result<()> {
    for engine in ENGINES {
        let mut c = Cluster::start(engine, 3, 3, &[])?;
        let leader = c.leader(0).await?;
        // A gateway that prefers a member that stays up.
        let g = (leader + 1) % 3;
        let mut client = c.client(g).await?;
        let lease = client.lease_grant(8, None).await?;
        let id = lease.id();
        client
            .put(
                "leased",
                "v",
                Some(etcd_client::PutOptions::new().with_lease(id)),
            )
            .await?;
        let (mut keeper, mut responses) = client.lease_keep_alive(id).await?;
        c.kill_member(leader);
        // Renew through the failover for longer than the TTL; like etcd's Go client, open the
        // keep-alive stream again if the failover ended it.
        let until = Instant::now() + Duration::from_secs(12);
        while Instant::now() < until {
            let renewed = match keeper.keep_alive().await {
                Ok(()) => tokio::time::timeout(Duration::from_secs(2), responses.message()).await,
                Err(e) => Ok(Err(e)),
            };
            match renewed {
                Ok(Ok(Some(r))) => assert!(r.ttl() > 0, "{engine}: lease {id:x} lost"),
                Ok(Ok(None) | Err(_)) => {
                    if let Ok((k, r)) = client.lease_keep_alive(id).await {
                        (keeper, responses) = (k, r);
                    }
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let got = client.get("leased", None).await?;
        assert_eq!(got.count(), 1, "{engine}: key gone while kept alive");
        drop(keeper);
        drop(responses);
        // Stop renewing: the new leader expires the lease (TTL 8 s, checked every 500 ms).
        let deadline = Instant::now() + Duration::from_secs(25);
        loop {
            let got = client
                .get("leased", Some(GetOptions::new().with_count_only()))
                .await?;
            if got.count() == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("{engine}: lease {id:x} never expired on the new leader");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let ttl = client.lease_time_to_live(id, None).await?;
        assert_eq!(ttl.ttl(), -1, "{engine}");
    }
    Ok(())
}
