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
    /// The request fails etcd's request checks.
    #[error("rejected: {0}")]
    Rejected(#[from] metastore_request::Invalid),
    /// The request was applied before under the same origin; it is not applied again.
    #[error("request already applied")]
    Duplicate,
    /// A NOSPACE alarm is active and the write would add data.
    #[error("database space exceeded")]
    NoSpace,
    /// A CORRUPT alarm is active.
    #[error("corrupt cluster")]
    CorruptAlarm,
    #[error("wrong downgrade target version format")]
    WrongDowngradeVersionFormat,
    #[error("invalid downgrade target version")]
    InvalidDowngradeTargetVersion,
    #[error("cluster has a downgrade job in progress")]
    DowngradeInProcess,
    #[error("no inflight downgrade job")]
    NoInflightDowngrade,
    #[error("auth: {0}")]
    Auth(#[from] crate::auth::AuthError),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl MvccError {
    /// True when the store itself failed (engine I/O, a corrupt record): the member must stop
    /// rather than decide differently from the others. Every other error is a domain outcome
    /// that every member reaches the same way from the same entry.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            MvccError::Engine(_)
                | MvccError::Corrupt(_)
                | MvccError::Auth(crate::auth::AuthError::Corrupt(_))
        )
    }
}
