//! The caller's auth token, as a client sent it (gRPC metadata `token`, else
//! `authorization`). A tower layer puts it in a task-local for the duration of each call;
//! [`crate::upstream::Upstream`] copies it into every storage request, where the member
//! serving the request resolves and checks it. Tasks a call spawns take it along with
//! [`spawn`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

tokio::task_local! {
    static TOKEN: String;
}

/// The token of the call being served; empty when none was sent (or outside a call).
pub fn token() -> String {
    TOKEN.try_with(Clone::clone).unwrap_or_default()
}

/// Runs `fut` as a call that sent `token`.
pub async fn with_token<F: Future>(token: String, fut: F) -> F::Output {
    TOKEN.scope(token, fut).await
}

/// Spawns `fut` as part of the current call (it keeps the caller's token).
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(TOKEN.scope(token(), fut))
}

/// The token in a request's headers.
fn from_headers(headers: &http::HeaderMap) -> String {
    headers
        .get("token")
        .or_else(|| headers.get("authorization"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Tower layer that serves every call inside its caller's token scope.
#[derive(Clone, Copy, Default)]
pub struct TokenLayer;

impl<S> tower::Layer<S> for TokenLayer {
    type Service = TokenService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TokenService { inner }
    }
}

#[derive(Clone)]
pub struct TokenService<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for TokenService<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let token = from_headers(req.headers());
        Box::pin(TOKEN.scope(token, self.inner.call(req)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_token_follows_the_call_and_its_spawned_tasks() {
        assert_eq!(token(), "");
        let got = with_token("t1.5".into(), async {
            let inner = spawn(async { token() }).await.expect("task");
            (token(), inner)
        })
        .await;
        assert_eq!(got, ("t1.5".to_string(), "t1.5".to_string()));
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "abc.1".parse().expect("ascii"));
        assert_eq!(from_headers(&h), "abc.1");
        h.insert("token", "xyz.2".parse().expect("ascii"));
        assert_eq!(from_headers(&h), "xyz.2", "token wins");
    }
}
