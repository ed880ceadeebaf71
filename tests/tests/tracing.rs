//! OpenTelemetry traces across processes: gateways and members export to a test OTLP receiver
//! (a tonic server of the collector's trace service), and one client request's spans — the
//! gateway's server span, its storage call, the member's server span, raft propose and apply
//! — share one trace id and each names the right parent.

use anyhow::{Result, bail};
use metastore_proto::etcdserverpb::kv_client::KvClient;
use metastore_proto::etcdserverpb::{PutRequest, RangeRequest};
use metastore_tests::Cluster;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A span as received, with the service that sent it.
#[derive(Clone, Debug)]
struct Got {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
}

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Got>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().expect("lock");
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.clone())
                .map(|v| match v {
                    Value::StringValue(s) => s,
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Got {
                    service: service.clone(),
                    name: span.name,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent: span.parent_span_id,
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Starts a receiver; returns it and its URL.
async fn receiver() -> Result<(Receiver, String)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let r = Receiver::default();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(r.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    Ok((r, url))
}

impl Receiver {
    fn all(&self) -> Vec<Got> {
        self.spans.lock().expect("lock").clone()
    }

    /// Waits until `found` picks something out of the spans received.
    async fn until<T>(&self, what: &str, found: impl Fn(&[Got]) -> Option<T>) -> Result<T> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(t) = found(&self.all()) {
                return Ok(t);
            }
            if Instant::now() > deadline {
                bail!("{what}: not received; got {:#?}", self.all());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn put(key: &str) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    }
}

/// The one span of `trace` named `name` sent by `service`.
fn one<'a>(spans: &'a [Got], trace: &[u8], service: &str, name: &str) -> Result<&'a Got> {
    let found: Vec<&Got> = spans
        .iter()
        .filter(|s| s.trace_id == trace && s.service == service && s.name == name)
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        _ => bail!(
            "{service} {name} in trace: {} of them; spans: {spans:#?}",
            found.len()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_put_is_one_trace_from_gateway_through_raft_apply() -> Result<()> {
    let (rx, url) = receiver().await?;
    let otel = ["--otel-endpoint", url.as_str()];
    let c = Cluster::start_with("memory", 3, 1, &otel, &otel)?;
    c.leader(0).await?;
    let mut kv = KvClient::new(
        tonic::transport::Channel::from_shared(c.gateway(0))?
            .connect()
            .await?,
    );
    kv.put(put("traced")).await?;
    let gateway_put = rx
        .until("the gateway's Put span", |spans| {
            spans
                .iter()
                .find(|s| s.service == "metastore-gateway" && s.name == "/etcdserverpb.KV/Put")
                .cloned()
        })
        .await?;
    assert!(
        gateway_put.parent.is_empty(),
        "a client request starts its trace"
    );
    let trace = gateway_put.trace_id.clone();
    let spans = rx
        .until("the member's raft.apply span of the put", |spans| {
            let applied = spans
                .iter()
                .any(|s| s.trace_id == trace && s.name == "raft.apply");
            applied.then(|| spans.to_vec())
        })
        .await?;
    // From the apply up: raft.apply -> raft.propose -> the leader's server span -> (when the
    // gateway called a follower: the follower's call to the leader -> the follower's server
    // span) -> the gateway's storage call -> the gateway's server span.
    let apply = one(&spans, &trace, "metastore-storaged", "raft.apply")?;
    let mut chain = vec![apply];
    while let Some(parent) = spans
        .iter()
        .find(|s| s.trace_id == trace && s.span_id == chain[chain.len() - 1].parent)
    {
        chain.push(parent);
    }
    let names: Vec<(&str, &str)> = chain
        .iter()
        .map(|s| (s.service.as_str(), s.name.as_str()))
        .collect();
    const KV: &str = "/metastore.storage.Storage/Kv";
    let storaged = "metastore-storaged";
    assert_eq!(
        names[..3],
        [
            (storaged, "raft.apply"),
            (storaged, "raft.propose"),
            (storaged, KV)
        ],
        "{chain:#?}"
    );
    assert_eq!(
        names[names.len() - 2..],
        [
            ("metastore-gateway", KV),
            ("metastore-gateway", "/etcdserverpb.KV/Put")
        ],
        "{chain:#?}"
    );
    assert!(
        matches!(names.len(), 5 | 7),
        "direct or forwarded once: {chain:#?}"
    );
    assert_eq!(chain[chain.len() - 1].span_id, gateway_put.span_id);
    for s in spans.iter().filter(|s| s.trace_id == trace) {
        assert!(
            s.parent.is_empty() && s.span_id == gateway_put.span_id
                || spans.iter().any(|p| p.span_id == s.parent),
            "{s:?}: its parent was not received"
        );
    }

    // A linearizable read confirms its read index inside the trace.
    kv.range(RangeRequest {
        key: b"traced".to_vec(),
        ..Default::default()
    })
    .await?;
    let read = rx
        .until("the gateway's Range span", |spans| {
            spans
                .iter()
                .find(|s| s.service == "metastore-gateway" && s.name == "/etcdserverpb.KV/Range")
                .cloned()
        })
        .await?;
    rx.until("raft.read_index in the Range trace", |spans| {
        spans
            .iter()
            .find(|s| s.trace_id == read.trace_id && s.name == "raft.read_index")
            .cloned()
    })
    .await?;
    Ok(())
}

/// With a sampling ratio of 0 a request is not traced unless its caller sent a sampled
/// `traceparent`; then the gateway's span continues the caller's trace. A caller's unsampled
/// `traceparent` is followed as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_trace_is_continued_and_the_ratio_is_kept() -> Result<()> {
    let (rx, url) = receiver().await?;
    let otel = [
        "--otel-endpoint",
        url.as_str(),
        "--otel-sampling-ratio",
        "0",
    ];
    let c = Cluster::start_with("rocksdb", 1, 1, &otel, &otel)?;
    c.leader(0).await?;
    let mut kv = KvClient::new(
        tonic::transport::Channel::from_shared(c.gateway(0))?
            .connect()
            .await?,
    );
    for i in 0..20 {
        kv.put(put(&format!("untraced/{i}"))).await?;
    }
    // A caller that decided against tracing is followed too.
    let mut unsampled = tonic::Request::new(put("not-traced"));
    unsampled.metadata_mut().insert(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00".parse()?,
    );
    kv.put(unsampled).await?;
    let trace = hex("4bf92f3577b34da6a3ce929d0e0e4736");
    let caller = hex("00f067aa0ba902b7");
    let mut traced = tonic::Request::new(put("traced"));
    traced.metadata_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?,
    );
    kv.put(traced).await?;
    let spans = rx
        .until("the traced put's raft.apply", |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == trace && s.name == "raft.apply")
                .then(|| spans.to_vec())
        })
        .await?;
    let put_span = one(&spans, &trace, "metastore-gateway", "/etcdserverpb.KV/Put")?;
    assert_eq!(
        put_span.parent, caller,
        "the gateway's span is the caller's child"
    );
    one(&spans, &trace, "metastore-storaged", "raft.propose")?;
    // Spans end in batches of a second: by now the 20 unsampled puts would have been sent.
    let others: Vec<&Got> = spans.iter().filter(|s| s.trace_id != trace).collect();
    assert!(
        others.is_empty(),
        "ratio 0 or an unsampled caller traced: {others:#?}"
    );
    Ok(())
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
