//! Leases through real processes, on every engine and on 1 and 3 members: grant rules and
//! errors, keys that die with their lease (and the DELETE events watchers see), keep-alive,
//! revoke, many keep-alive streams sharing a gateway, gateway and storaged restarts.

use anyhow::{Context, Result};
use etcd_client::{
    Client, EventType, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions, WatchOptions,
};
use metastore_proto::etcdserverpb::LeaseKeepAliveRequest;
use metastore_proto::etcdserverpb::lease_client::LeaseClient;
use metastore_tests::{
    Deployment, RequestStream, channel, grpc_status, matrix, retry_until, stream_of,
};
use std::time::{Duration, Instant};

matrix!(
    lease_lifecycle_and_errors,
    expiry_deletes_keys_and_keep_alive_holds,
    gateway_restart_keeps_leases,
    leases_survive_restart,
);

async fn exists(c: &mut Client, key: &str) -> Result<bool> {
    Ok(c.get(key, None).await?.count() == 1)
}

/// Waits until `key` is gone (its lease expired).
async fn gone(c: &Client, key: &str, timeout: Duration) -> Result<()> {
    retry_until(&format!("{key} deleted by its lease"), timeout, || {
        let mut c = c.clone();
        async move { Ok((!exists(&mut c, key).await?).then_some(())) }
    })
    .await
}

/// Renews `leases` (all of TTL `ttl`) over `streams` raw keep-alive streams of one gateway
/// every 500 ms until `until`, sending each stream's renewals at once without waiting, with
/// an unknown lease among them. Checks that every stream is answered in order, known leases
/// at full TTL and the unknown one with TTL 0.
async fn renew_many(
    endpoint: String,
    leases: Vec<i64>,
    streams: usize,
    ttl: i64,
    until: Instant,
) -> Result<()> {
    const UNKNOWN: i64 = 0x7a7a_7a7a;
    let mut tasks = Vec::new();
    for (s, chunk) in leases.chunks(leases.len().div_ceil(streams)).enumerate() {
        let mut ids = chunk.to_vec();
        ids.insert(ids.len() / 2, UNKNOWN);
        let mut lc = LeaseClient::new(channel(&endpoint).await?);
        tasks.push(tokio::spawn(async move {
            let (tx, rx) = tokio::sync::mpsc::channel(ids.len());
            let mut answers = lc.lease_keep_alive(RequestStream(rx)).await?.into_inner();
            while Instant::now() < until {
                for &id in &ids {
                    tx.send(LeaseKeepAliveRequest { id }).await?;
                }
                for &id in &ids {
                    let a = answers.message().await?.context("answer")?;
                    let want = if id == UNKNOWN { 0 } else { ttl };
                    assert_eq!((a.id, a.ttl), (id, want), "stream {s}: answers in order");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn lease_lifecycle_and_errors(d: Deployment) -> Result<()> {
    let engine = d.case;
    let mut c = d.client().await?;
    let g = c.lease_grant(1, None).await?;
    assert_eq!(g.ttl(), 2, "{engine}: TTL raised to the minimum");
    assert!(g.id() > 0);
    let rev = g.header().map(|h| h.revision());
    assert_eq!(rev, Some(1), "a grant takes no revision");

    // Concurrent grants all succeed, each with an id of its own.
    let grants = (0..200).map(|_| {
        let mut c = c.clone();
        async move { c.lease_grant(30, None).await.map(|g| g.id()) }
    });
    let mut ids = futures::future::try_join_all(grants).await?;
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200, "{engine}: distinct server-chosen ids");
    for id in ids {
        c.lease_revoke(id).await?;
    }

    let chosen = c
        .lease_grant(60, Some(LeaseGrantOptions::new().with_id(4242)))
        .await?;
    assert_eq!((chosen.id(), chosen.ttl()), (4242, 60));
    let err = c
        .lease_grant(60, Some(LeaseGrantOptions::new().with_id(4242)))
        .await
        .expect_err("dup");
    assert_eq!(
        grpc_status(&err),
        (
            tonic::Code::FailedPrecondition,
            "etcdserver: lease already exists".into()
        )
    );
    let err = c
        .lease_grant(9_000_000_001, None)
        .await
        .expect_err("too large");
    assert_eq!(
        grpc_status(&err),
        (
            tonic::Code::OutOfRange,
            "etcdserver: too large lease TTL".into()
        )
    );

    for k in ["l/a", "l/b", "l/c"] {
        c.put(k, "v", Some(PutOptions::new().with_lease(4242)))
            .await?;
    }
    c.put("l/moved", "v", Some(PutOptions::new().with_lease(4242)))
        .await?;
    c.put("l/moved", "v2", None).await?; // detaches
    let ttl = c
        .lease_time_to_live(4242, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await?;
    assert_eq!(ttl.granted_ttl(), 60);
    assert!(ttl.ttl() > 55 && ttl.ttl() <= 60);
    let keys: Vec<&[u8]> = ttl.keys().iter().map(|k| k.as_slice()).collect();
    assert_eq!(keys, [&b"l/a"[..], b"l/b", b"l/c"]);
    let leases = c.leases().await?;
    assert_eq!(leases.leases().len(), 2);

    // Revoke deletes every attached key in one revision; a watcher sees them together.
    let mut w = c
        .watch("l/", Some(WatchOptions::new().with_prefix()))
        .await?;
    assert!(w.message().await?.context("created")?.created());
    let before = c.get("l/", None).await?.header().context("h")?.revision();
    let revoked = c.lease_revoke(4242).await?;
    assert_eq!(revoked.header().map(|h| h.revision()), Some(before + 1));
    let r = tokio::time::timeout(Duration::from_secs(10), w.message())
        .await??
        .context("event")?;
    assert_eq!(r.events().len(), 3);
    assert!(
        r.events()
            .iter()
            .all(|e| e.event_type() == EventType::Delete)
    );
    assert!(!exists(&mut c, "l/a").await? && exists(&mut c, "l/moved").await?);

    // Unknown leases.
    let err = c.lease_revoke(4242).await.expect_err("gone");
    assert_eq!(
        grpc_status(&err),
        (
            tonic::Code::NotFound,
            "etcdserver: requested lease not found".into()
        )
    );
    let ttl = c.lease_time_to_live(4242, None).await?;
    assert_eq!(ttl.ttl(), -1);
    // Keep-alive of an unknown lease: TTL 0 and the stream goes on (raw client: the crate
    // turns TTL 0 into an error of its own).
    let mut lc = LeaseClient::new(channel(&d.endpoint()).await?);
    let asks = stream_of(vec![
        LeaseKeepAliveRequest { id: 4242 },
        LeaseKeepAliveRequest { id: 4242 },
    ]);
    let mut answers = lc.lease_keep_alive(asks).await?.into_inner();
    for _ in 0..2 {
        let a = answers.message().await?.context("answer")?;
        assert_eq!((a.id, a.ttl), (4242, 0), "unknown lease: TTL 0");
    }
    let err = c
        .put("x", "v", Some(PutOptions::new().with_lease(4242)))
        .await
        .expect_err("unknown");
    assert_eq!(
        grpc_status(&err),
        (
            tonic::Code::NotFound,
            "etcdserver: requested lease not found".into()
        )
    );
    Ok(())
}

async fn expiry_deletes_keys_and_keep_alive_holds(d: Deployment) -> Result<()> {
    let engine = d.case;
    let mut c = d.client().await?;
    let short = c.lease_grant(2, None).await?.id();
    let held = c.lease_grant(2, None).await?.id();
    c.put("e/short", "v", Some(PutOptions::new().with_lease(short)))
        .await?;
    c.put("e/held", "v", Some(PutOptions::new().with_lease(held)))
        .await?;
    let mut w = c.watch("e/short", None).await?;
    assert!(w.message().await?.context("created")?.created());

    // Meanwhile 100 more leases, with keys, renewed over 20 streams of the same gateway.
    let mut many = Vec::new();
    for i in 0..100 {
        let id = c.lease_grant(2, None).await?.id();
        c.put(
            format!("m/{i}"),
            "v",
            Some(PutOptions::new().with_lease(id)),
        )
        .await?;
        many.push(id);
    }
    let until = Instant::now() + Duration::from_secs(6);
    let renewing = tokio::spawn(renew_many(d.endpoint(), many, 20, 2, until));

    let (mut keeper, mut answers) = c.lease_keep_alive(held).await?;
    let start = Instant::now();
    // Renew `held` every 500 ms for three times its TTL.
    while start.elapsed() < Duration::from_secs(6) {
        keeper.keep_alive().await?;
        let a = answers.message().await?.context("answer")?;
        assert_eq!(a.ttl(), 2, "{engine}: renewed at full TTL");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        exists(&mut c, "e/held").await?,
        "{engine}: kept alive for 3x TTL"
    );
    renewing.await??;
    let kept = c
        .get("m/", Some(etcd_client::GetOptions::new().with_prefix()))
        .await?;
    assert_eq!(
        kept.count(),
        100,
        "{engine}: every lease renewed on 20 streams lived"
    );
    assert!(!exists(&mut c, "e/short").await?, "{engine}: expired");
    let r = tokio::time::timeout(Duration::from_secs(10), w.message())
        .await??
        .context("event")?;
    assert_eq!(r.events()[0].event_type(), EventType::Delete);
    assert_eq!(c.lease_time_to_live(short, None).await?.ttl(), -1);
    // Once renewals stop, the held lease expires too.
    drop(keeper);
    gone(&c, "e/held", Duration::from_secs(8)).await
}

/// A gateway SIGKILLed and restarted does not cost a lease whose client reconnects within
/// its TTL: leases live in storaged, and the restarted gateway renews them again.
async fn gateway_restart_keeps_leases(mut d: Deployment) -> Result<()> {
    let engine = d.case;
    let mut c = d.client().await?;
    let id = c.lease_grant(4, None).await?.id();
    c.put("g/k", "v", Some(PutOptions::new().with_lease(id)))
        .await?;
    let (mut keeper, mut answers) = c.lease_keep_alive(id).await?;
    keeper.keep_alive().await?;
    assert_eq!(answers.message().await?.context("answer")?.ttl(), 4);
    d.restart_gateway()?;
    // Like etcd's clients: reconnect and open the keep-alive stream again.
    let mut c = d.client().await?;
    let (mut keeper, mut answers) = c.lease_keep_alive(id).await?;
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        keeper.keep_alive().await?;
        let a = answers.message().await?.context("answer")?;
        assert_eq!(a.ttl(), 4, "{engine}: renewed after the gateway restart");
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    assert!(exists(&mut c, "g/k").await?, "{engine}: lease lived");
    let ttl = c.lease_time_to_live(id, None).await?;
    assert!(ttl.ttl() > 0, "{engine}");
    Ok(())
}

/// Leases and their keys survive a SIGKILL of every member; the restarted members give
/// every lease a fresh TTL, then expires the ones nobody renews.
async fn leases_survive_restart(mut d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    let id = c.lease_grant(3, None).await?.id();
    c.put("r/k", "v", Some(PutOptions::new().with_lease(id)))
        .await?;
    d.kill_members();
    d.start_members()?;
    let mut c = d.client().await?;
    let ttl = c
        .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await?;
    assert_eq!(ttl.granted_ttl(), 3);
    assert!(ttl.ttl() >= 2, "fresh TTL after restart");
    assert_eq!(ttl.keys().len(), 1);
    gone(&c, "r/k", Duration::from_secs(10)).await
}
