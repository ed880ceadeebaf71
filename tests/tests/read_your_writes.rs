//! A client sees its own changes through one gateway even when they create no revision, as
//! through one etcd member: after a compaction, HashKV and serializable reads served by a
//! member that applies late (failpoint: followers apply every entry 300 ms after it arrives)
//! already know of it; after `auth enable`, no read runs without a token on such a member.

use anyhow::{Context, Result};
use metastore_proto::etcdserverpb::auth_client::AuthClient;
use metastore_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use metastore_proto::etcdserverpb::{
    AuthEnableRequest, AuthRoleAddRequest, AuthUserAddRequest, AuthUserGrantRoleRequest,
};
use metastore_proto::etcdserverpb::{CompactionRequest, HashKvRequest, PutRequest, RangeRequest};
use metastore_tests::{Cluster, ENGINES, KvClient, channel, retry_until};
use std::time::Duration;

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

/// 3 members whose followers apply every entry 300 ms after it arrives, the leader's index,
/// and a channel to a gateway that prefers a follower.
async fn late_followers(engine: &str) -> Result<(Cluster, usize, tonic::transport::Channel)> {
    let slow = [("METASTORE_FAILPOINT_FOLLOWER_APPLY_DELAY_MS", "300")];
    let c = Cluster::start_env(engine, 3, 3, &[], &[], &slow)?;
    let leader = c.leader(0).await?;
    let ch = channel(&c.gateway((leader + 1) % 3)).await?;
    Ok((c, leader, ch))
}

/// Waits until every follower holds `value` at `key`, and so everything written before it.
async fn followers_hold(c: &Cluster, leader: usize, key: &str, value: &[u8]) -> Result<()> {
    for f in (0..3).filter(|&f| f != leader) {
        retry_until("a follower applies the put", Duration::from_secs(10), || async move {
            Ok((c.member_get(f, key).await?.as_deref() == Some(value)).then_some(()))
        })
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_compaction_is_seen_by_the_next_read_on_a_late_member() -> Result<()> {
    for engine in ENGINES {
        // The gateway prefers a follower: HashKV is served there.
        let (c, leader, ch) = late_followers(engine).await?;
        let mut kv = KvClient::new(ch.clone());
        let mut m = MaintenanceClient::new(ch);
        for round in 0..3 {
            let mut current = 0;
            for i in 0..3 {
                let put = PutRequest {
                    key: format!("ryw/{i}").into(),
                    value: format!("{round}").into(),
                    ..Default::default()
                };
                current = kv
                    .put(put)
                    .await?
                    .into_inner()
                    .header
                    .context("header")?
                    .revision;
            }
            // Followers apply each entry 300 ms late: once they hold the puts, the compaction
            // below reaches them while the gateway already acknowledged it.
            followers_hold(&c, leader, "ryw/2", format!("{round}").as_bytes()).await?;
            let at = current - 1;
            kv.compact(CompactionRequest {
                revision: at,
                physical: false,
            })
            .await?;
            let hash = m.hash_kv(HashKvRequest { revision: 0 }).await?.into_inner();
            assert_eq!(hash.compact_revision, at, "{engine}, round {round}: HashKV");
            // Serializable reads are spread over every member: each of these goes to a
            // different one in turn.
            for attempt in 0..3 {
                let read = kv
                    .range(RangeRequest {
                        key: b"ryw/0".to_vec(),
                        revision: at - 1,
                        serializable: true,
                        ..Default::default()
                    })
                    .await;
                let e = read.expect_err("a read below the compaction");
                assert_eq!(
                    e.message(),
                    COMPACTED,
                    "{engine}, round {round}, read {attempt}"
                );
            }
        }
    }
    Ok(())
}

/// `auth enable` creates no revision either: once the gateway answered it, every read through
/// that gateway without a token is refused, also by a follower that applies the change late:
/// the answer names the log index the gateway then waits for, and the member checks the
/// caller only once it has applied that index.
#[tokio::test]
async fn auth_enable_is_seen_by_the_next_read_on_a_late_member() -> Result<()> {
    for engine in ENGINES {
        let (c, leader, ch) = late_followers(engine).await?;
        let mut kv = KvClient::new(ch.clone());
        let mut auth = AuthClient::new(ch);
        auth.user_add(AuthUserAddRequest {
            name: "root".into(),
            password: "rootpw".into(),
            ..Default::default()
        })
        .await?;
        auth.role_add(AuthRoleAddRequest {
            name: "root".into(),
        })
        .await?;
        auth.user_grant_role(AuthUserGrantRoleRequest {
            user: "root".into(),
            role: "root".into(),
        })
        .await?;
        kv.put(PutRequest {
            key: b"ryw/open".to_vec(),
            value: b"1".to_vec(),
            ..Default::default()
        })
        .await?;
        // Once the followers hold the put, they hold everything before it: only `auth enable`
        // is late there (300 ms, less than a member waits to catch up before it gives up).
        followers_hold(&c, leader, "ryw/open", b"1").await?;
        auth.auth_enable(AuthEnableRequest {}).await?;
        // Serializable reads go to every member in turn; the last is linearizable.
        for (attempt, serializable) in [true, true, true, false].into_iter().enumerate() {
            let read = kv
                .range(RangeRequest {
                    key: b"ryw/open".to_vec(),
                    serializable,
                    ..Default::default()
                })
                .await;
            let e = read.expect_err("a read without a token after auth enable");
            assert_eq!(
                e.message(),
                "etcdserver: user name is empty",
                "{engine}, read {attempt}"
            );
        }
    }
    Ok(())
}
