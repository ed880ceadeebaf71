//! The v3lock and v3election services through real processes with the `etcd-client` crate,
//! on every engine and topology: etcd's owner keys, hand-over on unlock, revoke, lease expiry
//! and resignation, exclusivity under contention (checked on the data, not on timing), a
//! cancelled wait giving its claim up, Observe, and etcd's error texts.

use anyhow::{Context, Result, bail};
use etcd_client::{
    Client, Compare, CompareOp, LockOptions, ProclaimOptions, ResignOptions, Txn, TxnOp,
};
use metastore_tests::{Deployment, grpc_status, matrix, retry_until};
use std::time::Duration;

matrix!(
    lock_owner_keys_and_hand_over,
    lock_is_exclusive_under_contention,
    a_waiter_whose_lease_ends_does_not_get_the_lock,
    election_campaign_proclaim_observe_resign,
);

const WAIT: Duration = Duration::from_secs(20);

/// Whether `fut` is still waiting after `ms` milliseconds.
async fn still_waiting<F: std::future::Future + Unpin>(fut: &mut F, ms: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(ms), fut)
        .await
        .is_err()
}

async fn lock_owner_keys_and_hand_over(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    let l1 = c.lease_grant(30, None).await?.id();
    let l2 = c.lease_grant(30, None).await?.id();
    let first = c.lock("m", Some(LockOptions::new().with_lease(l1))).await?;
    assert_eq!(first.key(), format!("m/{l1:x}").as_bytes());
    let held = c.get(first.key(), None).await?;
    let kv = held.kvs().first().context("owner key missing")?;
    assert_eq!((kv.lease(), kv.value()), (l1, &b""[..]));
    assert_eq!(
        first.header().map(|h| h.revision()),
        Some(kv.create_revision())
    );

    // A second owner waits until the first unlocks.
    let mut c2 = c.clone();
    let mut second =
        Box::pin(async move { c2.lock("m", Some(LockOptions::new().with_lease(l2))).await });
    assert!(still_waiting(&mut second, 500).await, "lock held twice");
    // The same lease locking again is the same owner: at once, same key.
    let again = c.lock("m", Some(LockOptions::new().with_lease(l1))).await?;
    assert_eq!(again.key(), first.key());
    let unlocked = c.unlock(first.key()).await?;
    let second = tokio::time::timeout(WAIT, second).await??;
    assert_eq!(second.key(), format!("m/{l2:x}").as_bytes());
    let unlock_rev = unlocked.header().map_or(0, |h| h.revision());
    assert!(second.header().map_or(0, |h| h.revision()) >= unlock_rev);

    // Revoking the owner's lease hands over too.
    let l3 = c.lease_grant(30, None).await?.id();
    let mut c3 = c.clone();
    let mut third =
        Box::pin(async move { c3.lock("m", Some(LockOptions::new().with_lease(l3))).await });
    assert!(still_waiting(&mut third, 300).await, "lock held twice");
    c.lease_revoke(l2).await?;
    let third = tokio::time::timeout(WAIT, third).await??;
    assert_eq!(third.key(), format!("m/{l3:x}").as_bytes());

    // A waiter that goes away gives its claim up.
    let l4 = c.lease_grant(30, None).await?.id();
    let mut c4 = c.clone();
    let mut fourth =
        Box::pin(async move { c4.lock("m", Some(LockOptions::new().with_lease(l4))).await });
    assert!(still_waiting(&mut fourth, 300).await, "lock held twice");
    assert_eq!(c.get(format!("m/{l4:x}"), None).await?.count(), 1);
    drop(fourth);
    retry_until("the abandoned claim deleted", WAIT, || {
        let mut c = c.clone();
        async move { Ok((c.get(format!("m/{l4:x}"), None).await?.count() == 0).then_some(())) }
    })
    .await?;

    // A lock that expires with its (never renewed) lease is handed over.
    c.unlock(third.key()).await?;
    let short = c.lease_grant(2, None).await?.id();
    let mine = c
        .lock("m", Some(LockOptions::new().with_lease(short)))
        .await?;
    let l5 = c.lease_grant(30, None).await?.id();
    let next =
        tokio::time::timeout(WAIT, c.lock("m", Some(LockOptions::new().with_lease(l5)))).await??;
    assert_eq!(
        c.get(mine.key(), None).await?.count(),
        0,
        "expired owner key"
    );
    assert_eq!(next.key(), format!("m/{l5:x}").as_bytes());

    // No lease: the server grants one of 60 s nobody keeps alive.
    let free = c.lock("free", None).await?;
    let kv = c.get(free.key(), None).await?.kvs().first().cloned();
    let lease = kv.context("owner key missing")?.lease();
    let ttl = c.lease_time_to_live(lease, None).await?;
    assert_eq!(ttl.granted_ttl(), 60);

    // A lease that does not exist: etcd's text, with code Unknown as etcd's lock service sends.
    let e = c
        .lock("m", Some(LockOptions::new().with_lease(0x7777)))
        .await
        .expect_err("lock under a missing lease");
    assert_eq!(
        grpc_status(&e),
        (
            tonic::Code::Unknown,
            "etcdserver: requested lease not found".into()
        )
    );
    Ok(())
}

/// A Lock waiting behind a holder while its own (never renewed) lease ends does not get the
/// lock when the holder lets go: its owner key is gone, and it is told so as etcd 3.5 does.
async fn a_waiter_whose_lease_ends_does_not_get_the_lock(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    let long = c.lease_grant(60, None).await?.id();
    let short = c.lease_grant(2, None).await?.id();
    let held = c
        .lock("exp", Some(LockOptions::new().with_lease(long)))
        .await?;
    let mut c2 = c.clone();
    let mut waiter = Box::pin(async move {
        c2.lock("exp", Some(LockOptions::new().with_lease(short)))
            .await
    });
    assert!(still_waiting(&mut waiter, 300).await, "lock held twice");
    retry_until("the waiter's key gone with its lease", WAIT, || {
        let mut c = c.clone();
        async move { Ok((c.get(format!("exp/{short:x}"), None).await?.count() == 0).then_some(())) }
    })
    .await?;
    c.unlock(held.key()).await?;
    let e = tokio::time::timeout(WAIT, waiter)
        .await?
        .expect_err("a waiter without an owner key got the lock");
    assert_eq!(
        grpc_status(&e),
        (tonic::Code::Unknown, "mutex: session is expired".into())
    );
    // The lock is free: the next owner gets it at once.
    let next = c
        .lock("exp", Some(LockOptions::new().with_lease(long)))
        .await?;
    assert_eq!(next.key(), format!("exp/{long:x}").as_bytes());
    Ok(())
}

/// Workers take turns on one lock and each, while holding it, increments a counter with a
/// txn that only succeeds if nobody wrote the counter since it was read: a second holder at
/// the same time makes a txn fail (or loses an increment), so the count proves exclusivity.
async fn lock_is_exclusive_under_contention(d: Deployment) -> Result<()> {
    const WORKERS: usize = 4;
    const ROUNDS: usize = 8;
    let c = d.client().await?;
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let mut c: Client = c.clone();
        tasks.push(tokio::spawn(async move {
            let lease = c.lease_grant(30, None).await?.id();
            for _ in 0..ROUNDS {
                let held = c.lock("counter-lock", Some(LockOptions::new().with_lease(lease)));
                let held = tokio::time::timeout(WAIT * 2, held).await??;
                let got = c.get("counter", None).await?;
                let (n, rev) = match got.kvs().first() {
                    Some(kv) => (kv.value_str()?.parse::<u64>()?, kv.mod_revision()),
                    None => (0, 0),
                };
                let t = Txn::new()
                    .when([Compare::mod_revision("counter", CompareOp::Equal, rev)])
                    .and_then([TxnOp::put("counter", (n + 1).to_string(), None)]);
                if !c.txn(t).await?.succeeded() {
                    bail!("worker {w}: counter changed under the lock");
                }
                c.unlock(held.key()).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut c = c;
    let got = c.get("counter", None).await?;
    let n: usize = got.kvs()[0].value_str()?.parse()?;
    assert_eq!(n, WORKERS * ROUNDS);
    Ok(())
}

async fn election_campaign_proclaim_observe_resign(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    let e = c.leader("e").await.expect_err("no candidate yet");
    assert_eq!(
        grpc_status(&e),
        (tonic::Code::Unknown, "election: no leader".into())
    );
    let mut observe = c.observe("e").await?;
    let l1 = c.lease_grant(30, None).await?.id();
    let won = c.campaign("e", "v1", l1).await?;
    let k1 = won.leader().context("leader key")?.clone();
    assert_eq!(k1.key(), format!("e/{l1:x}").as_bytes());
    assert_eq!((k1.name(), k1.lease()), (&b"e"[..], l1));
    assert_eq!(Some(k1.rev()), won.header().map(|h| h.revision()));
    let seen = tokio::time::timeout(WAIT, observe.message()).await??;
    let kv = seen.context("observe ended")?.kv().cloned().context("kv")?;
    assert_eq!((kv.key(), kv.value()), (k1.key(), &b"v1"[..]));

    // A second candidate waits while the first leads.
    let l2 = c.lease_grant(30, None).await?.id();
    let mut c2 = c.clone();
    let mut second = Box::pin(async move { c2.campaign("e", "v2", l2).await });
    assert!(still_waiting(&mut second, 500).await, "two leaders");

    // Proclaim by the leader: Leader and Observe see the new value.
    let opts = ProclaimOptions::new().with_leader(k1.clone());
    c.proclaim("v1b", Some(opts)).await?;
    let now = c.leader("e").await?;
    assert_eq!(now.kv().map(|kv| kv.value()), Some(&b"v1b"[..]));
    let seen = tokio::time::timeout(WAIT, observe.message()).await??;
    let kv = seen.context("observe ended")?.kv().cloned().context("kv")?;
    assert_eq!(kv.value(), b"v1b");

    // Proclaim with a key that is not the one the leader holds (other revision): not leader.
    let stale = k1.clone().with_rev(k1.rev() + 1000);
    let e = c
        .proclaim("x", Some(ProclaimOptions::new().with_leader(stale)))
        .await
        .expect_err("proclaim by a stale leader");
    assert_eq!(
        grpc_status(&e),
        (tonic::Code::Unknown, "election: not leader".into())
    );
    let e = c
        .proclaim("x", None)
        .await
        .expect_err("proclaim without leader");
    assert_eq!(
        grpc_status(&e),
        (
            tonic::Code::Unknown,
            "\"leader\" field must be provided".into()
        )
    );

    // Resign hands over to the waiting candidate; Observe sees it.
    c.resign(Some(ResignOptions::new().with_leader(k1.clone())))
        .await?;
    let second = tokio::time::timeout(WAIT, second).await??;
    let k2 = second.leader().context("leader key")?.clone();
    assert_eq!(k2.key(), format!("e/{l2:x}").as_bytes());
    let seen = tokio::time::timeout(WAIT, observe.message()).await??;
    let kv = seen.context("observe ended")?.kv().cloned().context("kv")?;
    assert_eq!((kv.key(), kv.value()), (k2.key(), &b"v2"[..]));

    // Campaigning again with the same lease and another value proclaims it.
    let again = c.campaign("e", "v2b", l2).await?;
    assert_eq!(again.leader().map(|k| k.rev()), Some(k2.rev()));
    let now = c.leader("e").await?;
    assert_eq!(now.kv().map(|kv| kv.value()), Some(&b"v2b"[..]));

    // Revoking the leader's lease ends its leadership.
    c.lease_revoke(l2).await?;
    let e = c.leader("e").await.expect_err("no leader after revoke");
    assert_eq!(grpc_status(&e).1, "election: no leader");
    Ok(())
}
