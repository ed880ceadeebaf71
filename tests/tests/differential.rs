//! Differential test: the same KV/Txn/Compact corpus goes to a real etcd and to MetaStore (on
//! each engine); every answer must match field by field (cluster id, member id and raft term
//! aside), and every error must match in code and message.

use anyhow::Result;
use metastore_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use metastore_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use metastore_proto::etcdserverpb::request_op::Request as Op;
use metastore_proto::etcdserverpb::response_op::Response as OpResp;
use metastore_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    ResponseHeader, TxnRequest,
};
use metastore_tests::{Deployment, ENGINES, Etcd, KvClient, connect_kv};
use tonic::transport::Channel;

#[derive(Clone, Debug)]
enum Req {
    Range(RangeRequest),
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
}

fn put(k: &str, v: &str) -> Req {
    Req::Put(PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    })
}
fn get(k: &str, end: &[u8]) -> RangeRequest {
    RangeRequest {
        key: k.into(),
        range_end: end.to_vec(),
        ..Default::default()
    }
}
fn del(k: &str, end: &[u8], prev: bool) -> Req {
    Req::Delete(DeleteRangeRequest {
        key: k.into(),
        range_end: end.to_vec(),
        prev_kv: prev,
    })
}
fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })),
    }
}
fn op_get(r: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(r)),
    }
}
fn op_del(k: &str, end: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
            key: k.into(),
            range_end: end.to_vec(),
            prev_kv: true,
        })),
    }
}
fn cmp(k: &str, target: CompareTarget, result: CompareResult, u: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: k.into(),
        target_union: Some(u),
        range_end: Vec::new(),
    }
}
fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> Req {
    Req::Txn(TxnRequest {
        compare,
        success,
        failure,
    })
}
fn sorted(order: SortOrder, target: SortTarget, limit: i64) -> Req {
    Req::Range(RangeRequest {
        key: b"s/".to_vec(),
        range_end: b"s0".to_vec(),
        sort_order: order as i32,
        sort_target: target as i32,
        limit,
        ..Default::default()
    })
}

fn corpus() -> Vec<Req> {
    use CompareResult::*;
    use CompareTarget as T;
    let mut c = vec![
        Req::Range(get("missing", b"")),
        put("a", "1"),
        put("b", "2"),
        put("c", "3"),
        Req::Put(PutRequest {
            key: b"a".to_vec(),
            value: b"1b".to_vec(),
            prev_kv: true,
            ..Default::default()
        }),
        Req::Put(PutRequest {
            key: b"new".to_vec(),
            value: b"x".to_vec(),
            prev_kv: true,
            ..Default::default()
        }),
        Req::Put(PutRequest {
            key: vec![0xff, 0x00, 0x01],
            value: vec![0, 1, 2, 255],
            ..Default::default()
        }),
        put("dir/1", "one"),
        put("dir/2", "two"),
        put("dir/3", "three"),
        put("dir0", "after prefix"),
        Req::Range(get("a", b"")),
        Req::Range(get("dir/", b"dir0")),
        Req::Range(get("\0", b"\0")),
        Req::Range(get("c", b"\0")),
        Req::Range(get("c", b"a")),
        Req::Range(RangeRequest {
            limit: 2,
            ..get("dir/", b"dir0")
        }),
        Req::Range(RangeRequest {
            limit: 3,
            ..get("dir/", b"dir0")
        }),
        Req::Range(RangeRequest {
            limit: -1,
            ..get("dir/", b"dir0")
        }),
        Req::Range(RangeRequest {
            count_only: true,
            ..get("\0", b"\0")
        }),
        Req::Range(RangeRequest {
            count_only: true,
            limit: 1,
            ..get("dir/", b"dir0")
        }),
        Req::Range(RangeRequest {
            keys_only: true,
            ..get("dir/", b"dir0")
        }),
        Req::Range(RangeRequest {
            revision: 3,
            ..get("a", b"")
        }),
        Req::Range(RangeRequest {
            revision: 2,
            ..get("\0", b"\0")
        }),
        Req::Range(RangeRequest {
            revision: -5,
            ..get("a", b"")
        }),
        Req::Range(RangeRequest {
            revision: 1000,
            ..get("a", b"")
        }),
        Req::Range(RangeRequest {
            serializable: true,
            ..get("a", b"")
        }),
        Req::Range(RangeRequest {
            min_mod_revision: 8,
            ..get("\0", b"\0")
        }),
        Req::Range(RangeRequest {
            max_mod_revision: 4,
            ..get("\0", b"\0")
        }),
        Req::Range(RangeRequest {
            min_create_revision: 5,
            max_create_revision: 9,
            limit: 2,
            ..get("\0", b"\0")
        }),
        Req::Range(get("", b"")),
        // Sorting over keys whose versions, revisions and values are all distinct.
        put("s/b", "m"),
        put("s/a", "z"),
        put("s/a", "y"),
        put("s/c", "a"),
        put("s/c", "b"),
        put("s/c", "c"),
    ];
    for order in [SortOrder::None, SortOrder::Ascend, SortOrder::Descend] {
        for target in [
            SortTarget::Key,
            SortTarget::Version,
            SortTarget::Create,
            SortTarget::Mod,
            SortTarget::Value,
        ] {
            c.push(sorted(order, target, 0));
            c.push(sorted(order, target, 2));
        }
    }
    c.extend([
        // Put flags.
        Req::Put(PutRequest {
            key: b"a".to_vec(),
            ignore_value: true,
            prev_kv: true,
            ..Default::default()
        }),
        Req::Put(PutRequest {
            key: b"a".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        }),
        Req::Put(PutRequest {
            key: b"nope".to_vec(),
            ignore_value: true,
            ..Default::default()
        }),
        Req::Put(PutRequest {
            key: b"a".to_vec(),
            value: b"keep lease".to_vec(),
            ignore_lease: true,
            ..Default::default()
        }),
        Req::Put(PutRequest {
            key: b"a".to_vec(),
            lease: 7,
            ignore_lease: true,
            ..Default::default()
        }),
        Req::Put(PutRequest {
            key: b"a".to_vec(),
            lease: 12345,
            ..Default::default()
        }),
        Req::Put(PutRequest {
            key: Vec::new(),
            value: b"v".to_vec(),
            ..Default::default()
        }),
        // Deletes.
        del("nothing", b"", true),
        del("dir/1", b"", true),
        del("dir/", b"dir0", true),
        del("dir/", b"dir0", true),
        del("", b"", false),
        put("dir/1", "reborn"),
        Req::Range(get("dir/1", b"")),
        // Txns: every compare target and result.
        txn(
            vec![cmp(
                "a",
                T::Value,
                Equal,
                TargetUnion::Value(b"keep lease".to_vec()),
            )],
            vec![op_put("t1", "yes")],
            vec![op_put("t1", "no")],
        ),
        txn(
            vec![cmp(
                "a",
                T::Value,
                Greater,
                TargetUnion::Value(b"a".to_vec()),
            )],
            vec![op_get(get("a", b""))],
            vec![],
        ),
        txn(
            vec![cmp("a", T::Value, Less, TargetUnion::Value(b"a".to_vec()))],
            vec![],
            vec![op_get(get("a", b""))],
        ),
        txn(
            vec![cmp(
                "a",
                T::Value,
                NotEqual,
                TargetUnion::Value(b"x".to_vec()),
            )],
            vec![op_put("t2", "ne")],
            vec![],
        ),
        txn(
            vec![cmp(
                "missing",
                T::Value,
                Equal,
                TargetUnion::Value(Vec::new()),
            )],
            vec![op_put("t3", "s")],
            vec![op_put("t3", "f")],
        ),
        txn(
            vec![cmp(
                "missing",
                T::Create,
                Equal,
                TargetUnion::CreateRevision(0),
            )],
            vec![op_put("t4", "absent")],
            vec![],
        ),
        txn(
            vec![cmp("a", T::Version, Greater, TargetUnion::Version(2))],
            vec![op_put("t5", "v")],
            vec![op_put("t5", "w")],
        ),
        txn(
            vec![cmp("a", T::Mod, Less, TargetUnion::ModRevision(1000))],
            vec![op_del("t5", b"")],
            vec![],
        ),
        txn(
            vec![cmp("a", T::Lease, Equal, TargetUnion::Lease(0))],
            vec![op_get(get("t1", b""))],
            vec![],
        ),
        txn(
            vec![cmp("a", T::Version, Equal, TargetUnion::ModRevision(3))],
            vec![op_put("t6", "mismatched union")],
            vec![op_put("t6", "else")],
        ),
        txn(
            vec![Compare {
                range_end: b"t9".to_vec(),
                ..cmp("t1", T::Version, Greater, TargetUnion::Version(0))
            }],
            vec![op_get(get("t1", b"t9"))],
            vec![],
        ),
        txn(
            vec![Compare {
                range_end: b"t9".to_vec(),
                ..cmp("t1", T::Value, Equal, TargetUnion::Value(b"yes".to_vec()))
            }],
            vec![],
            vec![op_get(get("t1", b"t9"))],
        ),
        // Ops see earlier ops; nested txns; the write shares one revision.
        txn(
            vec![],
            vec![
                op_put("n1", "1"),
                op_get(get("n1", b"")),
                op_del("n1", b""),
                op_get(get("n1", b"")),
                op_put("n2", "2"),
            ],
            vec![],
        ),
        txn(
            vec![],
            vec![
                op_put("o1", "x"),
                RequestOp {
                    request: Some(Op::RequestTxn(TxnRequest {
                        compare: vec![cmp("o1", T::Version, Equal, TargetUnion::Version(0))],
                        success: vec![op_put("o2", "nested then")],
                        failure: vec![op_put("o2", "nested else"), op_get(get("o", b"p"))],
                    })),
                },
            ],
            vec![],
        ),
        txn(vec![], vec![], vec![]),
        txn(
            vec![cmp("a", T::Version, Equal, TargetUnion::Version(0))],
            vec![],
            vec![],
        ),
        txn(
            vec![],
            vec![
                op_get(get("a", b"")),
                op_get(RangeRequest {
                    revision: 2,
                    ..get("\0", b"\0")
                }),
            ],
            vec![],
        ),
        txn(vec![], vec![op_del("nothing", b"")], vec![]),
        txn(
            vec![],
            vec![op_del("nothing", b""), op_put("after-noop-delete", "1")],
            vec![],
        ),
        // Validation errors.
        txn(vec![], vec![op_put("d", "1"), op_put("d", "2")], vec![]),
        txn(vec![], vec![op_put("dz", "1"), op_del("d", b"e")], vec![]),
        txn(vec![], vec![op_put("d2", "1"), op_del("a", b"\0")], vec![]),
        txn(vec![], vec![op_put("d", "1")], vec![op_put("d", "2")]),
        txn(vec![], vec![RequestOp { request: None }], vec![]),
        txn(
            vec![Compare {
                key: Vec::new(),
                ..Default::default()
            }],
            vec![],
            vec![],
        ),
        txn(vec![], vec![op_put("", "x")], vec![]),
        txn(
            vec![],
            (0..129).map(|i| op_put(&format!("m{i}"), "")).collect(),
            vec![],
        ),
        txn(
            vec![],
            vec![op_get(RangeRequest {
                revision: 100_000,
                ..get("a", b"")
            })],
            vec![op_put("never", "")],
        ),
        txn(
            vec![],
            vec![RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: b"x".to_vec(),
                    lease: 99,
                    ..Default::default()
                })),
            }],
            vec![],
        ),
        // Compaction.
        Req::Compact(CompactionRequest {
            revision: 1000,
            physical: false,
        }),
        Req::Compact(CompactionRequest {
            revision: 5,
            physical: false,
        }),
        Req::Compact(CompactionRequest {
            revision: 5,
            physical: false,
        }),
        Req::Compact(CompactionRequest {
            revision: 4,
            physical: true,
        }),
        Req::Range(RangeRequest {
            revision: 4,
            ..get("\0", b"\0")
        }),
        Req::Range(RangeRequest {
            revision: 5,
            ..get("\0", b"\0")
        }),
        Req::Range(RangeRequest {
            revision: 6,
            ..get("\0", b"\0")
        }),
        txn(
            vec![],
            vec![op_get(RangeRequest {
                revision: 3,
                ..get("a", b"")
            })],
            vec![],
        ),
        Req::Compact(CompactionRequest {
            revision: 20,
            physical: true,
        }),
        Req::Range(RangeRequest {
            revision: 20,
            ..get("\0", b"\0")
        }),
        Req::Range(RangeRequest {
            revision: 19,
            ..get("\0", b"\0")
        }),
        Req::Range(get("\0", b"\0")),
        put("after-compact", "1"),
        Req::Range(RangeRequest {
            count_only: true,
            ..get("\0", b"\0")
        }),
    ]);
    c
}

/// An answer with member-specific header fields cleared.
#[derive(Debug, PartialEq)]
enum Answer {
    Ok(String),
    Err(tonic::Code, String),
}

fn clean(h: &mut Option<ResponseHeader>) {
    if let Some(h) = h {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
}

async fn send(kv: &mut KvClient<Channel>, req: Req) -> Answer {
    let out = match req {
        Req::Range(r) => kv.range(r).await.map(|r| {
            let mut r = r.into_inner();
            clean(&mut r.header);
            format!("{r:?}")
        }),
        Req::Put(r) => kv.put(r).await.map(|r| {
            let mut r = r.into_inner();
            clean(&mut r.header);
            format!("{r:?}")
        }),
        Req::Delete(r) => kv.delete_range(r).await.map(|r| {
            let mut r = r.into_inner();
            clean(&mut r.header);
            format!("{r:?}")
        }),
        Req::Txn(r) => kv.txn(r).await.map(|r| {
            let mut r = r.into_inner();
            clean(&mut r.header);
            // Nested headers carry the revision only on both sides; check that, then compare.
            for op in &r.responses {
                let h = match &op.response {
                    Some(OpResp::ResponseRange(x)) => x.header,
                    Some(OpResp::ResponsePut(x)) => x.header,
                    Some(OpResp::ResponseDeleteRange(x)) => x.header,
                    Some(OpResp::ResponseTxn(x)) => x.header,
                    None => None,
                };
                assert!(
                    h.is_some_and(|h| h.cluster_id == 0 && h.member_id == 0),
                    "nested header {h:?}"
                );
            }
            format!("{r:?}")
        }),
        Req::Compact(r) => kv.compact(r).await.map(|r| {
            let mut r = r.into_inner();
            clean(&mut r.header);
            format!("{r:?}")
        }),
    };
    match out {
        Ok(s) => Answer::Ok(s),
        Err(s) => Answer::Err(s.code(), s.message().to_string()),
    }
}

#[tokio::test]
async fn kv_corpus_matches_real_etcd() -> Result<()> {
    let corpus = corpus();
    let etcd = Etcd::start()?;
    let mut reference = connect_kv(&etcd.endpoint()).await?;
    let mut expected = Vec::new();
    for req in corpus.clone() {
        expected.push(send(&mut reference, req).await);
    }
    if std::env::var_os("DIFF_DUMP").is_some() {
        for (i, a) in expected.iter().enumerate() {
            println!("#{i} {a:?}");
        }
    }
    let errors = expected
        .iter()
        .filter(|a| matches!(a, Answer::Err(..)))
        .count();
    assert!(
        errors < corpus.len() / 3,
        "the reference answered {errors} requests with errors"
    );
    for engine in ENGINES {
        let d = Deployment::start(engine)?;
        let mut kv = d.kv().await?;
        let mut mismatches = Vec::new();
        for (i, req) in corpus.iter().enumerate() {
            let got = send(&mut kv, req.clone()).await;
            if got != expected[i] {
                mismatches.push(format!(
                    "#{i} {req:?}\n  etcd:      {:?}\n  metastore: {got:?}",
                    expected[i]
                ));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{engine}: {} of {} differ:\n{}",
            mismatches.len(),
            corpus.len(),
            mismatches.join("\n")
        );
        println!("{engine}: {} requests identical to etcd", corpus.len());
    }
    Ok(())
}

/// The same watch conversation with a real etcd and with MetaStore: creates (automatic and
/// chosen ids, refusals), history, live events with prev_kv and filters, a txn's atomic
/// response, progress, cancels (known and unknown) and a compacted start. Responses of each
/// step are compared as a set (etcd orders responses of different watchers arbitrarily).
#[tokio::test]
async fn watch_conversation_matches_real_etcd() -> Result<()> {
    let etcd = Etcd::start()?;
    let reference = watch_conversation(&etcd.endpoint()).await?;
    let events: usize = reference
        .iter()
        .flatten()
        .filter(|r| r.contains("events: [Event"))
        .count();
    assert!(events >= 5, "the reference sent {events} event responses");
    for engine in ENGINES {
        let d = Deployment::start(engine)?;
        let got = watch_conversation(&d.endpoint()).await?;
        for (i, (want, got)) in reference.iter().zip(&got).enumerate() {
            assert_eq!(got, want, "{engine}: step {i} differs");
        }
        assert_eq!(got.len(), reference.len());
    }
    Ok(())
}

async fn watch_conversation(endpoint: &str) -> Result<Vec<Vec<String>>> {
    use metastore_proto::etcdserverpb::watch_create_request::FilterType;
    use metastore_proto::etcdserverpb::watch_request::RequestUnion;
    use metastore_proto::etcdserverpb::{
        WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest,
    };
    use metastore_tests::{WatchClient, channel};

    let ch = channel(endpoint).await?;
    let mut kv = KvClient::new(ch.clone());
    let mut wc = WatchClient::new(ch);
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let create =
        |key: &str, end: &[u8], start: i64, id: i64, prev: bool, filters: Vec<i32>| WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: key.into(),
                range_end: end.to_vec(),
                start_revision: start,
                prev_kv: prev,
                watch_id: id,
                filters,
                ..Default::default()
            })),
        };
    let cancel = |id| WatchRequest {
        request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest {
            watch_id: id,
        })),
    };
    let progress = WatchRequest {
        request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
    };
    enum Step {
        W(WatchRequest),
        K(Req),
    }
    send(&mut kv, put("k1", "a")).await;
    send(&mut kv, put("k2", "b")).await;
    // etcd sends the stream's response headers with its first message, so the call only
    // returns once a request has gone out.
    tx.send(create("k", b"l", 0, 0, true, vec![])).await?;
    let mut responses = wc
        .watch(metastore_tests::RequestStream(rx))
        .await?
        .into_inner();
    let steps = vec![
        Step::W(create("k1", b"", 1, 0, false, vec![])),
        Step::W(create(
            "k",
            b"\0",
            0,
            0,
            false,
            vec![FilterType::Noput as i32],
        )),
        Step::W(create(
            "k2",
            b"",
            0,
            10,
            true,
            vec![FilterType::Nodelete as i32],
        )),
        Step::W(create("k3", b"", 0, 10, false, vec![])),
        Step::W(create("b", b"a", 0, 0, false, vec![])),
        Step::K(put("k1", "a2")),
        Step::K(del("k2", b"", false)),
        Step::K(txn(
            vec![],
            vec![op_put("k3", "c"), op_put("k4", "d")],
            vec![],
        )),
        Step::W(progress),
        Step::W(cancel(1)),
        Step::W(cancel(99)),
        Step::K(put("k1", "a3")),
        Step::K(Req::Compact(CompactionRequest {
            revision: 4,
            physical: true,
        })),
        Step::W(create("k1", b"", 2, 0, false, vec![])),
        Step::W(create("k1", b"", 4, 0, false, vec![])),
    ];
    let mut out = vec![quiet(&mut responses).await?];
    for step in steps {
        match step {
            Step::W(r) => tx.send(r).await?,
            Step::K(r) => {
                send(&mut kv, r).await;
            }
        }
        out.push(quiet(&mut responses).await?);
    }
    Ok(out)
}

/// Every response until the stream is quiet for a while, normalized and sorted.
async fn quiet(
    responses: &mut tonic::Streaming<metastore_proto::etcdserverpb::WatchResponse>,
) -> Result<Vec<String>> {
    let mut got = Vec::new();
    while let Ok(r) =
        tokio::time::timeout(std::time::Duration::from_millis(400), responses.message()).await
    {
        let Some(mut r) = r? else { break };
        clean(&mut r.header);
        got.push(format!("{r:?}"));
    }
    got.sort();
    Ok(got)
}
