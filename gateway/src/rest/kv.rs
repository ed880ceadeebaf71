//! Keys: read, list, write, delete; `If-Match` writes are one etcd transaction comparing the
//! key's mod_revision, so they are atomic.

use super::extract::{IfMatch, Params, Segment, Token, etag};
use super::problem::{ErrorResponses, Problem};
use super::types::{
    DeleteParams, DeleteResult, Encoding, EncodingParams, GetParams, KeyValue, KvList, LeaseId,
    ListParams, PutBody, PutParams, PutResult,
};
use crate::etcd::concurrency::prefix_end;
use crate::http::local::{Local, request};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use metastore_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use metastore_proto::etcdserverpb::request_op::Request as Op;
use metastore_proto::etcdserverpb::response_op::Response as OpResponse;
use metastore_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
};

/// The revision of an answer's header.
pub fn revision(header: Option<&ResponseHeader>) -> i64 {
    header.map(|h| h.revision).unwrap_or_default()
}

/// `value` with an `ETag` of `mod_revision`.
fn with_etag(value: impl IntoResponse, mod_revision: i64) -> Response {
    let mut resp = value.into_response();
    if let Ok(v) = HeaderValue::from_str(&etag(mod_revision)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// Read one key.
#[utoipa::path(
    get,
    operation_id = "get_key",
    path = "/api/v1/kv/{*key}",
    tag = "kv",
    params(("key" = String, Path, description = "The key (may hold slashes; base64 with \
        encoding=base64)"), GetParams),
    responses(
        (status = 200, description = "The key", body = KeyValue,
            headers(("ETag" = String, description = "The key's mod_revision, quoted"))),
        (status = 404, description = "No such key", body = Problem,
            content_type = "application/problem+json"),
        ErrorResponses,
    )
)]
pub async fn get_key(
    State(local): State<Local>,
    Token(token): Token,
    Segment(key): Segment,
    Params(p): Params<GetParams>,
) -> Result<Response, Problem> {
    let range = RangeRequest {
        key: p.encoding.decode("key", &key)?,
        revision: p.revision.unwrap_or_default(),
        ..Default::default()
    };
    let resp = local.kv().range(request(range, &token)).await?.into_inner();
    let Some(kv) = resp.kvs.first() else {
        return Err(Problem::not_found(format!("key not found: {key}")));
    };
    Ok(with_etag(Json(p.encoding.kv(kv)?), kv.mod_revision))
}

/// List the keys starting with a prefix.
#[utoipa::path(
    get,
    operation_id = "list_keys",
    path = "/api/v1/kv",
    tag = "kv",
    params(ListParams),
    responses(
        (status = 200, description = "The keys, in key order", body = KvList),
        ErrorResponses,
    )
)]
pub async fn list(
    State(local): State<Local>,
    Token(token): Token,
    Params(p): Params<ListParams>,
) -> Result<Json<KvList>, Problem> {
    let prefix = p.encoding.decode("prefix", &p.prefix.unwrap_or_default())?;
    let range = RangeRequest {
        key: if prefix.is_empty() {
            vec![0]
        } else {
            prefix.clone()
        },
        range_end: prefix_end(&prefix),
        limit: p.limit.unwrap_or_default(),
        revision: p.revision.unwrap_or_default(),
        ..Default::default()
    };
    let resp = local.kv().range(request(range, &token)).await?.into_inner();
    Ok(Json(KvList {
        revision: revision(resp.header.as_ref()),
        count: resp.count,
        more: resp.more,
        kvs: p.encoding.kvs(&resp.kvs)?,
    }))
}

/// One write, plain or conditional.
struct Write {
    key: Vec<u8>,
    value: Vec<u8>,
    lease: Option<LeaseId>,
    prev: bool,
    if_match: Option<IfMatch>,
}

/// The compare of an `If-Match` condition on `key`.
fn condition(key: &[u8], cond: IfMatch) -> Compare {
    let (result, target, value) = match cond {
        IfMatch::Exists => (
            CompareResult::Greater,
            CompareTarget::Version,
            TargetUnion::Version(0),
        ),
        IfMatch::ModRevision(n) => (
            CompareResult::Equal,
            CompareTarget::Mod,
            TargetUnion::ModRevision(n),
        ),
    };
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.to_vec(),
        target_union: Some(value),
        ..Default::default()
    }
}

/// Runs `op` if `cond` holds on `key`; a 412 problem saying how the key is if it does not.
async fn conditional(
    local: &Local,
    token: &str,
    key: &[u8],
    cond: IfMatch,
    op: Op,
) -> Result<(i64, Option<OpResponse>), Problem> {
    let txn = TxnRequest {
        compare: vec![condition(key, cond)],
        success: vec![RequestOp { request: Some(op) }],
        failure: vec![RequestOp {
            request: Some(Op::RequestRange(RangeRequest {
                key: key.to_vec(),
                keys_only: true,
                ..Default::default()
            })),
        }],
    };
    let resp = local.kv().txn(request(txn, token)).await?.into_inner();
    let mut answers = resp.responses.into_iter().filter_map(|r| r.response);
    if resp.succeeded {
        return Ok((revision(resp.header.as_ref()), answers.next()));
    }
    let now = match answers.next() {
        Some(OpResponse::ResponseRange(r)) => r.kvs.first().map(|kv| kv.mod_revision),
        _ => None,
    };
    let now = match now {
        Some(rev) => format!("the key's mod_revision is {rev}"),
        None => "the key does not exist".to_string(),
    };
    let wanted = match cond {
        IfMatch::Exists => "*".to_string(),
        IfMatch::ModRevision(n) => etag(n),
    };
    Err(Problem::precondition_failed(format!(
        "If-Match {wanted} failed: {now}"
    )))
}

async fn write(local: &Local, token: &str, enc: Encoding, w: Write) -> Result<Response, Problem> {
    let put = PutRequest {
        key: w.key.clone(),
        value: w.value,
        lease: w.lease.unwrap_or_default().0,
        prev_kv: w.prev,
        ..Default::default()
    };
    let (revision, prev) = match w.if_match {
        None => {
            let resp = local.kv().put(request(put, token)).await?.into_inner();
            (revision(resp.header.as_ref()), resp.prev_kv)
        }
        Some(cond) => {
            let (rev, answer) =
                conditional(local, token, &w.key, cond, Op::RequestPut(put)).await?;
            let prev = match answer {
                Some(OpResponse::ResponsePut(p)) => p.prev_kv,
                _ => None,
            };
            (rev, prev)
        }
    };
    let prev = prev.map(|kv| enc.kv(&kv)).transpose()?;
    Ok(with_etag(Json(PutResult { revision, prev }), revision))
}

/// Write one key; the body is the value.
#[utoipa::path(
    put,
    operation_id = "put_key",
    path = "/api/v1/kv/{*key}",
    tag = "kv",
    params(("key" = String, Path, description = "The key"), PutParams,
        ("If-Match" = Option<String>, Header, description = "Write only if the key's \
        mod_revision is this (\"0\": only if the key does not exist; *: only if it exists)")),
    request_body(content = String, content_type = "text/plain",
        description = "The value: the raw body (any content type), or base64 text with \
        encoding=base64"),
    responses(
        (status = 200, description = "Written", body = PutResult,
            headers(("ETag" = String, description = "The key's new mod_revision, quoted"))),
        (status = 412, description = "The If-Match condition does not hold", body = Problem,
            content_type = "application/problem+json"),
        ErrorResponses,
    )
)]
pub async fn put_key(
    State(local): State<Local>,
    Token(token): Token,
    Segment(key): Segment,
    Params(p): Params<PutParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let value = match p.encoding {
        Encoding::Utf8 => body.to_vec(),
        Encoding::Base64 => {
            let text = std::str::from_utf8(&body)
                .map_err(|_| Problem::bad_request("value is not valid base64: not text"))?;
            p.encoding.decode("value", text.trim())?
        }
    };
    let w = Write {
        key: p.encoding.decode("key", &key)?,
        value,
        lease: p.lease,
        prev: p.prev,
        if_match: IfMatch::of(&headers)?,
    };
    write(&local, &token, p.encoding, w).await
}

/// Write one key given in the body: a form (`key`, `value`, `lease`) or JSON.
#[utoipa::path(
    post,
    operation_id = "post_key",
    path = "/api/v1/kv",
    tag = "kv",
    params(EncodingParams,
        ("If-Match" = Option<String>, Header, description = "As for PUT")),
    request_body(content(
        (PutBody = "application/json"),
        (PutBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Written", body = PutResult),
        (status = 412, description = "The If-Match condition does not hold", body = Problem,
            content_type = "application/problem+json"),
        ErrorResponses,
    )
)]
pub async fn post_kv(
    State(local): State<Local>,
    Token(token): Token,
    Params(p): Params<EncodingParams>,
    req: Request,
) -> Result<Response, Problem> {
    let if_match = IfMatch::of(req.headers())?;
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body: PutBody = if form {
        axum::Form::<PutBody>::from_request(req, &())
            .await
            .map_err(|e| Problem::new(e.status(), e.body_text()))?
            .0
    } else {
        super::extract::JsonBody::<PutBody>::from_request(req, &())
            .await?
            .0
    };
    let w = Write {
        key: p.encoding.decode("key", &body.key)?,
        value: p.encoding.decode("value", &body.value)?,
        lease: body.lease,
        prev: false,
        if_match,
    };
    write(&local, &token, p.encoding, w).await
}

/// Delete one key, or every key starting with it.
#[utoipa::path(
    delete,
    operation_id = "delete_key",
    path = "/api/v1/kv/{*key}",
    tag = "kv",
    params(("key" = String, Path, description = "The key, or the prefix with prefix=true"),
        DeleteParams,
        ("If-Match" = Option<String>, Header, description = "Delete only if the key's \
        mod_revision is this (not with prefix=true)")),
    responses(
        (status = 200, description = "Deleted (deleted: 0 when there was no such key)",
            body = DeleteResult),
        (status = 412, description = "The If-Match condition does not hold", body = Problem,
            content_type = "application/problem+json"),
        ErrorResponses,
    )
)]
pub async fn delete_key(
    State(local): State<Local>,
    Token(token): Token,
    Segment(key): Segment,
    Params(p): Params<DeleteParams>,
    headers: HeaderMap,
) -> Result<Json<DeleteResult>, Problem> {
    let key = p.encoding.decode("key", &key)?;
    let if_match = IfMatch::of(&headers)?;
    let delete = DeleteRangeRequest {
        range_end: if p.prefix {
            prefix_end(&key)
        } else {
            Vec::new()
        },
        key: key.clone(),
        ..Default::default()
    };
    let (revision, deleted) = match if_match {
        Some(_) if p.prefix => {
            return Err(Problem::bad_request(
                "If-Match cannot be combined with prefix=true",
            ));
        }
        Some(cond) => {
            let op = Op::RequestDeleteRange(delete);
            let (rev, answer) = conditional(&local, &token, &key, cond, op).await?;
            let deleted = match answer {
                Some(OpResponse::ResponseDeleteRange(d)) => d.deleted,
                _ => 0,
            };
            (rev, deleted)
        }
        None => {
            let resp = local
                .kv()
                .delete_range(request(delete, &token))
                .await?
                .into_inner();
            (revision(resp.header.as_ref()), resp.deleted)
        }
    };
    Ok(Json(DeleteResult { revision, deleted }))
}
