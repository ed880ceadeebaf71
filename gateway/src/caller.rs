//! Who a call comes from, as the client said it: its auth token (gRPC metadata `token`, else
//! `authorization`) and, under `--client-cert-auth`, the common name of its TLS certificate.
//! A tower layer puts them in a task-local for the duration of each call;
//! [`crate::upstream::Upstream`] copies them into every storage request, where the member
//! serving the request resolves and checks them. Tasks a call spawns take them along with
//! [`spawn`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// What identifies the caller of one call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Caller {
    /// The auth token as sent; empty when none.
    pub token: String,
    /// The common name of the client's verified certificate, for a gRPC call sent without a
    /// token to a gateway with `--client-cert-auth` (etcd takes it as the user); else empty.
    pub cert_user: String,
}

tokio::task_local! {
    static CALLER: Caller;
}

/// The caller of the call being served (empty outside a call).
pub fn caller() -> Caller {
    CALLER.try_with(Clone::clone).unwrap_or_default()
}

/// The token of the call being served; empty when none was sent (or outside a call).
pub fn token() -> String {
    CALLER.try_with(|c| c.token.clone()).unwrap_or_default()
}

/// Runs `fut` as a call from `caller`.
pub async fn with_caller<F: Future>(caller: Caller, fut: F) -> F::Output {
    CALLER.scope(caller, fut).await
}

/// Spawns `fut` as part of the current call (it keeps the caller).
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(CALLER.scope(caller(), fut))
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

/// The user a request's client certificate names: only for gRPC calls (etcd ignores the
/// certificate of calls through its JSON gateway), only without a token (a token wins).
fn cert_user_of<B>(req: &http::Request<B>, token: &str) -> String {
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if !grpc || !token.is_empty() {
        return String::new();
    }
    let certs = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs);
    metastore_cli::tls::peer_common_name(certs).unwrap_or_default()
}

/// Tower layer that serves every call inside its caller's scope. With `cert_users` (the
/// client port runs `--client-cert-auth`), a gRPC call without a token runs as the user its
/// certificate names.
#[derive(Clone, Copy, Default)]
pub struct TokenLayer {
    pub cert_users: bool,
}

impl<S> tower::Layer<S> for TokenLayer {
    type Service = TokenService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TokenService {
            inner,
            cert_users: self.cert_users,
        }
    }
}

#[derive(Clone)]
pub struct TokenService<S> {
    inner: S,
    cert_users: bool,
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
        let cert_user = if self.cert_users {
            cert_user_of(&req, &token)
        } else {
            String::new()
        };
        let caller = Caller { token, cert_user };
        Box::pin(CALLER.scope(caller, self.inner.call(req)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_token_follows_the_call_and_its_spawned_tasks() {
        assert_eq!(token(), "");
        let caller = Caller {
            token: "t1.5".into(),
            cert_user: String::new(),
        };
        let got = with_caller(caller, async {
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
