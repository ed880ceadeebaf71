//! The REST interface types (JSON bodies and query parameters), with their OpenAPI schemas.
//!
//! These are MetaStore's own types, not etcd's messages: keys and values are strings (UTF-8,
//! or base64 with `?encoding=base64`), revisions and counts are JSON numbers, and lease ids are
//! decimal strings (they use all 63 bits, more than a JSON number keeps exactly in JavaScript);
//! a lease id given in a request may also be a JSON number.

use super::problem::Problem;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use metastore_proto::mvccpb;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, ToSchema};

/// How keys and values are written in requests and answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Plain UTF-8 text (a stored key or value that is not UTF-8 is refused with 406).
    #[default]
    Utf8,
    /// Standard base64 (the URL-safe alphabet is accepted too).
    Base64,
}

impl Encoding {
    /// `bytes` (the `what` of a key-value) as this encoding writes them.
    pub fn encode(self, what: &str, bytes: &[u8]) -> Result<String, Problem> {
        match self {
            Encoding::Base64 => Ok(STANDARD.encode(bytes)),
            Encoding::Utf8 => String::from_utf8(bytes.to_vec()).map_err(|_| {
                Problem::new(
                    axum::http::StatusCode::NOT_ACCEPTABLE,
                    format!("a stored {what} is not valid UTF-8: ask with ?encoding=base64"),
                )
            }),
        }
    }

    /// The bytes `text` (the `what` of a request) stands for.
    pub fn decode(self, what: &str, text: &str) -> Result<Vec<u8>, Problem> {
        match self {
            Encoding::Utf8 => Ok(text.as_bytes().to_vec()),
            Encoding::Base64 => STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE.decode(text))
                .map_err(|e| Problem::bad_request(format!("{what} is not valid base64: {e}"))),
        }
    }

    /// A stored key-value as the REST API shows it.
    pub fn kv(self, kv: &mvccpb::KeyValue) -> Result<KeyValue, Problem> {
        Ok(KeyValue {
            key: self.encode("key", &kv.key)?,
            value: self.encode("value", &kv.value)?,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: LeaseId(kv.lease),
        })
    }

    /// Several key-values.
    pub fn kvs(self, kvs: &[mvccpb::KeyValue]) -> Result<Vec<KeyValue>, Problem> {
        kvs.iter().map(|kv| self.kv(kv)).collect()
    }
}

/// A lease id: written as a decimal string, read from a decimal string, a `0x` hexadecimal
/// string (as `etcdctl` prints ids) or a JSON number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseId(pub i64);

impl std::str::FromStr for LeaseId {
    type Err = Problem;
    fn from_str(s: &str) -> Result<Self, Problem> {
        let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) => i64::from_str_radix(hex, 16),
            None => s.parse(),
        };
        parsed
            .map(LeaseId)
            .map_err(|e| Problem::bad_request(format!("bad lease id {s:?}: {e}")))
    }
}

impl Serialize for LeaseId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for LeaseId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(LeaseId(n)),
            Raw::Text(t) => t
                .parse()
                .map_err(|p: Problem| serde::de::Error::custom(p.detail)),
        }
    }
}

impl utoipa::PartialSchema for LeaseId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^(-?[0-9]+|0[xX][0-9a-fA-F]+)$"))
            .description(Some(
                "A lease id as a decimal string (0: no lease). Requests may also give a JSON \
                 number or a 0x-prefixed hexadecimal string.",
            ))
            .examples(["7587880327428424707"])
            .into()
    }
}

impl ToSchema for LeaseId {}

/// A key and its value with their revisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"key": "foo", "value": "bar", "create_revision": 2,
    "mod_revision": 2, "version": 1, "lease": "0"}))]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// The revision that created the key (since it last did not exist).
    pub create_revision: i64,
    /// The revision of the key's last change; its `ETag`.
    pub mod_revision: i64,
    /// How many times the key was written since its creation.
    pub version: i64,
    /// The lease the key is attached to (`"0"`: none).
    pub lease: LeaseId,
}

/// Keys in a range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KvList {
    /// The store revision the list was read at.
    pub revision: i64,
    /// How many keys the range holds (not limited by `limit`).
    pub count: i64,
    /// Whether the range holds more keys than listed.
    pub more: bool,
    pub kvs: Vec<KeyValue>,
}

/// The result of a write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PutResult {
    /// The revision of the write.
    pub revision: i64,
    /// The key-value before the write (with `prev=true`, when the key existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<KeyValue>,
}

/// The result of a delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeleteResult {
    /// The store revision after the delete.
    pub revision: i64,
    /// How many keys were deleted.
    pub deleted: i64,
}

/// A write given in a body (`POST /api/v1/kv`, JSON or form).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct PutBody {
    pub key: String,
    pub value: String,
    /// A lease to attach the key to.
    #[serde(default)]
    pub lease: Option<LeaseId>,
}

/// A store revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Revision {
    pub revision: i64,
}

/// Query: how keys and values are written.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EncodingParams {
    /// `utf8` (default) or `base64`: for the key in the path, the body and the answer.
    #[serde(default)]
    #[param(inline)]
    pub encoding: Encoding,
}

/// Query of a key read.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetParams {
    /// Read at this revision instead of the newest (0: newest).
    pub revision: Option<i64>,
    /// `utf8` (default) or `base64`.
    #[serde(default)]
    #[param(inline)]
    pub encoding: Encoding,
}

/// Query of a listing.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// List the keys starting with this (empty or absent: every key).
    pub prefix: Option<String>,
    /// List at most this many keys (0: no limit).
    pub limit: Option<i64>,
    /// Read at this revision instead of the newest (0: newest).
    pub revision: Option<i64>,
    /// `utf8` (default) or `base64` (then `prefix` is base64 too).
    #[serde(default)]
    #[param(inline)]
    pub encoding: Encoding,
}

/// Query of a key write.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PutParams {
    /// Attach the key to this lease.
    #[param(value_type = Option<String>)]
    pub lease: Option<LeaseId>,
    /// Answer the key-value as it was before the write.
    #[serde(default)]
    pub prev: bool,
    /// `utf8` (default) or `base64`: the key in the path, the body and the answer.
    #[serde(default)]
    #[param(inline)]
    pub encoding: Encoding,
}

/// Query of a delete.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// Delete every key starting with the key in the path.
    #[serde(default)]
    pub prefix: bool,
    /// `utf8` (default) or `base64`.
    #[serde(default)]
    #[param(inline)]
    pub encoding: Encoding,
}

/// Query of a watch.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WatchParams {
    /// Watch every key starting with the key (always true without a key in the path).
    #[serde(default)]
    pub prefix: bool,
    /// Send the changes from this revision on (0 or absent: from now). A `Last-Event-ID`
    /// header wins over it.
    pub start_revision: Option<i64>,
    /// `utf8` (default) or `base64`.
    #[serde(default)]
    #[param(inline)]
    pub encoding: Encoding,
}

/// Credentials for a token.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TokenRequest {
    pub name: String,
    pub password: String,
}

/// An auth token, to send as `Authorization: Bearer <token>`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Token {
    pub token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ids_are_strings_out_and_strings_or_numbers_in() {
        let id = LeaseId(7_587_880_327_428_424_707);
        assert_eq!(
            serde_json::to_string(&id).expect("json"),
            "\"7587880327428424707\""
        );
        for text in [
            "7587880327428424707",
            "\"7587880327428424707\"",
            "\"0x694d90f49a8bc403\"",
        ] {
            let back: LeaseId = serde_json::from_str(text).expect("lease id");
            assert_eq!(back, id, "{text}");
        }
        assert!(serde_json::from_str::<LeaseId>("\"x1\"").is_err());
    }

    #[test]
    fn encodings_round_trip_and_refuse_what_they_cannot_write() {
        let b64 = Encoding::Base64;
        assert_eq!(b64.encode("value", b"\xff\x00").expect("b64"), "/wA=");
        assert_eq!(b64.decode("value", "/wA=").expect("std"), b"\xff\x00");
        assert_eq!(b64.decode("value", "_wA=").expect("url-safe"), b"\xff\x00");
        let bad = b64.decode("value", "!!").expect_err("not base64");
        assert_eq!(bad.status, 400);
        assert_eq!(
            Encoding::Utf8.encode("key", b"\xff").expect_err("").status,
            406
        );
    }
}
