//! Differential test: the same KV/Txn/Compact corpus (`tests/corpus/kv.jsonl`) goes to a real
//! etcd and to MetaStore (every engine and topology); every answer must match field by field
//! (cluster id, member id and raft term aside), and every error must match in code and
//! message. Then the same watch conversation goes to both.

use anyhow::Result;
use metastore_proto::etcdserverpb::ResponseHeader;
use metastore_proto::etcdserverpb::response_op::Response as OpResp;
use metastore_tests::corpus::{self, KvRequest as Req};
use metastore_tests::{Deployment, Etcd, KvClient, assert_same_answers, connect_kv, matrix};
use tonic::transport::Channel;

matrix!(
    kv_corpus_matches_real_etcd,
    watch_conversation_matches_real_etcd
);

/// One request written in the corpus form (tests/src/corpus.rs).
fn kv_req(json: &str) -> Req {
    let one = json.split_whitespace().collect::<Vec<_>>().join(" ");
    corpus::parse(&one).expect("a valid request").remove(0)
}

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
        Req::DeleteRange(r) => kv.delete_range(r).await.map(|r| {
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

async fn kv_corpus_matches_real_etcd(d: Deployment) -> Result<()> {
    let corpus = corpus::load("kv.jsonl")?;
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
    let engine = d.case;
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
    Ok(())
}

/// The same watch conversation with a real etcd and with MetaStore: creates (automatic and
/// chosen ids, refusals), history, live events with prev_kv and filters, a txn's atomic
/// response, progress, cancels (known and unknown) and a compacted start. Responses of each
/// step are compared as a set (etcd orders responses of different watchers arbitrarily).
async fn watch_conversation_matches_real_etcd(d: Deployment) -> Result<()> {
    let etcd = Etcd::start()?;
    let reference = watch_conversation(&etcd.endpoint()).await?;
    let events: usize = reference
        .iter()
        .flatten()
        .filter(|r| r.contains("events: [Event"))
        .count();
    assert!(events >= 5, "the reference sent {events} event responses");
    d.ready().await?;
    let got = watch_conversation(&d.endpoint()).await?;
    assert_same_answers(d.case, &reference, &got);
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
    send(&mut kv, kv_req(r#"{"put": {"key": "k1", "value": "a"}}"#)).await;
    send(&mut kv, kv_req(r#"{"put": {"key": "k2", "value": "b"}}"#)).await;
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
        Step::K(kv_req(r#"{"put": {"key": "k1", "value": "a2"}}"#)),
        Step::K(kv_req(r#"{"delete_range": {"key": "k2"}}"#)),
        Step::K(kv_req(
            r#"{"txn": {"success": [{"request_put": {"key": "k3", "value": "c"}},
                                    {"request_put": {"key": "k4", "value": "d"}}]}}"#,
        )),
        Step::W(progress),
        Step::W(cancel(1)),
        Step::W(cancel(99)),
        Step::K(kv_req(r#"{"put": {"key": "k1", "value": "a3"}}"#)),
        Step::K(kv_req(r#"{"compact": {"revision": 4, "physical": true}}"#)),
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
