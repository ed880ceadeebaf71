//! The HTTP front door: what the client port serves besides gRPC, on the same listener.
//!
//! - [`json`]: etcd's grpc-gateway (`/v3/...`), the etcd API as JSON.
//! - [`crate::rest`]: MetaStore's plain REST API (`/api/v1/...`), its own interface.
//! - [`health`]: `/health`, `/livez`, `/readyz`, `/version`.
//!
//! All of them answer through [`local`]: in-process calls of the gateway's gRPC services, so a
//! rule (limits, auth, errors) lives in one place whichever protocol a client speaks.
//! Requests are told apart by path: the gRPC services own `/<package>.<Service>/...`.

pub mod health;
pub mod json;
pub mod local;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use local::Local;

/// The auth token of an HTTP request: `Grpc-Metadata-Token`, else `Authorization` (the raw
/// token, as etcd's gateway takes it).
pub fn token_of(headers: &HeaderMap) -> String {
    headers
        .get("grpc-metadata-token")
        .or_else(|| headers.get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The client port's whole router: `grpc` (the etcd gRPC services) and the HTTP routes.
/// `body_limit` bounds an HTTP request body.
pub fn front_door(grpc: axum::Router, body_limit: usize) -> axum::Router {
    let local = Local::new(grpc.clone());
    let grpc = grpc.fallback(not_found);
    json::router()
        .merge(health::router())
        .merge(crate::rest::router().0)
        .merge(crate::metrics::route())
        .with_state(local)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(cors))
        .fallback_service(grpc)
}

/// What no route serves: gRPC's Unimplemented to a gRPC client, Go's 404 page to others.
async fn not_found(req: Request<axum::body::Body>) -> Response {
    let grpc = metastore_cli::is_grpc(req.headers());
    if grpc {
        let (parts, ()) = tonic::Status::unimplemented("")
            .into_http::<()>()
            .into_parts();
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    let mut resp = json::plain(StatusCode::NOT_FOUND, "404 page not found\n");
    cors_headers(resp.headers_mut());
    resp
}

/// The CORS headers etcd puts on every HTTP answer; the REST API's also allow its request
/// headers (`If-Match`, `Last-Event-ID`), show its `ETag`, and answer preflight requests.
async fn cors(req: Request<axum::body::Body>, next: axum::middleware::Next) -> Response {
    let rest = req.uri().path().starts_with("/api/");
    let mut resp = if rest && req.method() == axum::http::Method::OPTIONS {
        StatusCode::OK.into_response()
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    cors_headers(h);
    if rest {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "accept, content-type, authorization, if-match, last-event-id",
            ),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("etag"),
        );
    }
    resp
}

fn cors_headers(h: &mut HeaderMap) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
}
