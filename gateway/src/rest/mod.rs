//! MetaStore's plain REST API (`/api/v1/...`), described by an OpenAPI 3.1 document.
//!
//! Its own interface (readable JSON, keys and values as text, `ETag`/`If-Match`, Server-Sent
//! Events, problem+json errors) over the etcd API: every handler calls the gateway's etcd gRPC
//! services in process ([`crate::http::local`]) with the request's token, so limits,
//! validation and permissions are theirs. User reference: `docs/rest.md`.
//!
//! Every route is registered with its `#[utoipa::path]` description ([`OpenApiRouter`]), so
//! the document lists exactly what is served. `docs/openapi.json` is a checked-in copy; a unit
//! test keeps it current (`METASTORE_WRITE_OPENAPI=1 cargo test --release -p metastore-gateway
//! --lib -- rest::tests` rewrites it).

mod auth;
mod extract;
mod kv;
mod lease;
pub mod problem;
mod txn;
pub mod types;
mod watch;

use crate::http::local::Local;
use axum::http::header;
use axum::response::IntoResponse;
use problem::Problem;
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "MetaStore REST API",
        version = "1",
        description = "Plain REST access to MetaStore's etcd v3 key-value store: keys, \
            transactions, leases, watches (Server-Sent Events) and auth tokens. Keys and values \
            are UTF-8 text, or base64 with `?encoding=base64`; lease ids are decimal strings; \
            errors are RFC 9457 problem details whose `detail` is etcd's error text."
    ),
    tags(
        (name = "kv", description = "Keys and transactions"),
        (name = "leases", description = "Leases"),
        (name = "watch", description = "Changes as Server-Sent Events"),
        (name = "auth", description = "Auth tokens"),
        (name = "meta", description = "This document"),
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []), ()),
    components(schemas(Problem))
)]
struct ApiDoc;

/// The `bearer` security scheme: a token from `POST /api/v1/auth/token`.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from POST /api/v1/auth/token (the raw token without the \
                         Bearer scheme is accepted too). Needed when auth is enabled.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The REST routes and their OpenAPI document.
pub fn router() -> (axum::Router<Local>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(kv::list, kv::post_kv))
        .routes(routes!(kv::get_key, kv::put_key, kv::delete_key))
        .routes(routes!(txn::txn))
        .routes(routes!(lease::grant, lease::list))
        .routes(routes!(lease::get, lease::revoke))
        .routes(routes!(lease::keep_alive))
        .routes(routes!(watch::watch_all))
        .routes(routes!(watch::watch_key))
        .routes(routes!(auth::token))
        .routes(routes!(openapi_json))
        .split_for_parts();
    // axum's catch-all `{*key}` is OpenAPI's `{key}` (its value may hold slashes).
    doc.paths.paths = std::mem::take(&mut doc.paths.paths)
        .into_iter()
        .map(|(path, item)| (path.replace("{*", "{"), item))
        .collect();
    (router, doc)
}

/// The OpenAPI document, as served.
pub fn openapi_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut text = router().1.to_pretty_json().unwrap_or_default();
        text.push('\n');
        text
    })
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    operation_id = "get_openapi",
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document",
        content_type = "application/json")),
    security(())
)]
async fn openapi_json() -> axum::response::Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_text()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt;

    const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

    #[test]
    fn checked_in_document_is_current() {
        let text = openapi_text();
        if std::env::var_os("METASTORE_WRITE_OPENAPI").is_some() {
            std::fs::write(CHECKED_IN, text).expect("write docs/openapi.json");
        }
        let checked_in = std::fs::read_to_string(CHECKED_IN).expect("read docs/openapi.json");
        assert!(
            checked_in == text,
            "docs/openapi.json is stale: rerun with METASTORE_WRITE_OPENAPI=1"
        );
    }

    #[test]
    fn document_is_openapi_3_1_and_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(openapi_text()).expect("json");
        let version = doc["openapi"].as_str().expect("openapi version");
        assert!(version.starts_with("3.1."), "{version}");
        let mut listed: Vec<String> = Vec::new();
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                listed.push(format!("{} {path}", method.to_uppercase()));
                let id = op["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_string()), "operationId {id} twice");
            }
        }
        listed.sort();
        let mut expected = vec![
            "GET /api/v1/kv",
            "POST /api/v1/kv",
            "GET /api/v1/kv/{key}",
            "PUT /api/v1/kv/{key}",
            "DELETE /api/v1/kv/{key}",
            "POST /api/v1/txn",
            "GET /api/v1/leases",
            "POST /api/v1/leases",
            "GET /api/v1/leases/{id}",
            "DELETE /api/v1/leases/{id}",
            "POST /api/v1/leases/{id}/keepalive",
            "GET /api/v1/watch",
            "GET /api/v1/watch/{key}",
            "POST /api/v1/auth/token",
            "GET /api/v1/openapi.json",
        ];
        expected.sort();
        assert_eq!(listed, expected);
    }

    /// Every documented operation is routed: it reaches a handler (with no etcd services
    /// behind it, so it answers a problem), never the router's bare 404 or 405.
    #[tokio::test]
    async fn every_documented_operation_is_routed() {
        let doc: serde_json::Value = serde_json::from_str(openapi_text()).expect("json");
        let app = router().0.with_state(Local::new(axum::Router::new()));
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                let uri = path.replace("{key}", "a/b").replace("{id}", "1");
                let req = Request::builder()
                    .method(Method::from_bytes(method.to_uppercase().as_bytes()).expect("m"))
                    .uri(&uri)
                    .body(Body::from("{}"))
                    .expect("request");
                let resp = app.clone().oneshot(req).await.expect("answer");
                let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
                let status = resp.status();
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
                assert!(
                    status != StatusCode::NOT_FOUND || content_type.is_some(),
                    "{method} {uri}: not routed"
                );
            }
        }
    }
}
