//! Request rate limits: a token bucket per client address (`--rate-limit-per-client`) and one
//! for the whole gateway (`--rate-limit`). A request over either is answered at once with
//! `etcdserver: too many requests` (gRPC code ResourceExhausted; HTTP 429 with etcd's JSON
//! error body) and counted in `metastore_gateway_rate_limited_total`; it never reaches
//! storage. A stream counts once, when it opens.

use crate::error::Error;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// Requests per second and burst; `None` rate = no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RateLimits {
    pub per_client: Option<NonZeroU32>,
    pub global: Option<NonZeroU32>,
    /// Requests a bucket holds (a client may send this many at once); at least the rate.
    pub burst: Option<NonZeroU32>,
}

impl RateLimits {
    pub fn is_off(&self) -> bool {
        self.per_client.is_none() && self.global.is_none()
    }
}

struct Limiter {
    per_client: Option<DefaultKeyedRateLimiter<IpAddr>>,
    global: Option<DefaultDirectRateLimiter>,
}

impl Limiter {
    fn new(l: RateLimits) -> Self {
        let quota = |rate: NonZeroU32| {
            Quota::per_second(rate).allow_burst(l.burst.map_or(rate, |b| b.max(rate)))
        };
        Limiter {
            per_client: l.per_client.map(|r| RateLimiter::keyed(quota(r))),
            global: l.global.map(|r| RateLimiter::direct(quota(r))),
        }
    }

    /// Takes a token for `client` (and from the global bucket); false when over a limit.
    fn admit(&self, client: Option<IpAddr>) -> bool {
        if let (Some(keyed), Some(ip)) = (&self.per_client, client)
            && keyed.check_key(&ip).is_err()
        {
            return false;
        }
        self.global.as_ref().is_none_or(|g| g.check().is_ok())
    }
}

#[derive(Clone)]
pub struct RateLimitLayer(Option<Arc<Limiter>>);

impl RateLimitLayer {
    /// The layer; with limits on, also a task that forgets idle clients' buckets.
    pub fn new(limits: RateLimits) -> Self {
        if limits.is_off() {
            return RateLimitLayer(None);
        }
        let limiter = Arc::new(Limiter::new(limits));
        let weak = Arc::downgrade(&limiter);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(l) = weak.upgrade() else { return };
                if let Some(keyed) = &l.per_client {
                    keyed.retain_recent();
                    keyed.shrink_to_fit();
                }
            }
        });
        RateLimitLayer(Some(limiter))
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;
    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited {
            inner,
            limiter: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RateLimited<S> {
    inner: S,
    limiter: Option<Arc<Limiter>>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RateLimited<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        if let Some(limiter) = &self.limiter {
            let ext = req.extensions();
            let client = ext
                .get::<TcpConnectInfo>()
                .or_else(|| {
                    ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                        .map(|t| t.get_ref())
                })
                .and_then(|c| c.remote_addr())
                .map(|a| a.ip());
            if !limiter.admit(client) {
                crate::metrics::rate_limited();
                let grpc = metastore_cli::is_grpc(req.headers());
                let resp = refusal(grpc);
                return Box::pin(async move { Ok(resp) });
            }
        }
        let fut = self.inner.call(req);
        Box::pin(async move { Ok(fut.await?.map(tonic::body::Body::new)) })
    }
}

/// The answer to a request over the limit.
fn refusal(grpc: bool) -> http::Response<tonic::body::Body> {
    let status = Error::TooManyRequests.to_status();
    if grpc {
        return status.into_http();
    }
    let resp = crate::http::json::error_response(status.code(), status.message());
    resp.map(tonic::body::Body::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_own_bucket_and_the_gateway_one_more() {
        let n = |v| NonZeroU32::new(v);
        let l = Limiter::new(RateLimits {
            per_client: n(5),
            global: n(8),
            burst: None,
        });
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            [127, 0, 0, 1].into(),
            [127, 0, 0, 2].into(),
            [127, 0, 0, 3].into(),
        );
        let admitted = (0..10).filter(|_| l.admit(Some(a))).count();
        assert_eq!(admitted, 5, "a client gets its burst, no more");
        assert_eq!(
            (0..10).filter(|_| l.admit(Some(b))).count(),
            3,
            "then the global bucket runs dry"
        );
        assert!(!l.admit(Some(c)));
    }

    #[test]
    fn refusals_carry_etcds_text() {
        let grpc = refusal(true);
        assert_eq!(grpc.headers()["grpc-status"], "8");
        let http = refusal(false);
        assert_eq!(http.status(), http::StatusCode::TOO_MANY_REQUESTS);
    }
}
