//! What a REST request carries besides its body: query parameters, the key in the path, the
//! auth token and `If-Match`. Input that does not parse is a 400 problem.

use super::problem::Problem;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

/// Query parameters `T`.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(t)| Params(t))
            .map_err(|e| Problem::bad_request(e.body_text()))
    }
}

/// A JSON body `T`, whatever its content type says.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| Problem::new(e.status(), e.body_text()))?;
        serde_json::from_slice(&body)
            .map(JsonBody)
            .map_err(|e| Problem::bad_request(format!("bad JSON body: {e}")))
    }
}

/// The one path parameter of a route (a key or a lease id), percent-decoded.
pub struct Segment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(s)| Segment(s))
            .map_err(|e| Problem::bad_request(e.body_text()))
    }
}

/// The auth token: `Authorization: Bearer <token>`, or the raw token in `Authorization` (as
/// etcd's JSON gateway takes it). Empty when there is none.
pub struct Token(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Token {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Token(token_of(&parts.headers)))
    }
}

fn token_of(headers: &HeaderMap) -> String {
    let raw = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim();
    match raw.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim().to_string(),
        _ => raw.to_string(),
    }
}

/// The condition of an `If-Match` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: the key exists.
    Exists,
    /// `"<n>"`: the key's mod_revision is n (0: the key does not exist).
    ModRevision(i64),
}

impl IfMatch {
    /// The condition of `headers`, if any. An entity tag that is no revision can match no key:
    /// a 412 problem.
    pub fn of(headers: &HeaderMap) -> Result<Option<IfMatch>, Problem> {
        let Some(value) = headers.get(header::IF_MATCH) else {
            return Ok(None);
        };
        let text = value.to_str().unwrap_or_default().trim();
        if text == "*" {
            return Ok(Some(IfMatch::Exists));
        }
        let tag = text.strip_prefix("W/").unwrap_or(text);
        let tag = tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(tag);
        match tag.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(IfMatch::ModRevision(n))),
            _ => Err(Problem::precondition_failed(format!(
                "If-Match {text:?} is no revision (\"<mod_revision>\", 0 or *)"
            ))),
        }
    }
}

/// The `ETag` of a key at `mod_revision`.
pub fn etag(mod_revision: i64) -> String {
    format!("\"{mod_revision}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn tokens_come_bearer_or_raw() {
        assert_eq!(
            token_of(&headers(header::AUTHORIZATION, "Bearer abc.1")),
            "abc.1"
        );
        assert_eq!(
            token_of(&headers(header::AUTHORIZATION, "bearer  abc.1")),
            "abc.1"
        );
        assert_eq!(token_of(&headers(header::AUTHORIZATION, "abc.1")), "abc.1");
        assert_eq!(token_of(&HeaderMap::new()), "");
    }

    #[test]
    fn if_match_is_a_revision_zero_or_star() {
        let of = |v| IfMatch::of(&headers(header::IF_MATCH, v));
        assert_eq!(of("\"7\"").expect("quoted"), Some(IfMatch::ModRevision(7)));
        assert_eq!(of("7").expect("bare"), Some(IfMatch::ModRevision(7)));
        assert_eq!(of("W/\"0\"").expect("weak"), Some(IfMatch::ModRevision(0)));
        assert_eq!(of("*").expect("star"), Some(IfMatch::Exists));
        assert_eq!(of("\"abc\"").expect_err("no revision").status, 412);
        assert_eq!(IfMatch::of(&HeaderMap::new()).expect("none"), None);
    }
}
