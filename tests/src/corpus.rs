//! Request corpora kept as data under `tests/corpus/`: one etcd KV request per line, as JSON
//! with etcd's field names. Lines that are empty or start with `//` are comments.
//!
//! `{"put": {"key": "a", "value": "1", "prev_kv": true}}`, `{"range": {...}}`,
//! `{"delete_range": {...}}`, `{"compact": {"revision": 5, "physical": true}}`,
//! `{"txn": {"compare": [...], "success": [op...], "failure": [op...]}}` where an op is
//! `{"request_put": {...}}` (or `request_range`, `request_delete_range`, `request_txn`) and `{}`
//! is an op with no request. A compare is `{"key", "range_end", "target": "VALUE",
//! "result": "EQUAL"}` plus one of `value`, `version`, `create_revision`, `mod_revision`,
//! `lease`. Enums are their proto names (`DESCEND`, `MOD`). Byte strings are JSON strings
//! whose characters are bytes: `"\u0000"` is 0x00 and `"\u00ff"` is 0xff (no character above
//! U+00FF). Unknown fields are refused, so a typo cannot silently drop a field.

use anyhow::{Context, Result, bail};
use metastore_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use metastore_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use metastore_proto::etcdserverpb::request_op::Request as Op;
use metastore_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use serde_json::{Map, Value};
use std::path::Path;

/// One request of a KV corpus.
#[derive(Clone, Debug, PartialEq)]
pub enum KvRequest {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
}

/// Reads the corpus file `name` under `tests/corpus/`.
pub fn load(name: &str) -> Result<Vec<KvRequest>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    parse(&text).with_context(|| format!("{}", path.display()))
}

/// Parses corpus text (see the module docs).
pub fn parse(text: &str) -> Result<Vec<KvRequest>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let value: Value = serde_json::from_str(line).with_context(|| format!("line {}", n + 1))?;
        out.push(request(&value).with_context(|| format!("line {}", n + 1))?);
    }
    Ok(out)
}

/// The one `{"kind": {...}}` member of `v`.
fn single(v: &Value) -> Result<(&str, &Map<String, Value>)> {
    let obj = v.as_object().context("expected an object")?;
    let mut it = obj.iter();
    match (it.next(), it.next()) {
        (Some((k, Value::Object(body))), None) => Ok((k.as_str(), body)),
        _ => bail!("expected exactly one member holding an object: {v}"),
    }
}

fn request(v: &Value) -> Result<KvRequest> {
    let (kind, body) = single(v)?;
    Ok(match kind {
        "range" => KvRequest::Range(range(body)?),
        "put" => KvRequest::Put(put(body)?),
        "delete_range" => KvRequest::DeleteRange(delete_range(body)?),
        "txn" => KvRequest::Txn(txn(body)?),
        "compact" => {
            let f = Fields::new(body, &["revision", "physical"])?;
            KvRequest::Compact(CompactionRequest {
                revision: f.int("revision")?,
                physical: f.flag("physical")?,
            })
        }
        other => bail!("unknown request kind {other:?}"),
    })
}

/// The members of one message, checked against the names it may have.
struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn new(body: &'a Map<String, Value>, known: &[&str]) -> Result<Self> {
        if let Some(k) = body.keys().find(|k| !known.contains(&k.as_str())) {
            bail!("unknown field {k:?} (known: {known:?})");
        }
        Ok(Self(body))
    }

    fn bytes(&self, name: &str) -> Result<Vec<u8>> {
        match self.0.get(name) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => s
                .chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect::<Option<Vec<u8>>>()
                .with_context(|| format!("{name}: characters above U+00FF in {s:?}")),
            Some(other) => bail!("{name}: expected a string, got {other}"),
        }
    }

    fn int(&self, name: &str) -> Result<i64> {
        match self.0.get(name) {
            None => Ok(0),
            Some(v) => v
                .as_i64()
                .with_context(|| format!("{name}: expected an integer, got {v}")),
        }
    }

    fn flag(&self, name: &str) -> Result<bool> {
        match self.0.get(name) {
            None => Ok(false),
            Some(v) => v
                .as_bool()
                .with_context(|| format!("{name}: expected true or false, got {v}")),
        }
    }

    fn name(&self, name: &str) -> Result<Option<&'a str>> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => bail!("{name}: expected a name, got {other}"),
        }
    }

    fn list(&self, name: &str) -> Result<&'a [Value]> {
        match self.0.get(name) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(other) => bail!("{name}: expected a list, got {other}"),
        }
    }
}

/// Resolves an enum member by its proto name; absent means the first (zero) value.
fn enum_value<E: Into<i32>>(
    name: Option<&str>,
    what: &str,
    from: fn(&str) -> Option<E>,
) -> Result<i32> {
    match name {
        None => Ok(0),
        Some(n) => from(n)
            .map(Into::into)
            .with_context(|| format!("unknown {what} {n:?}")),
    }
}

fn range(body: &Map<String, Value>) -> Result<RangeRequest> {
    let f = Fields::new(
        body,
        &[
            "key",
            "range_end",
            "limit",
            "revision",
            "sort_order",
            "sort_target",
            "serializable",
            "keys_only",
            "count_only",
            "min_mod_revision",
            "max_mod_revision",
            "min_create_revision",
            "max_create_revision",
        ],
    )?;
    Ok(RangeRequest {
        key: f.bytes("key")?,
        range_end: f.bytes("range_end")?,
        limit: f.int("limit")?,
        revision: f.int("revision")?,
        sort_order: enum_value(
            f.name("sort_order")?,
            "sort order",
            SortOrder::from_str_name,
        )?,
        sort_target: enum_value(
            f.name("sort_target")?,
            "sort target",
            SortTarget::from_str_name,
        )?,
        serializable: f.flag("serializable")?,
        keys_only: f.flag("keys_only")?,
        count_only: f.flag("count_only")?,
        min_mod_revision: f.int("min_mod_revision")?,
        max_mod_revision: f.int("max_mod_revision")?,
        min_create_revision: f.int("min_create_revision")?,
        max_create_revision: f.int("max_create_revision")?,
    })
}

fn put(body: &Map<String, Value>) -> Result<PutRequest> {
    let f = Fields::new(
        body,
        &[
            "key",
            "value",
            "lease",
            "prev_kv",
            "ignore_value",
            "ignore_lease",
        ],
    )?;
    Ok(PutRequest {
        key: f.bytes("key")?,
        value: f.bytes("value")?,
        lease: f.int("lease")?,
        prev_kv: f.flag("prev_kv")?,
        ignore_value: f.flag("ignore_value")?,
        ignore_lease: f.flag("ignore_lease")?,
    })
}

fn delete_range(body: &Map<String, Value>) -> Result<DeleteRangeRequest> {
    let f = Fields::new(body, &["key", "range_end", "prev_kv"])?;
    Ok(DeleteRangeRequest {
        key: f.bytes("key")?,
        range_end: f.bytes("range_end")?,
        prev_kv: f.flag("prev_kv")?,
    })
}

fn txn(body: &Map<String, Value>) -> Result<TxnRequest> {
    let f = Fields::new(body, &["compare", "success", "failure"])?;
    let ops = |name: &str| -> Result<Vec<RequestOp>> {
        f.list(name)?
            .iter()
            .enumerate()
            .map(|(i, v)| op(v).with_context(|| format!("{name}[{i}]")))
            .collect()
    };
    Ok(TxnRequest {
        compare: f
            .list("compare")?
            .iter()
            .enumerate()
            .map(|(i, v)| compare(v).with_context(|| format!("compare[{i}]")))
            .collect::<Result<_>>()?,
        success: ops("success")?,
        failure: ops("failure")?,
    })
}

fn op(v: &Value) -> Result<RequestOp> {
    if v.as_object().is_some_and(Map::is_empty) {
        return Ok(RequestOp { request: None });
    }
    let (kind, body) = single(v)?;
    let request = match kind {
        "request_range" => Op::RequestRange(range(body)?),
        "request_put" => Op::RequestPut(put(body)?),
        "request_delete_range" => Op::RequestDeleteRange(delete_range(body)?),
        "request_txn" => Op::RequestTxn(txn(body)?),
        other => bail!("unknown op {other:?}"),
    };
    Ok(RequestOp {
        request: Some(request),
    })
}

fn compare(v: &Value) -> Result<Compare> {
    let body = v.as_object().context("expected an object")?;
    const UNIONS: [&str; 5] = [
        "value",
        "version",
        "create_revision",
        "mod_revision",
        "lease",
    ];
    let f = Fields::new(
        body,
        &[
            "key",
            "range_end",
            "target",
            "result",
            "value",
            "version",
            "create_revision",
            "mod_revision",
            "lease",
        ],
    )?;
    let given: Vec<&str> = UNIONS
        .into_iter()
        .filter(|u| body.contains_key(*u))
        .collect();
    let target_union = match given.as_slice() {
        [] => None,
        ["value"] => Some(TargetUnion::Value(f.bytes("value")?)),
        ["version"] => Some(TargetUnion::Version(f.int("version")?)),
        ["create_revision"] => Some(TargetUnion::CreateRevision(f.int("create_revision")?)),
        ["mod_revision"] => Some(TargetUnion::ModRevision(f.int("mod_revision")?)),
        ["lease"] => Some(TargetUnion::Lease(f.int("lease")?)),
        more => bail!("a compare holds one target value, got {more:?}"),
    };
    Ok(Compare {
        key: f.bytes("key")?,
        range_end: f.bytes("range_end")?,
        target: enum_value(f.name("target")?, "target", CompareTarget::from_str_name)?,
        result: enum_value(f.name("result")?, "result", CompareResult::from_str_name)?,
        target_union,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_refuses_typos() {
        let text = r#"
            // a comment
            {"put": {"key": "\u00ff\u0000", "value": "v", "prev_kv": true}}
            {"range": {"key": "a", "range_end": "\u0000", "sort_order": "DESCEND", "sort_target": "MOD", "limit": 2}}
            {"txn": {"compare": [{"key": "a", "target": "VERSION", "result": "GREATER", "version": 2}], "success": [{"request_txn": {"success": [{}]}}], "failure": [{"request_delete_range": {"key": "a"}}]}}
            {"compact": {"revision": 5, "physical": true}}
        "#;
        let reqs = parse(text).expect("parse");
        assert_eq!(reqs.len(), 4);
        let KvRequest::Put(p) = &reqs[0] else {
            panic!("{:?}", reqs[0])
        };
        assert_eq!((p.key.as_slice(), p.prev_kv), (&[0xff, 0][..], true));
        let KvRequest::Range(r) = &reqs[1] else {
            panic!("{:?}", reqs[1])
        };
        assert_eq!(r.sort_order, SortOrder::Descend as i32);
        assert_eq!(r.sort_target, SortTarget::Mod as i32);
        let KvRequest::Txn(t) = &reqs[2] else {
            panic!("{:?}", reqs[2])
        };
        assert_eq!(t.compare[0].target_union, Some(TargetUnion::Version(2)));
        assert!(matches!(
            &t.success[0].request,
            Some(Op::RequestTxn(inner)) if inner.success[0].request.is_none()
        ));
        for bad in [
            r#"{"put": {"key": "a", "prevkv": true}}"#,
            r#"{"range": {"key": "a", "sort_order": "UPWARDS"}}"#,
            r#"{"put": {"key": "\u0100"}}"#,
            r#"{"txn": {"compare": [{"key": "a", "value": "x", "version": 1}]}}"#,
            r#"{"get": {"key": "a"}}"#,
        ] {
            assert!(parse(bad).is_err(), "accepted {bad}");
        }
    }
}
