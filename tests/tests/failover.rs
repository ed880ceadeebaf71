//! Watch and lease guarantees across member failures on a 3-member cluster, both engines.

use anyhow::{Context, Result, bail};
use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use metastore_tests::{Cluster, ENGINES, retry_until};
use std::time::{Duration, Instant};

const HALF_SECOND: Duration = Duration::from_millis(500);

/// Retries `put` until it is acknowledged (the cluster may be electing a leader).
async fn put_acked(c: &mut Client, key: &str, value: &str) -> Result<i64> {
    retry_until(&format!("put {key}"), Duration::from_secs(20), || {
        let mut c = c.clone();
        async move {
            let r = c.put(key, value, None).await?;
            Ok(Some(r.header().map(|h| h.revision()).unwrap_or_default()))
        }
    })
    .await
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

/// Renews lease `id` through `client` every `every` until `until`, asserting it never
/// lapses; like etcd's Go client, opens the keep-alive stream again if a failover ended it.
async fn keep_renewing(
    mut client: Client,
    id: i64,
    every: Duration,
    until: Instant,
    what: String,
) -> Result<Client> {
    let (mut keeper, mut responses) = client.lease_keep_alive(id).await?;
    while Instant::now() < until {
        let renewed = match keeper.keep_alive().await {
            Ok(()) => tokio::time::timeout(Duration::from_secs(2), responses.message()).await,
            Err(e) => Ok(Err(e)),
        };
        match renewed {
            Ok(Ok(Some(r))) => assert!(r.ttl() > 0, "{what}: lease {id:x} lost"),
            Ok(Ok(None) | Err(_)) => {
                if let Ok((k, r)) = client.lease_keep_alive(id).await {
                    (keeper, responses) = (k, r);
                }
            }
            Err(_) => {}
        }
        tokio::time::sleep(every).await;
    }
    Ok(client)
}

/// Waits until `key` is gone (its lease expired), failing after `deadline`.
async fn wait_gone(client: &mut Client, key: &str, deadline: Instant, what: &str) -> Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    retry_until(&format!("{what}: {key} expired"), left, || {
        let mut client = client.clone();
        async move {
            let got = client
                .get(key, Some(GetOptions::new().with_count_only()))
                .await?;
            Ok((got.count() == 0).then_some(()))
        }
    })
    .await
}

/// Keep-alives keep leases alive across a leader failure, through a gateway whose member
/// survives and through one whose member (the leader) dies, so that gateway's upstream
/// keep-alive stream moves to another member. The new leader gives every lease a fresh TTL;
/// a lease nobody renews expires within its TTL plus the election, and the kept ones expire
/// once their renewals stop.
#[tokio::test]
async fn leases_survive_leader_failover_and_expire_on_the_new_leader() -> Result<()> {
    const TTL: i64 = 8;
    let leased = |id: i64| Some(etcd_client::PutOptions::new().with_lease(id));
    for engine in ENGINES {
        let mut c = Cluster::start(engine, 3, 3, &[])?;
        let leader = c.leader(0).await?;
        let survivor = (leader + 1) % 3;
        let mut observer = c.client(survivor).await?;
        let unrenewed = observer.lease_grant(TTL, None).await?.id();
        observer.put("unrenewed", "v", leased(unrenewed)).await?;
        // Gateway g prefers member g: one keeper behind a survivor, one behind the leader.
        let mut keepers = Vec::new();
        for g in [survivor, leader] {
            let mut client = c.client(g).await?;
            let id = client.lease_grant(TTL, None).await?.id();
            client.put(format!("leased/{g}"), "v", leased(id)).await?;
            keepers.push((g, client, id));
        }
        let killed = Instant::now();
        c.kill_member(leader);
        let until = killed + Duration::from_secs(12);
        let tasks: Vec<_> = keepers
            .into_iter()
            .map(|(g, client, id)| {
                let what = format!("{engine}, gateway {g}");
                (
                    g,
                    id,
                    tokio::spawn(keep_renewing(client, id, HALF_SECOND, until, what)),
                )
            })
            .collect();
        let bound = killed + Duration::from_secs(TTL as u64 + 6);
        wait_gone(&mut observer, "unrenewed", bound, engine).await?;
        let mut kept = Vec::new();
        for (g, id, task) in tasks {
            let client = task.await??;
            let key = format!("leased/{g}");
            let got = observer.get(key.as_str(), None).await?;
            assert_eq!(got.count(), 1, "{engine}: {key} gone while kept alive");
            kept.push((key, id, client));
        }
        // Renewals stopped (the clients' keep-alive streams are dropped): the new leader
        // expires those leases too (TTL 8 s, checked every 500 ms).
        let deadline = Instant::now() + Duration::from_secs(25);
        for (key, id, client) in kept {
            drop(client);
            wait_gone(&mut observer, &key, deadline, engine).await?;
            let ttl = observer.lease_time_to_live(id, None).await?;
            assert_eq!(ttl.ttl(), -1, "{engine}");
        }
    }
    Ok(())
}

/// With lease checkpointing on, a new leader gives a lease the remaining TTL of its last
/// checkpoint instead of a fresh TTL, so a failover does not extend a lease nobody renews; a
/// lease that is kept alive (its renewals clear the checkpoint) lives on.
#[tokio::test]
async fn lease_checkpoints_hold_remaining_ttl_across_failover() -> Result<()> {
    const TTL: i64 = 10;
    let flags = [
        "--experimental-enable-lease-checkpoint",
        "--experimental-lease-checkpoint-interval",
        "1s",
    ];
    let leased = |id: i64| Some(etcd_client::PutOptions::new().with_lease(id));
    for engine in ENGINES {
        let mut c = Cluster::start(engine, 3, 3, &flags)?;
        let leader = c.leader(0).await?;
        let survivor = (leader + 1) % 3;
        let mut client = c.client(survivor).await?;
        let granted = Instant::now();
        let idle = client.lease_grant(TTL, None).await?.id();
        client.put("idle", "v", leased(idle)).await?;
        let kept = client.lease_grant(TTL, None).await?.id();
        client.put("kept", "v", leased(kept)).await?;
        // Renewed every 1.5 s: checkpoints are recorded between renewals and cleared by them.
        let until = granted + Duration::from_secs(22);
        let what = format!("{engine}, checkpointed");
        let every = Duration::from_millis(1500);
        let renewer = c.client(survivor).await?;
        let renewing = tokio::spawn(keep_renewing(renewer, kept, every, until, what));
        // A checkpoint every 1 s or so (the lessor ticks every 500 ms): by 6 s at least two
        // have recorded what is left.
        tokio::time::sleep(Duration::from_secs(6)).await;
        c.kill_member(leader);
        c.leader(survivor).await?;
        let left = client.lease_time_to_live(idle, None).await?.ttl();
        let asked = Instant::now();
        assert!(
            left <= TTL - 3,
            "{engine}: the new leader gave {left} s, not the checkpointed remaining TTL"
        );
        // And it expires then, not a fresh TTL later.
        let bound = asked + Duration::from_secs(left as u64 + 2);
        wait_gone(&mut client, "idle", bound, engine).await?;
        let mut client = renewing.await??;
        let got = client.get("kept", None).await?;
        assert_eq!(got.count(), 1, "{engine}: the kept-alive lease lived");
    }
    Ok(())
}
