//! Requests that once could stop the cluster: each must get a clean error, change nothing, and
//! leave every member serving and in step — sent through a gateway and sent straight to a
//! member's storage port (which skips the gateway's checks). On every engine, 1 and 3 members.

use anyhow::{Context, Result, bail};
use etcd_client::{DeleteOptions, PutOptions, Txn, TxnOp};
use metastore_internal_proto::storage::kv_request::Op;
use metastore_internal_proto::storage::kv_response::Result as KvResult;
use metastore_internal_proto::storage::storage_client::StorageClient;
use metastore_internal_proto::storage::{ErrorCode, KvRequest, MemberInfoRequest};
use metastore_proto::etcdserverpb::request_op::Request;
use metastore_proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use metastore_tests::{Cluster, ENGINES, grpc_status};
use std::time::{Duration, Instant};

fn op(request: Request) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

/// Deletes every key from "a" on, then puts "b" keeping its value: the put finds "b" gone.
fn poison_txn() -> TxnRequest {
    TxnRequest {
        compare: vec![],
        success: vec![
            op(Request::RequestDeleteRange(DeleteRangeRequest {
                key: b"a".to_vec(),
                range_end: vec![0],
                prev_kv: false,
            })),
            op(Request::RequestPut(PutRequest {
                key: b"b".to_vec(),
                ignore_value: true,
                ..Default::default()
            })),
        ],
        failure: vec![],
    }
}

/// Ops the gateway refuses; a member must refuse them too, without touching the data.
fn malformed() -> Vec<(Op, ErrorCode)> {
    let put = |k: &str| {
        op(Request::RequestPut(PutRequest {
            key: k.into(),
            value: b"x".to_vec(),
            ..Default::default()
        }))
    };
    vec![
        (Op::Txn(poison_txn()), ErrorCode::KeyNotFound),
        (
            Op::Txn(TxnRequest {
                compare: vec![],
                success: vec![put("d"), put("d")],
                failure: vec![],
            }),
            ErrorCode::DuplicateKey,
        ),
        (
            Op::Txn(TxnRequest {
                compare: vec![],
                success: vec![
                    put("e"),
                    op(Request::RequestRange(RangeRequest {
                        key: b"e".to_vec(),
                        sort_target: 77,
                        ..Default::default()
                    })),
                ],
                failure: vec![],
            }),
            ErrorCode::InvalidSortOption,
        ),
        (
            Op::Txn(TxnRequest {
                compare: vec![],
                success: vec![put("f"), RequestOp { request: None }],
                failure: vec![],
            }),
            ErrorCode::KeyNotFound,
        ),
        (Op::Put(PutRequest::default()), ErrorCode::EmptyKey),
        (
            Op::Put(PutRequest {
                key: b"g".to_vec(),
                value: b"v".to_vec(),
                ignore_value: true,
                ..Default::default()
            }),
            ErrorCode::ValueProvided,
        ),
    ]
}

async fn storage(port: u16) -> Result<StorageClient<tonic::transport::Channel>> {
    Ok(StorageClient::connect(format!("http://127.0.0.1:{port}")).await?)
}

/// Every member answers and reports the same revision (waits up to 10 s for followers).
async fn members_in_step(c: &Cluster) -> Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut revisions = Vec::new();
        for m in &c.members {
            let mut s = storage(m.storage_port).await?;
            let info = s
                .member_info(MemberInfoRequest { about_member: 0 })
                .await?
                .into_inner();
            revisions.push(info.header.context("header")?.revision);
        }
        if revisions.windows(2).all(|w| w[0] == w[1]) {
            return Ok(revisions[0]);
        }
        if Instant::now() > deadline {
            bail!("members disagree on the revision: {revisions:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn poison_is_refused(engine: &str, members: usize) -> Result<()> {
    let c = Cluster::start(engine, members, 1, &[])?;
    let mut client = c.client(0).await?;
    client.put("b", "keep", None).await?;
    let before = members_in_step(&c).await?;

    // Through the gateway, with a real etcd client.
    let txn = Txn::new().and_then([
        TxnOp::delete("a", Some(DeleteOptions::new().with_from_key())),
        TxnOp::put("b", "", Some(PutOptions::new().with_ignore_value())),
    ]);
    let err = client.txn(txn).await.expect_err("the txn must fail");
    assert_eq!(
        grpc_status(&err),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: key not found".into()
        ),
        "{engine} x{members}"
    );

    // Straight to every member's storage port.
    for (i, m) in c.members.iter().enumerate() {
        let mut s = storage(m.storage_port).await?;
        for (op, code) in malformed() {
            let reply = s
                .kv(KvRequest {
                    context: None,
                    op: Some(op.clone()),
                })
                .await?
                .into_inner();
            match reply.result {
                Some(KvResult::Error(e)) => {
                    assert_eq!(
                        e.code, code as i32,
                        "{engine} x{members} member {i}: {op:?}"
                    )
                }
                other => panic!("{engine} x{members} member {i}: {op:?} answered {other:?}"),
            }
        }
    }

    // Nothing changed, every member agrees, and the cluster keeps serving.
    assert_eq!(members_in_step(&c).await?, before, "{engine} x{members}");
    let got = client.get("b", None).await?;
    assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(&b"keep"[..]));
    let put = client.put("after", "ok", None).await?;
    assert_eq!(put.header().map(|h| h.revision()), Some(before + 1));
    assert_eq!(
        members_in_step(&c).await?,
        before + 1,
        "{engine} x{members}"
    );
    Ok(())
}

#[tokio::test]
async fn poison_requests_leave_the_cluster_serving() -> Result<()> {
    for engine in ENGINES {
        for members in [1, 3] {
            poison_is_refused(engine, members).await?;
        }
    }
    Ok(())
}
