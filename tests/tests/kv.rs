//! KV through real processes with the `etcd-client` crate, on every engine and topology.

use anyhow::Result;
use etcd_client::{
    CompactionOptions, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse,
};
use metastore_tests::{Deployment, grpc_status, matrix};

matrix!(
    put_get_delete,
    txn_compaction_and_errors,
    acknowledged_writes_survive_kill_9
);

async fn put_get_delete(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    // The matrix really runs the topology it names.
    let members = c.member_list().await?.members().len();
    assert_eq!(members, d.case.topology.members(), "{}", d.case);
    let put = c.put("foo", "bar", None).await?;
    assert_eq!(put.header().map(|h| h.revision()), Some(2), "{}", d.case);
    let got = c.get("foo", None).await?;
    assert_eq!(got.kvs().len(), 1);
    let kv = &got.kvs()[0];
    assert_eq!((kv.key(), kv.value()), (&b"foo"[..], &b"bar"[..]));
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 2, 1)
    );
    let header = got.header().expect("header");
    assert_ne!(header.cluster_id(), 0);
    assert_ne!(header.member_id(), 0);

    let put = c
        .put("foo", "baz", Some(PutOptions::new().with_prev_key()))
        .await?;
    assert_eq!(put.prev_key().map(|kv| kv.value()), Some(&b"bar"[..]));

    for k in ["p/1", "p/2", "p/3", "q"] {
        c.put(k, k, None).await?;
    }
    let prefix = c.get("p/", Some(GetOptions::new().with_prefix())).await?;
    assert_eq!(prefix.count(), 3);
    let limited = c
        .get("p/", Some(GetOptions::new().with_prefix().with_limit(2)))
        .await?;
    assert_eq!(limited.kvs().len(), 2);
    assert!(limited.more());
    let sorted = c
        .get(
            "p/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Key, SortOrder::Descend),
            ),
        )
        .await?;
    assert_eq!(sorted.kvs()[0].key(), b"p/3");
    let from = c
        .get("p/3", Some(GetOptions::new().with_from_key()))
        .await?;
    assert_eq!(from.count(), 2, "p/3 and q");
    let count = c
        .get(
            "p/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await?;
    assert_eq!((count.count(), count.kvs().len()), (3, 0));

    let del = c
        .delete(
            "p/",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await?;
    assert_eq!(del.deleted(), 3);
    assert_eq!(del.prev_kvs().len(), 3);
    assert_eq!(
        c.get("p/", Some(GetOptions::new().with_prefix()))
            .await?
            .count(),
        0
    );
    Ok(())
}

async fn txn_compaction_and_errors(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    c.put("k", "v1", None).await?;
    let txn = Txn::new()
        .when([Compare::value("k", CompareOp::Equal, "v1")])
        .and_then([TxnOp::put("k", "v2", None), TxnOp::get("k", None)])
        .or_else([TxnOp::get("k", None)]);
    let resp = c.txn(txn).await?;
    assert!(resp.succeeded(), "{}", d.case);
    match &resp.op_responses()[1] {
        TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"v2"),
        other => panic!("unexpected {other:?}"),
    }
    let rev = resp.header().expect("header").revision();

    // Historical read, then compaction makes it fail with etcd's error.
    let old = c
        .get("k", Some(GetOptions::new().with_revision(rev - 1)))
        .await?;
    assert_eq!(old.kvs()[0].value(), b"v1");
    c.compact(rev, Some(CompactionOptions::new().with_physical()))
        .await?;
    let err = c
        .get("k", Some(GetOptions::new().with_revision(rev - 1)))
        .await
        .expect_err("compacted");
    assert_eq!(
        grpc_status(&err),
        (
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted".into()
        )
    );
    let err = c
        .get("k", Some(GetOptions::new().with_revision(rev + 100)))
        .await
        .expect_err("future");
    assert_eq!(
        grpc_status(&err),
        (
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision".into()
        )
    );
    let err = c.put("", "x", None).await.expect_err("empty key");
    assert_eq!(
        grpc_status(&err),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: key is not provided".into()
        )
    );
    let err = c
        .put("k", "x", Some(PutOptions::new().with_lease(42)))
        .await
        .expect_err("lease");
    assert_eq!(
        grpc_status(&err),
        (
            tonic::Code::NotFound,
            "etcdserver: requested lease not found".into()
        )
    );
    let err = c
        .put("missing", "", Some(PutOptions::new().with_ignore_value()))
        .await
        .expect_err("ignore_value on a missing key");
    assert_eq!(
        grpc_status(&err),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: key not found".into()
        )
    );
    let dup = Txn::new().and_then([TxnOp::put("a", "1", None), TxnOp::put("a", "2", None)]);
    let err = c.txn(dup).await.expect_err("duplicate");
    assert_eq!(
        grpc_status(&err),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request".into()
        )
    );
    let many: Vec<TxnOp> = (0..129)
        .map(|i| TxnOp::put(format!("m{i}"), "", None))
        .collect();
    let err = c
        .txn(Txn::new().and_then(many))
        .await
        .expect_err("too many ops");
    assert_eq!(
        grpc_status(&err),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: too many operations in txn request".into()
        )
    );
    let err = c
        .put("big", vec![0u8; 1_600_000], None)
        .await
        .expect_err("too large");
    assert_eq!(
        grpc_status(&err),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: request is too large".into()
        )
    );
    Ok(())
}

/// Acknowledged writes survive SIGKILL of every member and of the gateway (it holds
/// nothing). Both engines are durable: the memory engine rebuilds from its snapshot file and
/// raft log.
async fn acknowledged_writes_survive_kill_9(mut d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    for i in 0..200 {
        c.put(format!("durable/{i:03}"), format!("v{i}"), None)
            .await?;
    }
    c.delete("durable/000", None).await?;
    let before = c
        .get("durable/", Some(GetOptions::new().with_prefix()))
        .await?;
    d.kill_members();
    d.start_members()?;
    d.restart_gateway()?;
    let mut c = d.client().await?;
    let after = c
        .get("durable/", Some(GetOptions::new().with_prefix()))
        .await?;
    assert_eq!(after.count(), 199);
    let summary = |r: &etcd_client::GetResponse| {
        r.kvs()
            .iter()
            .map(|kv| {
                (
                    kv.key().to_vec(),
                    kv.value().to_vec(),
                    kv.create_revision(),
                    kv.mod_revision(),
                    kv.version(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(summary(&after), summary(&before));
    assert_eq!(
        after.header().map(|h| h.revision()),
        before.header().map(|h| h.revision())
    );
    // Revisions continue where they stopped.
    let put = c.put("after-restart", "x", None).await?;
    assert_eq!(
        put.header().map(|h| h.revision()),
        before.header().map(|h| h.revision() + 1)
    );
    Ok(())
}
