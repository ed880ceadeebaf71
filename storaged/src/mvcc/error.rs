//! Errors of the MVCC layer. The service layer maps them to internal error codes.

use crate::engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    #[error("required revision has been compacted")]
    Compacted,
    #[error("required revision is a future revision")]
    FutureRev,
    #[error("requested lease not found")]
    LeaseNotFound,
    #[error("lease already exists")]
    LeaseExists,
    #[error("too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("key not found")]
    KeyNotFound,
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}
