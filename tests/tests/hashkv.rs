//! HashKV is etcd's: after the same requests, MetaStore (every engine and topology) and a real
//! etcd answer the same hash, compact revision and errors at every revision, across puts,
//! overwrites, deletions (tombstones), a txn, leases and two compactions.

use anyhow::Result;
use metastore_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use metastore_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use metastore_proto::etcdserverpb::request_op::Request as Op;
use metastore_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, HashKvRequest, LeaseGrantRequest, PutRequest,
    RequestOp, TxnRequest,
};
use metastore_tests::{Deployment, Etcd, KvClient, assert_same_answers, channel, matrix};
use std::time::{Duration, Instant};
use tonic::Code;

matrix!(hash_kv_matches_real_etcd);

async fn hash_kv_matches_real_etcd(d: Deployment) -> Result<()> {
    let etcd = Etcd::start()?;
    let reference = conversation(&etcd.endpoint()).await?;
    d.ready().await?;
    let got = conversation(&d.endpoint()).await?;
    assert_same_answers(d.case, &reference, &got);
    Ok(())
}

fn put(key: &str, value: &str, lease: i64) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        lease,
        ..Default::default()
    }
}

/// HashKV at `rev` as (header revision, hash, compact revision), or the error. A member that
/// has not applied `current` yet (the one a gateway prefers may be a follower) is asked again.
async fn hash_at(
    m: &mut MaintenanceClient<tonic::transport::Channel>,
    rev: i64,
    current: i64,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = m.hash_kv(HashKvRequest { revision: rev }).await;
        let behind = match &r {
            Ok(r) => r
                .get_ref()
                .header
                .as_ref()
                .is_none_or(|h| h.revision < current),
            Err(s) => {
                rev <= current && s.code() == Code::OutOfRange && s.message().contains("future")
            }
        };
        if !behind || Instant::now() > deadline {
            return match r {
                Ok(r) => {
                    let r = r.into_inner();
                    let h = r.header.map_or(0, |h| h.revision);
                    format!(
                        "revision {h}: hash {} compact {}",
                        r.hash, r.compact_revision
                    )
                }
                Err(s) => format!("error {:?}: {}", s.code(), s.message()),
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn conversation(endpoint: &str) -> Result<Vec<String>> {
    let ch = channel(endpoint).await?;
    let mut kv = KvClient::new(ch.clone());
    let mut lease = metastore_proto::etcdserverpb::lease_client::LeaseClient::new(ch.clone());
    let mut m = MaintenanceClient::new(ch);
    let mut out = Vec::new();
    let id = lease
        .lease_grant(LeaseGrantRequest {
            ttl: 600,
            id: 0x1234,
        })
        .await?
        .into_inner()
        .id;
    for i in 0..12 {
        let l = if i % 4 == 0 { id } else { 0 };
        kv.put(put(&format!("k{}", i % 5), &format!("v{i}"), l))
            .await?;
    }
    kv.delete_range(DeleteRangeRequest {
        key: b"k1".to_vec(),
        ..Default::default()
    })
    .await?;
    let absent = Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Version as i32,
        key: b"k1".to_vec(),
        target_union: Some(TargetUnion::Version(0)),
        ..Default::default()
    };
    let op = |r: Op| RequestOp { request: Some(r) };
    kv.txn(TxnRequest {
        compare: vec![absent],
        success: vec![
            op(Op::RequestPut(put("k1", "back", 0))),
            op(Op::RequestDeleteRange(DeleteRangeRequest {
                key: b"k2".to_vec(),
                ..Default::default()
            })),
            op(Op::RequestPut(put("t", "x", id))),
        ],
        failure: vec![],
    })
    .await?;
    let mut current = 0;
    for step in 0..3 {
        current = kv
            .put(put("last", &format!("{step}"), 0))
            .await?
            .into_inner()
            .header
            .map_or(0, |h| h.revision);
        for rev in 0..=current + 1 {
            out.push(format!(
                "step {step}, rev {rev}: {}",
                hash_at(&mut m, rev, current).await
            ));
        }
        // Compact further each step (the second one physically).
        let at = [6, 11, current - 1][step];
        kv.compact(CompactionRequest {
            revision: at,
            physical: step == 1,
        })
        .await?;
    }
    out.push(format!("end: {}", hash_at(&mut m, 0, current).await));
    Ok(out)
}
