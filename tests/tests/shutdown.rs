//! Clean shutdown on SIGTERM: a gateway ends its open streams with `etcdserver: server
//! stopped` (clients reconnect elsewhere) and exits within its bound; a storaged leader hands
//! leadership to another voter before it exits, and no acknowledged write is lost.

use anyhow::{Context, Result};
use metastore_tests::Cluster;
use metastore_tests::watching::{next, watch};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the tests allow a process after SIGTERM: its 5 s shutdown timeout plus start-up slack.
const BOUND: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_ends_streams_and_exits_on_sigterm() -> Result<()> {
    for engine in ["memory", "rocksdb"] {
        let mut c = Cluster::start(engine, 1, 2, &[])?;
        let mut client = c.client(0).await?;
        let (mut stream, _) = watch(&mut client, "w", None).await?;
        let (_keeper, mut renewals) = {
            let lease = client.lease_grant(30, None).await?;
            client.lease_keep_alive(lease.id()).await?
        };
        let (took, status) = c.terminate_gateway(0, BOUND)?;
        assert!(status.success(), "{engine}: gateway exit status {status}");
        // The watch ends with etcd's shutdown error, not a broken connection.
        let ended = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .context("watch still open after the gateway exited")?;
        let err = ended.expect_err("the watch ends with an error");
        let (code, msg) = metastore_tests::grpc_status(&err);
        assert_eq!(
            (code, msg.as_str()),
            (tonic::Code::Unavailable, "etcdserver: server stopped"),
            "{engine}: {err}"
        );
        let renewal = tokio::time::timeout(Duration::from_secs(5), renewals.message()).await?;
        assert!(
            renewal.is_err(),
            "{engine}: keep-alive stream ends: {renewal:?}"
        );
        // With no call in flight the gateway did not wait out its timeout.
        assert!(
            took < Duration::from_secs(4),
            "{engine}: took {took:?} to stop"
        );
        // The other gateway serves on, and a watch reopened there sees new writes.
        let mut other = c.client(1).await?;
        let (mut stream, _) = watch(&mut other, "w", None).await?;
        other.put("w", "after", None).await?;
        let r = next(&mut stream).await?;
        assert_eq!(r.events()[0].kv().context("kv")?.value(), b"after");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_hands_over_on_sigterm_and_loses_nothing() -> Result<()> {
    for engine in ["memory", "rocksdb"] {
        let mut c = Cluster::start_logged(engine, 3, 1, &[])?;
        let old = c.leader(0).await?;
        // A writer puts keys one after another through the stop; every acknowledged key is
        // recorded.
        let acked = Arc::new(Mutex::new(Vec::<String>::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (acked, stop) = (acked.clone(), stop.clone());
            let mut client = c.client(0).await?;
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = format!("k/{i:06}");
                    if client.put(key.as_str(), "v", None).await.is_ok() {
                        acked.lock().expect("acked").push(key);
                    }
                    i += 1;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, status) = c.terminate_member(old, BOUND)?;
        assert!(status.success(), "{engine}: storaged exit status {status}");
        let log = std::fs::read_to_string(c.member_log(old))?;
        assert!(
            log.contains("handed leadership over before stopping"),
            "{engine}: the leader stopped without handing over:\n{log}"
        );
        let new = c.leader(0).await?;
        assert_ne!(new, old, "{engine}");
        let before = acked.lock().expect("acked").len();
        metastore_tests::retry_until("writes go on", Duration::from_secs(20), || {
            let acked = acked.clone();
            async move { Ok((acked.lock().expect("acked").len() > before + 20).then_some(())) }
        })
        .await?;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.await?;
        let acked = acked.lock().expect("acked").clone();
        let mut client = c.client(0).await?;
        let got = client
            .get("k/", Some(etcd_client::GetOptions::new().with_prefix()))
            .await?;
        let stored: std::collections::BTreeSet<&str> = got
            .kvs()
            .iter()
            .map(|kv| kv.key_str())
            .collect::<Result<_, _>>()?;
        let lost: Vec<&String> = acked
            .iter()
            .filter(|k| !stored.contains(k.as_str()))
            .collect();
        assert!(
            lost.is_empty(),
            "{engine}: acknowledged writes lost: {lost:?}"
        );
        // The member comes back and catches up.
        c.start_member(old)?;
        let last = acked.last().context("some writes")?.clone();
        metastore_tests::retry_until(
            "the stopped member catches up",
            Duration::from_secs(20),
            || {
                let (c, last) = (&c, last.clone());
                async move { Ok(c.member_get(old, &last).await.ok().flatten()) }
            },
        )
        .await?;
    }
    Ok(())
}
