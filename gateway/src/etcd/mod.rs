//! The etcd v3 gRPC services. Handlers are thin: validate, make one upstream call, return.

/// Takes the expected variant out of a storage answer; anything else is an internal error.
macro_rules! expect_result {
    ($result:expr, $variant:ident) => {
        match $result {
            metastore_internal_proto::storage::kv_response::Result::$variant(r) => Ok(r),
            other => Err($crate::error::Error::Internal(format!(
                "storage answered {} with {other:?}",
                stringify!($variant)
            ))),
        }
    };
}

pub mod auth;
pub mod cluster;
pub(crate) mod concurrency;
pub mod election;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod watch;
