//! Differential test of the v3lock and v3election services: the same conversation goes to a
//! real etcd and to MetaStore (every engine and topology) over raw gRPC, and every answer
//! must match field by field (cluster id, member id and raft term aside), errors in code and
//! message. Leases are granted with fixed ids so that owner keys come out the same.

use anyhow::Result;
use metastore_proto::etcdserverpb::lease_client::LeaseClient;
use metastore_proto::etcdserverpb::{LeaseGrantRequest, RangeRequest, ResponseHeader};
use metastore_proto::v3electionpb::election_client::ElectionClient;
use metastore_proto::v3electionpb::{
    CampaignRequest, LeaderKey, LeaderRequest, ProclaimRequest, ResignRequest,
};
use metastore_proto::v3lockpb::lock_client::LockClient;
use metastore_proto::v3lockpb::{LockRequest, UnlockRequest};
use metastore_tests::{Deployment, Etcd, KvClient, assert_same_answers, channel, matrix};
use std::fmt::Debug;

matrix!(lock_election_conversation_matches_real_etcd);

async fn lock_election_conversation_matches_real_etcd(d: Deployment) -> Result<()> {
    let etcd = Etcd::start()?;
    let reference = conversation(&etcd.endpoint()).await?;
    d.ready().await?;
    let got = conversation(&d.endpoint()).await?;
    assert_same_answers(d.case, &reference, &got);
    Ok(())
}

fn clean(h: &mut Option<ResponseHeader>) {
    if let Some(h) = h {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
}

/// A response with its header cleaned, or the error's code and message, as text.
fn answer<T: Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
    header: impl FnOnce(&mut T) -> &mut Option<ResponseHeader>,
) -> String {
    match r {
        Ok(r) => {
            let mut r = r.into_inner();
            clean(header(&mut r));
            format!("{r:?}")
        }
        Err(s) => format!("error {:?}: {}", s.code(), s.message()),
    }
}

async fn conversation(endpoint: &str) -> Result<Vec<String>> {
    let ch = channel(endpoint).await?;
    let mut lock = LockClient::new(ch.clone());
    let mut el = ElectionClient::new(ch.clone());
    let mut kv = KvClient::new(ch.clone());
    let mut leases = LeaseClient::new(ch);
    let mut out = Vec::new();
    for id in [0x100, 0x200] {
        leases
            .lease_grant(LeaseGrantRequest { ttl: 60, id })
            .await?;
    }
    let lk = |name: &str, lease: i64| LockRequest {
        name: name.into(),
        lease,
    };
    let unlock = |key: &str| UnlockRequest { key: key.into() };
    let range = |key: &str, end: &str| RangeRequest {
        key: key.into(),
        range_end: end.into(),
        ..Default::default()
    };
    let leader = |name: &str| LeaderRequest { name: name.into() };

    out.push(answer(lock.lock(lk("lk", 0x100)).await, |r| &mut r.header));
    out.push(answer(kv.range(range("lk/", "lk0")).await, |r| {
        &mut r.header
    }));
    out.push(answer(lock.lock(lk("lk", 0x100)).await, |r| &mut r.header));
    out.push(answer(lock.unlock(unlock("lk/100")).await, |r| {
        &mut r.header
    }));
    out.push(answer(lock.unlock(unlock("lk/none")).await, |r| {
        &mut r.header
    }));
    out.push(answer(lock.unlock(unlock("")).await, |r| &mut r.header));
    out.push(answer(lock.lock(lk("lk", 0x999)).await, |r| &mut r.header));
    out.push(answer(lock.lock(lk("", 0x200)).await, |r| &mut r.header));

    out.push(answer(el.leader(leader("el")).await, |r| &mut r.header));
    let campaign = |value: &str| CampaignRequest {
        name: "el".into(),
        lease: 0x100,
        value: value.into(),
    };
    let won = el.campaign(campaign("a")).await;
    let key = won
        .as_ref()
        .ok()
        .and_then(|r| r.get_ref().leader.clone())
        .unwrap_or_default();
    out.push(answer(won, |r| &mut r.header));
    out.push(answer(el.leader(leader("el")).await, |r| &mut r.header));
    let mut observe = el.observe(leader("el")).await?.into_inner();
    let first = observe.message().await.map(|m| m.map(tonic::Response::new));
    out.push(match first {
        Ok(Some(r)) => answer(Ok(r), |r| &mut r.header),
        Ok(None) => "observe ended".into(),
        Err(s) => answer::<()>(Err(s), |_| unreachable!()),
    });
    let proclaim = |leader: Option<LeaderKey>, value: &str| ProclaimRequest {
        leader,
        value: value.into(),
    };
    out.push(answer(
        el.proclaim(proclaim(Some(key.clone()), "b")).await,
        |r| &mut r.header,
    ));
    let stale = LeaderKey {
        rev: key.rev + 100,
        ..key.clone()
    };
    out.push(answer(
        el.proclaim(proclaim(Some(stale.clone()), "x")).await,
        |r| &mut r.header,
    ));
    out.push(answer(el.proclaim(proclaim(None, "x")).await, |r| {
        &mut r.header
    }));
    out.push(answer(el.campaign(campaign("c")).await, |r| &mut r.header));
    out.push(answer(el.leader(leader("el")).await, |r| &mut r.header));
    let resign = |leader: Option<LeaderKey>| ResignRequest { leader };
    out.push(answer(el.resign(resign(None)).await, |r| &mut r.header));
    out.push(answer(el.resign(resign(Some(stale))).await, |r| {
        &mut r.header
    }));
    out.push(answer(el.resign(resign(Some(key))).await, |r| {
        &mut r.header
    }));
    out.push(answer(el.leader(leader("el")).await, |r| &mut r.header));
    out.push(answer(kv.range(range("el/", "el0")).await, |r| {
        &mut r.header
    }));
    Ok(out)
}
