//! REST errors: RFC 9457 `application/problem+json` bodies.
//!
//! An error of an etcd service keeps its text (`detail`, exactly the gRPC status message) and
//! code (`grpc_code`); its HTTP status comes from [`crate::error::http_status_of`]. The REST
//! layer adds only its own cases: bad input (400), missing key or lease (404), failed
//! `If-Match` (412).

use crate::error::http_status_of;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of an error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The error answers every route documents: any 4XX or 5XX status with a [`Problem`] body.
pub struct ErrorResponses;

impl utoipa::IntoResponses for ErrorResponses {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder, ResponsesBuilder};
        let problem = || {
            ResponseBuilder::new()
                .description("An error")
                .content(
                    PROBLEM_JSON,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        ResponsesBuilder::new()
            .response("4XX", problem())
            .response("5XX", problem())
            .build()
            .into()
    }
}

/// An error answer (RFC 9457).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "about:blank",
    "title": "Not Found",
    "status": 404,
    "detail": "key not found: foo"
}))]
pub struct Problem {
    /// Always `about:blank`: the HTTP status says what kind of error it is.
    #[serde(rename = "type")]
    pub kind: String,
    /// The reason phrase of `status`.
    pub title: String,
    /// The HTTP status code of the answer.
    pub status: u16,
    /// What went wrong; for an error of the etcd API, etcd's own error text.
    pub detail: String,
    /// The gRPC status code the etcd API answered with, when the error comes from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_code: Option<i32>,
    /// For a watch whose start revision was compacted: the compaction revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact_revision: Option<i64>,
}

impl Problem {
    /// A problem of the REST layer itself.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".to_string(),
            title: status.canonical_reason().unwrap_or_default().to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            grpc_code: None,
            compact_revision: None,
        }
    }

    /// Bad input (400).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// Something that does not exist (404).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// A failed `If-Match` condition (412).
    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, detail)
    }

    /// An error answered by an etcd service with gRPC code `code`.
    pub fn grpc(code: tonic::Code, detail: impl Into<String>) -> Self {
        Self {
            grpc_code: Some(code as i32),
            ..Self::new(http_status_of(code), detail)
        }
    }

    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<tonic::Status> for Problem {
    fn from(status: tonic::Status) -> Self {
        Self::grpc(status.code(), status.message())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (self.status_code(), body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_errors_keep_their_text_and_code() {
        let p = Problem::from(tonic::Status::invalid_argument(
            "etcdserver: key is not provided",
        ));
        let json = serde_json::to_value(&p).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "type": "about:blank",
                "title": "Bad Request",
                "status": 400,
                "detail": "etcdserver: key is not provided",
                "grpc_code": 3
            })
        );
        let resp = p.into_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}
