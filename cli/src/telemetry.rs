//! OpenTelemetry tracing, off unless `--otel-endpoint` names an OTLP/gRPC collector. One trace
//! follows a client request across processes: a server span where a request enters a process
//! (its parent taken from the W3C `traceparent` header when the caller sent one), a client
//! span for each internal call made while serving it (its context sent on in the call's
//! headers), and whatever spans the binaries open in between (raft propose and apply).
//!
//! When tracing is off no span is created at all: every helper here checks [`enabled`] first.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tracing::Instrument;
use tracing::instrument::Instrumented;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The tracing flags, shared by both binaries (`#[command(flatten)]`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct OtelArgs {
    /// OTLP/gRPC collector to send traces to, like http://127.0.0.1:4317 [default: none,
    /// tracing off].
    #[arg(long, env = "METASTORE_OTEL_ENDPOINT")]
    pub otel_endpoint: Option<String>,
    /// Share of requests traced when the caller did not decide (0 to 1); a request whose
    /// caller sent a sampled `traceparent` is always traced [default: 1].
    #[arg(long, env = "METASTORE_OTEL_SAMPLING_RATIO")]
    pub otel_sampling_ratio: Option<f64>,
}

impl OtelArgs {
    /// These flags, each taken from `other` where unset here.
    pub fn or(self, other: OtelArgs) -> OtelArgs {
        OtelArgs {
            otel_endpoint: self.otel_endpoint.or(other.otel_endpoint),
            otel_sampling_ratio: self.otel_sampling_ratio.or(other.otel_sampling_ratio),
        }
    }

    /// The checked settings; `None` when tracing is off.
    pub fn settings(&self) -> Result<Option<Otel>, String> {
        let ratio = self.otel_sampling_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&ratio) {
            return Err(format!(
                "--otel-sampling-ratio {ratio}: expected a number from 0 to 1"
            ));
        }
        match self.otel_endpoint.as_deref() {
            None | Some("") => Ok(None),
            Some(url) => {
                // Not resolved here: a collector may come up after this process.
                let uri: http::Uri = url
                    .parse()
                    .map_err(|e| format!("--otel-endpoint {url}: {e}"))?;
                if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                    return Err(format!(
                        "--otel-endpoint {url}: expected http://host:port or https://host:port"
                    ));
                }
                Ok(Some(Otel {
                    endpoint: url.to_string(),
                    ratio,
                }))
            }
        }
    }
}

/// Where traces go and how many.
#[derive(Clone, Debug, PartialEq)]
pub struct Otel {
    pub endpoint: String,
    pub ratio: f64,
}

/// How often finished spans are sent to the collector.
const EXPORT_INTERVAL: Duration = Duration::from_secs(1);

/// The W3C trace context header.
const TRACEPARENT: &str = "traceparent";

static ENABLED: AtomicBool = AtomicBool::new(false);
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
/// `--otel-sampling-ratio`, as the bits of an f64.
static RATIO_BITS: AtomicU64 = AtomicU64::new(0);

/// True once tracing is set up; spans are only made then.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Starts the exporter (inside a Tokio runtime: the gRPC client needs one) and returns the
/// tracer for the `tracing` layer; `service` names this process in every span.
pub fn start(
    otel: &Otel,
    service: &'static str,
) -> Result<opentelemetry_sdk::trace::Tracer, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(otel.endpoint.clone())
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("--otel-endpoint {}: {e}", otel.endpoint))?;
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(EXPORT_INTERVAL)
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(batches)
        // Sampled or not is decided where a request enters (see [`ServerSpan`]): a request
        // not traced makes no span at all, here or in the processes it calls.
        .with_sampler(Sampler::AlwaysOn)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    let tracer = provider.tracer(service);
    let _ = PROVIDER.set(provider);
    RATIO_BITS.store(otel.ratio.to_bits(), Ordering::Relaxed);
    ENABLED.store(true, Ordering::Relaxed);
    Ok(tracer)
}

/// Sends what is still buffered; called as the process stops.
pub fn flush() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.shutdown_with_timeout(Duration::from_secs(2));
    }
}

/// The `traceparent` of `span`, written into outgoing headers.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}

/// Makes the caller's span (from a `traceparent` header) the parent of `span`.
pub fn adopt_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// A server span around the requests a listener serves, named by its path, child of the
/// caller's span when the request carries a `traceparent`.
#[derive(Clone, Copy, Debug)]
pub struct ServerSpanLayer {
    /// Whether requests without a `traceparent` start traces of their own (where clients
    /// enter), or go untraced (internal listeners: raft's traffic is no request of anyone's).
    roots: bool,
}

impl ServerSpanLayer {
    /// For the listeners clients call: every request is traced (as sampled).
    pub const CLIENTS: ServerSpanLayer = ServerSpanLayer { roots: true };
    /// For internal listeners: only requests that carry a trace context.
    pub const INTERNAL: ServerSpanLayer = ServerSpanLayer { roots: false };
}

impl<S> tower::Layer<S> for ServerSpanLayer {
    type Service = ServerSpan<S>;
    fn layer(&self, inner: S) -> ServerSpan<S> {
        ServerSpan {
            inner,
            roots: self.roots,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerSpan<S> {
    inner: S,
    roots: bool,
}

impl<S> ServerSpan<S> {
    /// Whether a request with these headers is traced: as its caller decided (the sampled
    /// flag of its `traceparent`), else, where requests enter, with the sampling ratio.
    fn traces(&self, headers: &http::HeaderMap) -> bool {
        match headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()) {
            Some(parent) => sampled_flag(parent),
            None => {
                self.roots && fastrand::f64() < f64::from_bits(RATIO_BITS.load(Ordering::Relaxed))
            }
        }
    }
}

/// The sampled bit of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`); false when the
/// header is malformed.
fn sampled_flag(traceparent: &str) -> bool {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    match parts.as_slice() {
        [_, trace, span, flags, ..] if trace.len() == 32 && span.len() == 16 => {
            u8::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1)
        }
        _ => false,
    }
}

impl<S, B> tower::Service<http::Request<B>> for ServerSpan<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if !enabled() || is_probe(req.uri().path()) || !self.traces(req.headers()) {
            return self.inner.call(req).instrument(tracing::Span::none());
        }
        let span = tracing::info_span!(
            "request",
            otel.name = %req.uri().path(),
            otel.kind = "server",
            http.request.method = %req.method(),
        );
        adopt_parent(&span, req.headers());
        let future = {
            let _in = span.enter();
            self.inner.call(req)
        };
        future.instrument(span)
    }
}

/// Scrapes and health probes: traced, they would bury the requests.
fn is_probe(path: &str) -> bool {
    path == "/metrics"
        || path.starts_with("/grpc.health.v1.")
        || ["/health", "/livez", "/readyz"]
            .iter()
            .any(|p| path.starts_with(p))
}

/// An internal channel that, inside a traced request, opens a client span for each call and
/// sends its context along.
#[derive(Clone, Debug)]
pub struct ClientSpan<S> {
    inner: S,
}

impl<S> ClientSpan<S> {
    pub fn new(inner: S) -> Self {
        ClientSpan { inner }
    }
}

impl<S, B> tower::Service<http::Request<B>> for ClientSpan<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        if !enabled() || tracing::Span::current().is_none() {
            return self.inner.call(req).instrument(tracing::Span::none());
        }
        let span = tracing::info_span!(
            "call",
            otel.name = %req.uri().path(),
            otel.kind = "client",
            server.address = %req.uri().authority().map_or("", |a| a.as_str()),
        );
        inject(&span, req.headers_mut());
        self.inner.call(req).instrument(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampled_flag_is_read_from_traceparent() {
        assert!(sampled_flag(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!sampled_flag(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        ));
        assert!(!sampled_flag("00-4bf92f-00f067aa0ba902b7-01"));
        assert!(!sampled_flag("garbage"));
    }

    #[test]
    fn settings_are_checked() {
        let off = OtelArgs::default().settings().expect("no endpoint");
        assert_eq!(off, None);
        let on = OtelArgs {
            otel_endpoint: Some("http://127.0.0.1:4317".into()),
            otel_sampling_ratio: Some(0.1),
        };
        assert_eq!(
            on.settings().expect("valid"),
            Some(Otel {
                endpoint: "http://127.0.0.1:4317".into(),
                ratio: 0.1
            })
        );
        let bad_ratio = OtelArgs {
            otel_sampling_ratio: Some(1.5),
            ..on.clone()
        };
        assert!(bad_ratio.settings().is_err());
        let bad_url = OtelArgs {
            otel_endpoint: Some("127.0.0.1:4317".into()),
            ..on
        };
        assert!(bad_url.settings().is_err());
    }
}
