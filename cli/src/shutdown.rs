//! Stopping cleanly: SIGTERM or SIGINT starts it, listeners stop accepting, open response
//! streams end with a status clients take as "go elsewhere", and the whole stop is bounded.

use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

pub use tokio_util::sync::CancellationToken as Token;

/// A token cancelled by the first SIGTERM or SIGINT this process receives. Whatever still
/// runs `deadline` after the signal (a stop stuck anywhere, even before serving began) ends
/// with the process: a bounded stop is promised, and exiting is never less safe than the
/// `kill -9` every acknowledged write already survives.
pub fn on_signals(deadline: std::time::Duration) -> CancellationToken {
    let token = CancellationToken::new();
    let fired = token.clone();
    tokio::spawn(async move {
        let name = wait_for_signal().await;
        tracing::info!(signal = name, "stopping");
        fired.cancel();
        tokio::time::sleep(deadline).await;
        tracing::error!(?deadline, "still running after the stop deadline; exiting");
        std::process::exit(1);
    });
    token
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the process");
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// A tower layer that ends every response body still waiting for data once `token` is
/// cancelled: a gRPC stream ends with `status` in its trailers, any other body just ends.
/// Bodies that have data ready (every unary answer) are never cut, so calls in flight finish.
/// A request body still open (a client's side of a bidirectional stream) ends right after its
/// response was cut, so the handler finishes, the HTTP/2 stream closes and the connection can;
/// not before, or the handler would end the response cleanly instead of with `status`.
#[derive(Clone)]
pub struct CutStreamsLayer {
    token: CancellationToken,
    status: tonic::Status,
}

impl CutStreamsLayer {
    pub fn new(token: CancellationToken, status: tonic::Status) -> Self {
        CutStreamsLayer { token, status }
    }
}

impl<S> tower::Layer<S> for CutStreamsLayer {
    type Service = CutStreams<S>;
    fn layer(&self, inner: S) -> CutStreams<S> {
        CutStreams {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CutStreams<S> {
    inner: S,
    layer: CutStreamsLayer,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for CutStreams<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ReqBody: Body<Data = bytes::Bytes> + Send + 'static,
    ReqBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<Cut<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let grpc = crate::is_grpc(req.headers());
        let layer = self.layer.clone();
        let response_cut = CancellationToken::new();
        let request_end = response_cut.clone();
        let req = req.map(|inner| {
            tonic::body::Body::new(Cut {
                inner,
                token: request_end,
                wait: None,
                trailers: None,
                done: false,
                on_cut: None,
            })
        });
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            Ok(resp.map(|inner| Cut {
                inner,
                token: layer.token,
                wait: None,
                trailers: grpc.then_some(layer.status),
                done: false,
                on_cut: Some(response_cut),
            }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends when the shutdown token fires while it waits for data.
    pub struct Cut<B> {
        #[pin]
        inner: B,
        token: CancellationToken,
        wait: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
        trailers: Option<tonic::Status>,
        done: bool,
        // Cancelled when this body is cut.
        on_cut: Option<CancellationToken>,
    }
}

impl<B: Body> Body for Cut<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Pending => {}
            ready => return ready,
        }
        let token = this.token;
        let wait = this
            .wait
            .get_or_insert_with(|| Box::pin(token.clone().cancelled_owned()));
        if wait.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        *this.done = true;
        if let Some(t) = this.on_cut.take() {
            t.cancel();
        }
        match this.trailers.take() {
            Some(status) => {
                let mut headers = http::HeaderMap::new();
                if status.add_header(&mut headers).is_err() {
                    headers.insert("grpc-status", http::HeaderValue::from_static("14"));
                }
                Poll::Ready(Some(Ok(Frame::trailers(headers))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

/// Waits for every server task to end, but no longer than `grace` after `stop` fires (what is
/// still open then is dropped, with a warning). A server that fails ends the wait with its
/// error.
pub async fn join_servers(
    mut tasks: tokio::task::JoinSet<Result<(), tonic::transport::Error>>,
    stop: &CancellationToken,
    grace: std::time::Duration,
) -> Result<(), String> {
    let serving = async {
        while let Some(res) = tasks.join_next().await {
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("server failed: {e}")),
                Err(e) => return Err(format!("server task failed: {e}")),
            }
        }
        Ok(())
    };
    match bounded(serving, stop, grace).await {
        Some(res) => res,
        None => {
            tracing::warn!(
                timeout = ?grace,
                "connections still open at the shutdown timeout; closing them"
            );
            Ok(())
        }
    }
}

/// Waits for `serving` to finish, but no longer than `grace` after `token` fires; says
/// whether everything finished in time.
pub async fn bounded<F: Future>(
    serving: F,
    token: &CancellationToken,
    grace: std::time::Duration,
) -> Option<F::Output> {
    tokio::select! {
        out = serving => Some(out),
        _ = async { token.cancelled().await; tokio::time::sleep(grace).await } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body that never has data.
    struct Silent;
    impl Body for Silent {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<bytes::Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    fn cut<B>(inner: B, token: &CancellationToken, grpc: bool) -> Cut<B> {
        Cut {
            inner,
            token: token.clone(),
            wait: None,
            trailers: grpc.then(|| tonic::Status::unavailable("etcdserver: server stopped")),
            done: false,
            on_cut: None,
        }
    }

    #[tokio::test]
    async fn a_waiting_grpc_stream_ends_with_the_status_when_the_token_fires() {
        let token = CancellationToken::new();
        let mut body = cut(Silent, &token, true);
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), body.frame()).await;
        assert!(early.is_err(), "a silent body stays open before the stop");
        token.cancel();
        let frame = body.frame().await.expect("a frame").expect("no error");
        let trailers = frame.into_trailers().expect("trailers");
        assert_eq!(trailers["grpc-status"], "14");
        assert_eq!(trailers["grpc-message"], "etcdserver:%20server%20stopped");
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn other_bodies_just_end_and_ready_data_is_not_cut() {
        let token = CancellationToken::new();
        token.cancel();
        let full = cut(
            http_body_util::Full::new(bytes::Bytes::from_static(b"answer")),
            &token,
            true,
        );
        let got = full.collect().await.expect("body").to_bytes();
        assert_eq!(&got[..], b"answer");
        let mut silent = cut(Silent, &token, false);
        assert!(silent.frame().await.is_none());
    }
}
