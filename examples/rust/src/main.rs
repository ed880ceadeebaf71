//! The `etcd-client` crate against MetaStore: put/get and a prefix range, a txn with
//! compare/then/else, a watch receiving live events, leases (kept alive, and expiring with
//! their key), and etcd's Lock and Election services. Every printed line is deterministic, so
//! `examples/rust/expected.txt` holds the whole output.
//!
//! Endpoints: `ETCD_ENDPOINTS` (comma-separated, default 127.0.0.1:2379).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, LockOptions, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, WatchOptions,
};

const PREFIX: &str = "examples/rust/";

#[tokio::main]
async fn main() -> Result<()> {
    let endpoints = std::env::var("ETCD_ENDPOINTS").unwrap_or_else(|_| "127.0.0.1:2379".into());
    let endpoints: Vec<&str> = endpoints.split(',').collect();
    let mut client = Client::connect(endpoints, None).await?;

    // A clean slate: earlier runs left their keys under the prefix.
    client
        .delete(
            PREFIX,
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await?;

    kv(&mut client).await?;
    txn(&mut client).await?;
    watch(&mut client).await?;
    leases(&mut client).await?;
    lock(&mut client).await?;
    election(&mut client).await?;
    println!("done");
    Ok(())
}

fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

async fn kv(client: &mut Client) -> Result<()> {
    client.put(key("greeting"), "hello", None).await?;
    let resp = client.get(key("greeting"), None).await?;
    let kv = resp.kvs().first().context("greeting not found")?;
    println!("get {} = {}", kv.key_str()?, kv.value_str()?);

    for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
        client
            .put(key(&format!("fruit/{name}")), (i + 1).to_string(), None)
            .await?;
    }
    // A range over the prefix, at most 3 keys, sorted by key.
    let options = GetOptions::new()
        .with_prefix()
        .with_limit(3)
        .with_sort(SortTarget::Key, SortOrder::Ascend);
    let resp = client.get(key("fruit/"), Some(options)).await?;
    println!(
        "range {} limit 3: count={} more={}",
        key("fruit/"),
        resp.count(),
        resp.more()
    );
    for kv in resp.kvs() {
        println!("  {} = {}", kv.key_str()?, kv.value_str()?);
    }
    Ok(())
}

async fn txn(client: &mut Client) -> Result<()> {
    let config = key("config");
    client.put(config.as_str(), "v1", None).await?;
    for want in ["v1", "v1"] {
        let txn = Txn::new()
            .when([Compare::value(config.as_str(), CompareOp::Equal, want)])
            .and_then([TxnOp::put(config.as_str(), "v2", None)])
            .or_else([TxnOp::put(config.as_str(), "v3", None)]);
        let resp = client.txn(txn).await?;
        let now = client.get(config.as_str(), None).await?;
        let value = now.kvs().first().context("config not found")?.value_str()?;
        println!(
            "txn if {config} == {want}: succeeded={}, now {value}",
            resp.succeeded()
        );
    }
    Ok(())
}

async fn watch(client: &mut Client) -> Result<()> {
    let watched = key("watched");
    let start = client.get(watched.as_str(), None).await?;
    let revision = start.header().context("no header")?.revision();
    // From the next revision on: only what happens after this point.
    let options = WatchOptions::new().with_start_revision(revision + 1);
    let mut stream = client.watch(watched.as_str(), Some(options)).await?;
    client.put(watched.as_str(), "first", None).await?;
    client.put(watched.as_str(), "second", None).await?;
    client.delete(watched.as_str(), None).await?;
    let mut seen = 0;
    while let Some(resp) = stream.message().await? {
        for event in resp.events() {
            let kv = event.kv().context("event without kv")?;
            let kind = match event.event_type() {
                EventType::Put => "PUT",
                EventType::Delete => "DELETE",
            };
            println!("watch {kind} {} {:?}", kv.key_str()?, kv.value_str()?);
            seen += 1;
        }
        if seen == 3 {
            stream.cancel(resp.watch_id()).await?;
            return Ok(());
        }
    }
    bail!("watch ended early")
}

async fn leases(client: &mut Client) -> Result<()> {
    // Kept alive: the key outlives its 2 s TTL several times over.
    let session = key("session");
    let kept = client.lease_grant(2, None).await?.id();
    let attached = PutOptions::new().with_lease(kept);
    client
        .put(session.as_str(), "alive", Some(attached))
        .await?;
    let (mut keeper, mut acks) = client.lease_keep_alive(kept).await?;
    for _ in 0..5 {
        keeper.keep_alive().await?;
        acks.message().await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let present = !client.get(session.as_str(), None).await?.kvs().is_empty();
    println!("lease kept alive for 5s: {session} present={present}");
    client.lease_revoke(kept).await?;
    let present = !client.get(session.as_str(), None).await?.kvs().is_empty();
    println!("lease revoked: {session} present={present}");

    // Left to expire: the key is deleted with its lease; a watch sees the delete.
    let ephemeral = key("ephemeral");
    let short = client.lease_grant(2, None).await?.id();
    let attached = PutOptions::new().with_lease(short);
    let put = client
        .put(ephemeral.as_str(), "soon gone", Some(attached))
        .await?;
    let from = put.header().context("no header")?.revision() + 1;
    let options = WatchOptions::new().with_start_revision(from);
    let mut stream = client.watch(ephemeral.as_str(), Some(options)).await?;
    // The first answer confirms the watch; the delete comes after it.
    let expiry = async {
        loop {
            let resp = stream.message().await?.context("watch ended early")?;
            if let Some(event) = resp.events().first() {
                return anyhow::Ok(event.clone());
            }
        }
    };
    let event = tokio::time::timeout(Duration::from_secs(15), expiry)
        .await
        .context("the lease did not expire within 15 s")??;
    let kind = match event.event_type() {
        EventType::Put => "PUT",
        EventType::Delete => "DELETE",
    };
    let kv = event.kv().context("event without kv")?;
    println!("lease expired: watch saw {kind} {}", kv.key_str()?);
    let ttl = client.lease_time_to_live(short, None).await?.ttl();
    println!("lease TTL after expiry: {ttl}");
    Ok(())
}

async fn lock(client: &mut Client) -> Result<()> {
    let first = client.lease_grant(5, None).await?.id();
    let second = client.lease_grant(5, None).await?.id();
    let name = key("lock");
    let held = client
        .lock(name.as_str(), Some(LockOptions::new().with_lease(first)))
        .await?;
    println!("lock: first lease holds the lock");
    let mut other = client.clone();
    let waiting = other.lock(name.as_str(), Some(LockOptions::new().with_lease(second)));
    let gave_up = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .is_err();
    println!("lock: second lease waited 1s and gave up: {gave_up}");
    client.unlock(held.key()).await?;
    let now = client
        .lock(name.as_str(), Some(LockOptions::new().with_lease(second)))
        .await?;
    println!("lock: after unlock the second lease holds the lock");
    client.unlock(now.key()).await?;
    client.lease_revoke(first).await?;
    client.lease_revoke(second).await?;
    Ok(())
}

async fn election(client: &mut Client) -> Result<()> {
    let name = key("election");
    let first = client.lease_grant(5, None).await?.id();
    let second = client.lease_grant(5, None).await?.id();
    let alpha = client.campaign(name.as_str(), "alpha", first).await?;
    let alpha = alpha.leader().context("no leader key")?.clone();
    let mut other = client.clone();
    let contender = name.clone();
    let beta = tokio::spawn(async move { other.campaign(contender, "beta", second).await });
    let leader = client.leader(name.as_str()).await?;
    let value = leader.kv().context("no leader")?.value_str()?.to_owned();
    println!("election: leader is {value}");
    client
        .proclaim("alpha-2", Some(alpha_options(&alpha)))
        .await?;
    let leader = client.leader(name.as_str()).await?;
    let value = leader.kv().context("no leader")?.value_str()?.to_owned();
    println!("election: leader proclaims {value}");
    client.resign(Some(alpha_resign(&alpha))).await?;
    beta.await??;
    let leader = client.leader(name.as_str()).await?;
    let value = leader.kv().context("no leader")?.value_str()?.to_owned();
    println!("election: after resign the leader is {value}");
    client.lease_revoke(first).await?;
    client.lease_revoke(second).await?;
    Ok(())
}

fn alpha_options(leader: &etcd_client::LeaderKey) -> etcd_client::ProclaimOptions {
    etcd_client::ProclaimOptions::new().with_leader(leader.clone())
}

fn alpha_resign(leader: &etcd_client::LeaderKey) -> etcd_client::ResignOptions {
    etcd_client::ResignOptions::new().with_leader(leader.clone())
}
