//! The gateway's Prometheus metrics: etcd's gRPC server metrics (go-grpc-prometheus names) and
//! `metastore_gateway_*` for what etcd has no name for. Every name lives here; served at
//! `/metrics` on the client port and on `--listen-metrics-urls`.

use metastore_cli::grpc_metrics::{GrpcMetrics, GrpcMetricsLayer};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder, exponential_buckets,
};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Metrics {
    registry: Registry,
    grpc: Arc<GrpcMetrics>,
    upstream_seconds: HistogramVec,
    upstream_retries: IntCounterVec,
    watch_feeds: IntGauge,
    keepalive_batch: Histogram,
    rate_limited: IntCounter,
    connections_refused: IntCounter,
    breaker_open: IntGaugeVec,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Only a malformed name or a duplicate registration fails, both fixed in this file.
    r.unwrap_or_else(|e| panic!("metric definition: {e}"))
}

/// The `grpc_type` of an etcd method.
fn grpc_type(path: &str) -> &'static str {
    match path {
        "/etcdserverpb.Watch/Watch" | "/etcdserverpb.Lease/LeaseKeepAlive" => "bidi_stream",
        "/etcdserverpb.Maintenance/Snapshot" | "/v3electionpb.Election/Observe" => "server_stream",
        _ => "unary",
    }
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let grpc = Arc::new(must(GrpcMetrics::register(&registry, grpc_type)));
        let upstream_seconds = must(HistogramVec::new(
            HistogramOpts::new(
                "metastore_gateway_upstream_seconds",
                "Latency of internal storage calls, per storaged member.",
            )
            .buckets(must(exponential_buckets(0.0001, 2.0, 18))),
            &["member"],
        ));
        let upstream_retries = must(IntCounterVec::new(
            Opts::new(
                "metastore_gateway_upstream_retries_total",
                "Storage calls that did not reach a member and were sent to another.",
            ),
            &["member"],
        ));
        let watch_feeds = must(IntGauge::new(
            "metastore_gateway_watch_feeds",
            "Upstream watch feeds, each shared by every client watcher of the same range.",
        ));
        let keepalive_batch = must(Histogram::with_opts(
            HistogramOpts::new(
                "metastore_gateway_keepalive_batch_size",
                "Lease renewals sent upstream in one batch.",
            )
            .buckets(must(exponential_buckets(1.0, 4.0, 8))),
        ));
        let rate_limited = must(IntCounter::new(
            "metastore_gateway_rate_limited_total",
            "Requests refused with `too many requests` by the gateway's rate limits.",
        ));
        must(registry.register(Box::new(rate_limited.clone())));
        let connections_refused = must(IntCounter::new(
            "metastore_gateway_connections_refused_total",
            "Client connections closed at once because --max-connections were open.",
        ));
        must(registry.register(Box::new(connections_refused.clone())));
        let breaker_open = must(IntGaugeVec::new(
            Opts::new(
                "metastore_gateway_breaker_open",
                "1 while a storaged member's circuit breaker is open (it is tried last).",
            ),
            &["member"],
        ));
        must(registry.register(Box::new(breaker_open.clone())));
        must(registry.register(Box::new(upstream_seconds.clone())));
        must(registry.register(Box::new(upstream_retries.clone())));
        must(registry.register(Box::new(watch_feeds.clone())));
        must(registry.register(Box::new(keepalive_batch.clone())));
        #[cfg(target_os = "linux")]
        must(registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )));
        Metrics {
            registry,
            grpc,
            upstream_seconds,
            upstream_retries,
            watch_feeds,
            keepalive_batch,
            rate_limited,
            connections_refused,
            breaker_open,
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The layer that counts and times every gRPC call.
pub fn grpc_layer() -> GrpcMetricsLayer {
    GrpcMetricsLayer(METRICS.grpc.clone())
}

/// Shows `member`'s series from the start (at zero), not only after its first retry.
pub fn upstream_member(member: &str) {
    METRICS.upstream_retries.with_label_values(&[member]);
    METRICS.breaker_open.with_label_values(&[member]).set(0);
}

/// `member`'s circuit breaker opened or closed.
pub fn breaker_open(member: &str, open: bool) {
    METRICS
        .breaker_open
        .with_label_values(&[member])
        .set(i64::from(open));
}

/// One storage call to `member` took `took`.
pub fn upstream_call(member: &str, took: Duration) {
    METRICS
        .upstream_seconds
        .with_label_values(&[member])
        .observe(took.as_secs_f64());
}

/// A storage call that did not reach `member` goes on to the next one.
pub fn upstream_retry(member: &str) {
    METRICS.upstream_retries.with_label_values(&[member]).inc();
}

/// An upstream watch feed opened; counted until the returned guard drops.
pub fn watch_feed_opened() -> impl Drop {
    struct Open;
    impl Drop for Open {
        fn drop(&mut self) {
            METRICS.watch_feeds.dec();
        }
    }
    METRICS.watch_feeds.inc();
    Open
}

/// A batch of `n` lease renewals went upstream.
pub fn keepalive_batch(n: usize) {
    METRICS.keepalive_batch.observe(n as f64);
}

/// A request refused by a rate limit.
pub fn rate_limited() {
    METRICS.rate_limited.inc();
}

/// A client connection closed by `--max-connections`.
pub fn connection_refused() {
    METRICS.connections_refused.inc();
}

/// The text exposition of every metric.
pub fn render() -> String {
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&METRICS.registry.gather(), &mut out) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// `/metrics` as an axum route.
pub fn route<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], render())
        }),
    )
}
