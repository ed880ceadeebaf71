//! `grpc_server_started_total`, `grpc_server_handled_total` and
//! `grpc_server_handling_seconds` with go-grpc-prometheus's labels (`grpc_type`,
//! `grpc_service`, `grpc_method`, `grpc_code`), counted by a tower layer in front of a gRPC
//! server. A call is handled when its status is known: at once for an answer that carries it
//! in its headers, else when the trailers pass (a stream's end); a body dropped without one
//! counts as `Canceled`.

use http_body::{Body, Frame, SizeHint};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// The three metrics, registered in a binary's registry.
#[derive(Clone)]
pub struct GrpcMetrics {
    started: IntCounterVec,
    handled: IntCounterVec,
    seconds: HistogramVec,
    /// The `grpc_type` of a method path (`unary`, `server_stream`, `client_stream`,
    /// `bidi_stream`).
    kind: fn(&str) -> &'static str,
}

impl GrpcMetrics {
    pub fn register(
        registry: &Registry,
        kind: fn(&str) -> &'static str,
    ) -> prometheus::Result<Self> {
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let coded = ["grpc_type", "grpc_service", "grpc_method", "grpc_code"];
        let started = IntCounterVec::new(
            Opts::new(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
            ),
            &labels,
        )?;
        let handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
            ),
            &coded,
        )?;
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "grpc_server_handling_seconds",
                "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &labels,
        )?;
        registry.register(Box::new(started.clone()))?;
        registry.register(Box::new(handled.clone()))?;
        registry.register(Box::new(seconds.clone()))?;
        Ok(GrpcMetrics {
            started,
            handled,
            seconds,
            kind,
        })
    }
}

/// go-grpc-prometheus's name of a gRPC status code.
pub fn code_name(code: &str) -> &'static str {
    match code {
        "0" => "OK",
        "1" => "Canceled",
        "2" => "Unknown",
        "3" => "InvalidArgument",
        "4" => "DeadlineExceeded",
        "5" => "NotFound",
        "6" => "AlreadyExists",
        "7" => "PermissionDenied",
        "8" => "ResourceExhausted",
        "9" => "FailedPrecondition",
        "10" => "Aborted",
        "11" => "OutOfRange",
        "12" => "Unimplemented",
        "13" => "Internal",
        "14" => "Unavailable",
        "15" => "DataLoss",
        "16" => "Unauthenticated",
        _ => "Unknown",
    }
}

/// One call being measured; reports once.
struct Call {
    metrics: GrpcMetrics,
    labels: [String; 3],
    started: Instant,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: &str) {
        if self.done {
            return;
        }
        self.done = true;
        let [kind, service, method] = &self.labels;
        self.metrics
            .handled
            .with_label_values(&[kind, service, method, code_name(code)])
            .inc();
        self.metrics
            .seconds
            .with_label_values(&[kind, service, method])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish("1");
    }
}

#[derive(Clone)]
pub struct GrpcMetricsLayer(pub Arc<GrpcMetrics>);

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = Measured<S>;
    fn layer(&self, inner: S) -> Measured<S> {
        Measured {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Measured<S> {
    inner: S,
    metrics: Arc<GrpcMetrics>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Measured<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<MeasuredBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let grpc = crate::is_grpc(req.headers());
        let call = grpc.then(|| {
            let path = req.uri().path();
            let (service, method) = path
                .trim_start_matches('/')
                .split_once('/')
                .unwrap_or(("unknown", "unknown"));
            let labels = [
                (self.metrics.kind)(path).to_string(),
                service.to_string(),
                method.to_string(),
            ];
            let [kind, service, method] = &labels;
            self.metrics
                .started
                .with_label_values(&[kind, service, method])
                .inc();
            Call {
                metrics: (*self.metrics).clone(),
                labels,
                started: Instant::now(),
                done: false,
            }
        });
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            let mut call = call;
            if let Some(c) = call.as_mut()
                && let Some(code) = resp.headers().get("grpc-status")
            {
                c.finish(code.to_str().unwrap_or("2"));
            }
            Ok(resp.map(|inner| MeasuredBody { inner, call }))
        })
    }
}

pin_project_lite::pin_project! {
    pub struct MeasuredBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for MeasuredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Some(call) = this.call.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(code) = frame.trailers_ref().and_then(|t| t.get("grpc-status")) {
                        call.finish(code.to_str().unwrap_or("2"));
                    }
                }
                Poll::Ready(Some(Err(_))) => call.finish("13"),
                Poll::Ready(None) => call.finish("0"),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
