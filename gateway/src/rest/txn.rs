//! A small transaction: compares, then the `success` or the `failure` operations, as one etcd
//! Txn (one revision).

use super::extract::{JsonBody, Params, Token};
use super::kv::revision;
use super::problem::{ErrorResponses, Problem};
use super::types::{Encoding, EncodingParams, KeyValue, LeaseId};
use crate::etcd::concurrency::prefix_end;
use crate::http::local::{Local, request};
use axum::Json;
use axum::extract::State;
use metastore_proto::etcdserverpb as pb;
use metastore_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use metastore_proto::etcdserverpb::request_op::Request as PbOp;
use metastore_proto::etcdserverpb::response_op::Response as PbResult;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A transaction.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(example = json!({
    "compare": [{"key": "a", "target": "version", "result": "=", "value": 0}],
    "success": [{"put": {"key": "a", "value": "1"}}, {"put": {"key": "b", "value": "1"}}],
    "failure": [{"get": {"key": "a"}}]
}))]
pub struct TxnRequest {
    /// All must hold for `success` to run; otherwise `failure` runs.
    #[serde(default)]
    pub compare: Vec<TxnCompare>,
    #[serde(default)]
    pub success: Vec<TxnOp>,
    #[serde(default)]
    pub failure: Vec<TxnOp>,
}

/// One comparison of a key's field with a value.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TxnCompare {
    pub key: String,
    /// Compare every key starting with `key`.
    #[serde(default)]
    pub prefix: bool,
    pub target: CompareField,
    pub result: CompareOp,
    /// A string for `value` (encoded as the request says), a number (or a lease id string)
    /// for the others. A missing key has 0 in every number field.
    pub value: Scalar,
}

/// The field a comparison reads.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompareField {
    Value,
    Version,
    CreateRevision,
    ModRevision,
    Lease,
}

/// How a field compares with the value.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
pub enum CompareOp {
    #[serde(rename = "=", alias = "==")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
    #[serde(rename = "<")]
    Less,
    #[serde(rename = ">")]
    Greater,
}

/// A number or a string.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Scalar {
    Number(i64),
    Text(String),
}

/// One operation.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TxnOp {
    Put {
        key: String,
        value: String,
        #[serde(default)]
        lease: Option<LeaseId>,
    },
    Delete {
        key: String,
        #[serde(default)]
        prefix: bool,
    },
    Get {
        key: String,
        #[serde(default)]
        prefix: bool,
        #[serde(default)]
        limit: Option<i64>,
    },
}

/// The answer of a transaction.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TxnResult {
    /// Whether every comparison held (then `success` ran, else `failure`).
    pub succeeded: bool,
    /// The store revision after the transaction.
    pub revision: i64,
    /// One result per operation that ran, in order.
    pub results: Vec<TxnOpResult>,
}

/// The result of one operation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TxnOpResult {
    Put {
        revision: i64,
    },
    Delete {
        deleted: i64,
    },
    Get {
        count: i64,
        more: bool,
        kvs: Vec<KeyValue>,
    },
}

fn range_end(key: &[u8], prefix: bool) -> Vec<u8> {
    if prefix { prefix_end(key) } else { Vec::new() }
}

fn compare(enc: Encoding, c: TxnCompare) -> Result<pb::Compare, Problem> {
    let key = enc.decode("key", &c.key)?;
    let number = |what: &str| match &c.value {
        Scalar::Number(n) => Ok(*n),
        Scalar::Text(t) if matches!(c.target, CompareField::Lease) => {
            t.parse::<LeaseId>().map(|l| l.0)
        }
        Scalar::Text(t) => t
            .parse()
            .map_err(|_| Problem::bad_request(format!("compare {what}: {t:?} is no number"))),
    };
    let (target, value) = match c.target {
        CompareField::Value => match &c.value {
            Scalar::Text(t) => (
                CompareTarget::Value,
                TargetUnion::Value(enc.decode("value", t)?),
            ),
            Scalar::Number(_) => {
                return Err(Problem::bad_request(
                    "compare value: the value must be a string",
                ));
            }
        },
        CompareField::Version => (
            CompareTarget::Version,
            TargetUnion::Version(number("version")?),
        ),
        CompareField::CreateRevision => (
            CompareTarget::Create,
            TargetUnion::CreateRevision(number("create_revision")?),
        ),
        CompareField::ModRevision => (
            CompareTarget::Mod,
            TargetUnion::ModRevision(number("mod_revision")?),
        ),
        CompareField::Lease => (CompareTarget::Lease, TargetUnion::Lease(number("lease")?)),
    };
    let result = match c.result {
        CompareOp::Equal => CompareResult::Equal,
        CompareOp::NotEqual => CompareResult::NotEqual,
        CompareOp::Less => CompareResult::Less,
        CompareOp::Greater => CompareResult::Greater,
    };
    Ok(pb::Compare {
        result: result as i32,
        target: target as i32,
        range_end: range_end(&key, c.prefix),
        key,
        target_union: Some(value),
    })
}

fn op(enc: Encoding, op: TxnOp) -> Result<pb::RequestOp, Problem> {
    let request = match op {
        TxnOp::Put { key, value, lease } => PbOp::RequestPut(pb::PutRequest {
            key: enc.decode("key", &key)?,
            value: enc.decode("value", &value)?,
            lease: lease.unwrap_or_default().0,
            ..Default::default()
        }),
        TxnOp::Delete { key, prefix } => {
            let key = enc.decode("key", &key)?;
            PbOp::RequestDeleteRange(pb::DeleteRangeRequest {
                range_end: range_end(&key, prefix),
                key,
                ..Default::default()
            })
        }
        TxnOp::Get { key, prefix, limit } => {
            let key = enc.decode("key", &key)?;
            PbOp::RequestRange(pb::RangeRequest {
                range_end: range_end(&key, prefix),
                key,
                limit: limit.unwrap_or_default(),
                ..Default::default()
            })
        }
    };
    Ok(pb::RequestOp {
        request: Some(request),
    })
}

fn result(enc: Encoding, revision: i64, r: PbResult) -> Result<TxnOpResult, Problem> {
    Ok(match r {
        PbResult::ResponsePut(_) => TxnOpResult::Put { revision },
        PbResult::ResponseDeleteRange(d) => TxnOpResult::Delete { deleted: d.deleted },
        PbResult::ResponseRange(r) => TxnOpResult::Get {
            count: r.count,
            more: r.more,
            kvs: enc.kvs(&r.kvs)?,
        },
        PbResult::ResponseTxn(_) => {
            return Err(Problem::bad_request(
                "nested transactions are not supported",
            ));
        }
    })
}

/// Run a transaction.
#[utoipa::path(
    post,
    operation_id = "txn",
    path = "/api/v1/txn",
    tag = "kv",
    params(EncodingParams),
    request_body(content = TxnRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The transaction ran (see succeeded)", body = TxnResult),
        ErrorResponses,
    )
)]
pub async fn txn(
    State(local): State<Local>,
    Token(token): Token,
    Params(p): Params<EncodingParams>,
    JsonBody(body): JsonBody<TxnRequest>,
) -> Result<Json<TxnResult>, Problem> {
    let enc = p.encoding;
    let txn = pb::TxnRequest {
        compare: body
            .compare
            .into_iter()
            .map(|c| compare(enc, c))
            .collect::<Result<_, _>>()?,
        success: body
            .success
            .into_iter()
            .map(|o| op(enc, o))
            .collect::<Result<_, _>>()?,
        failure: body
            .failure
            .into_iter()
            .map(|o| op(enc, o))
            .collect::<Result<_, _>>()?,
    };
    let resp = local.kv().txn(request(txn, &token)).await?.into_inner();
    let rev = revision(resp.header.as_ref());
    let results = resp
        .responses
        .into_iter()
        .filter_map(|r| r.response)
        .map(|r| result(enc, rev, r))
        .collect::<Result<_, _>>()?;
    Ok(Json(TxnResult {
        succeeded: resp.succeeded,
        revision: rev,
        results,
    }))
}
