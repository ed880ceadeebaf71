//! etcd's grpc-gateway: the etcd API as JSON over HTTP, answered as etcd 3.4 answers it.
//!
//! Every route decodes the JSON body into the request message (the serde mapping generated
//! from the protos: proto field names, 64-bit integers as strings, bytes as base64), calls the
//! gRPC service through the in-process channel ([`super::local`]) and writes the answer back in
//! the same mapping. Streaming routes are in [`stream`]. Only POST is routed, under `/v3` and
//! the `/v3beta` alias.

pub mod stream;

use super::local::{Local, request};
use super::token_of;
use crate::error::http_status_of;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;

/// The prefixes the routes are served under (3.4 serves `/v3`, and rewrites `/v3beta` to it).
pub const PREFIXES: [&str; 2] = ["/v3", "/v3beta"];

/// Registers one unary route: `$client` and `$method` name the gRPC client call.
macro_rules! unary {
    ($router:ident, $path:literal, $client:ident . $method:ident) => {
        $router = $router.route(
            $path,
            unary_route(|local: Local, req| async move { local.$client().$method(req).await }),
        );
    };
}

/// Registers one server-streaming route.
macro_rules! server_stream {
    ($router:ident, $path:literal, $client:ident . $method:ident) => {
        $router = $router.route(
            $path,
            stream::server_stream_route(|local: Local, req| async move {
                local.$client().$method(req).await
            }),
        );
    };
}

/// The routes of one prefix, paths relative to it.
fn routes() -> axum::Router<Local> {
    let mut r = axum::Router::new();
    unary!(r, "/kv/range", kv.range);
    unary!(r, "/kv/put", kv.put);
    unary!(r, "/kv/deleterange", kv.delete_range);
    unary!(r, "/kv/txn", kv.txn);
    unary!(r, "/kv/compaction", kv.compact);
    r = r.route("/watch", stream::watch_route());
    unary!(r, "/lease/grant", lease.lease_grant);
    unary!(r, "/lease/revoke", lease.lease_revoke);
    unary!(r, "/kv/lease/revoke", lease.lease_revoke);
    r = r.route("/lease/keepalive", stream::keep_alive_route());
    unary!(r, "/lease/timetolive", lease.lease_time_to_live);
    unary!(r, "/kv/lease/timetolive", lease.lease_time_to_live);
    unary!(r, "/lease/leases", lease.lease_leases);
    unary!(r, "/kv/lease/leases", lease.lease_leases);
    unary!(r, "/cluster/member/add", cluster.member_add);
    unary!(r, "/cluster/member/remove", cluster.member_remove);
    unary!(r, "/cluster/member/update", cluster.member_update);
    unary!(r, "/cluster/member/list", cluster.member_list);
    unary!(r, "/cluster/member/promote", cluster.member_promote);
    unary!(r, "/maintenance/alarm", maintenance.alarm);
    unary!(r, "/maintenance/status", maintenance.status);
    unary!(r, "/maintenance/defragment", maintenance.defragment);
    // 3.4 binds both Hash and HashKV to this path and Hash wins; 3.5.10 gives HashKV its own.
    unary!(r, "/maintenance/hash", maintenance.hash);
    unary!(r, "/maintenance/hashkv", maintenance.hash_kv);
    server_stream!(r, "/maintenance/snapshot", maintenance.snapshot);
    unary!(
        r,
        "/maintenance/transfer-leadership",
        maintenance.move_leader
    );
    unary!(r, "/maintenance/downgrade", maintenance.downgrade);
    unary!(r, "/auth/enable", auth.auth_enable);
    unary!(r, "/auth/disable", auth.auth_disable);
    unary!(r, "/auth/status", auth.auth_status);
    unary!(r, "/auth/authenticate", auth.authenticate);
    unary!(r, "/auth/user/add", auth.user_add);
    unary!(r, "/auth/user/get", auth.user_get);
    unary!(r, "/auth/user/list", auth.user_list);
    unary!(r, "/auth/user/delete", auth.user_delete);
    unary!(r, "/auth/user/changepw", auth.user_change_password);
    unary!(r, "/auth/user/grant", auth.user_grant_role);
    unary!(r, "/auth/user/revoke", auth.user_revoke_role);
    unary!(r, "/auth/role/add", auth.role_add);
    unary!(r, "/auth/role/get", auth.role_get);
    unary!(r, "/auth/role/list", auth.role_list);
    unary!(r, "/auth/role/delete", auth.role_delete);
    unary!(r, "/auth/role/grant", auth.role_grant_permission);
    unary!(r, "/auth/role/revoke", auth.role_revoke_permission);
    unary!(r, "/lock/lock", lock.lock);
    unary!(r, "/lock/unlock", lock.unlock);
    unary!(r, "/election/campaign", election.campaign);
    unary!(r, "/election/proclaim", election.proclaim);
    unary!(r, "/election/leader", election.leader);
    server_stream!(r, "/election/observe", election.observe);
    unary!(r, "/election/resign", election.resign);
    // grpc-gateway's own answer for a path under the prefix that no route serves.
    r.fallback(|| async { plain(StatusCode::NOT_FOUND, "Not Found\n") })
}

/// The gateway's routes under every prefix.
pub fn router() -> axum::Router<Local> {
    let mut router = axum::Router::new();
    for prefix in PREFIXES {
        router = router.nest(prefix, routes());
    }
    router
}

/// A POST-only route; other methods get the gateway's 405, OPTIONS an empty 200.
fn post_only<H, T>(handler: H) -> MethodRouter<Local>
where
    H: axum::handler::Handler<T, Local>,
    T: 'static,
{
    post(handler)
        .options(|| async { StatusCode::OK })
        .fallback(|| async { method_not_allowed() })
}

/// Go's `http.Error(w, "Method Not Allowed", 405)`.
pub fn method_not_allowed() -> Response {
    plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
}

/// A text/plain answer as Go's `http.Error` writes it.
pub fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        text,
    )
        .into_response()
}

fn unary_route<Req, Resp, F, Fut>(call: F) -> MethodRouter<Local>
where
    Req: DeserializeOwned + Default + Send + 'static,
    Resp: Serialize,
    F: Fn(Local, tonic::Request<Req>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>> + Send,
{
    post_only(
        move |State(local): State<Local>, headers: HeaderMap, body: Bytes| async move {
            let req: Req = match decode(&body) {
                Ok(req) => req,
                Err(text) => return error_response(tonic::Code::InvalidArgument, &text),
            };
            match call(local, request(req, &token_of(&headers))).await {
                Ok(resp) => json_response(StatusCode::OK, &resp.into_inner()),
                Err(status) => error_response(status.code(), status.message()),
            }
        },
    )
}

/// The request message in `body`; an empty body is the empty message.
pub fn decode<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| decode_error_text(&e))
}

/// The decoder's complaint, with Go's words where a client may look for them.
pub fn decode_error_text(e: &serde_json::Error) -> String {
    if e.is_eof() {
        "unexpected EOF".to_string()
    } else {
        e.to_string()
    }
}

/// A successful answer: the message in the gateway's JSON mapping.
pub fn json_response<T: Serialize>(status: StatusCode, message: &T) -> Response {
    match serde_json::to_vec(message) {
        Ok(body) => {
            let mut resp = (status, body).into_response();
            answer_headers(resp.headers_mut());
            resp
        }
        Err(e) => error_response(tonic::Code::Internal, &e.to_string()),
    }
}

/// The headers of a gateway answer from a gRPC call: JSON, and the call's own content type
/// passed on as grpc-gateway does.
pub fn answer_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "grpc-metadata-content-type",
        HeaderValue::from_static("application/grpc"),
    );
}

/// etcd 3.4's unary error body, `{"error":…,"message":…,"code":…}`, with the HTTP status of
/// the gRPC code.
pub fn error_response(code: tonic::Code, message: &str) -> Response {
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        error: &'a str,
        message: &'a str,
        code: i32,
    }
    let body = ErrorBody {
        error: message,
        message,
        code: code as i32,
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = (http_status_of(code), Body::from(bytes)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
