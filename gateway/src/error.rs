//! The gateway's one error type and its one mapping to gRPC. Every client-visible etcd error
//! string lives here, byte for byte as etcd sends it; clients match errors by that text.

use metastore_internal_proto::storage::{ErrorCode, StorageError};
use tonic::{Code, Status};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: request timed out")]
    Timeout,
    /// A write whose outcome is unknown after a leader change (it may still be applied).
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    TimeoutLeaderFail,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: rpc not supported for learner")]
    LearnerUnsupported,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStarted,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    /// No storage member could be reached.
    #[error("metastore: storage unavailable: {0}")]
    Unavailable(String),
    /// A bug or a broken invariant; the detail goes to the client as etcd does for unmapped
    /// errors.
    #[error("metastore: internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn code(&self) -> Code {
        match self {
            Error::EmptyKey
            | Error::KeyNotFound
            | Error::ValueProvided
            | Error::LeaseProvided
            | Error::TooManyOps
            | Error::DuplicateKey
            | Error::InvalidSortOption
            | Error::RequestTooLarge
            | Error::MemberBadUrls => Code::InvalidArgument,
            Error::MemberExists
            | Error::PeerUrlExists
            | Error::MemberNotLearner
            | Error::LearnerNotReady
            | Error::TooManyLearners
            | Error::BadLeaderTransferee
            | Error::NotEnoughStarted => Code::FailedPrecondition,
            Error::MemberNotFound => Code::NotFound,
            Error::LeaderChanged | Error::LearnerUnsupported | Error::Unhealthy => {
                Code::Unavailable
            }
            Error::Compacted | Error::FutureRev | Error::LeaseTtlTooLarge => Code::OutOfRange,
            Error::LeaseExists => Code::FailedPrecondition,
            Error::LeaseNotFound => Code::NotFound,
            Error::NotLeader => Code::FailedPrecondition,
            Error::NoLeader | Error::Timeout | Error::TimeoutLeaderFail | Error::Unavailable(_) => {
                Code::Unavailable
            }
            Error::Internal(_) => Code::Unknown,
        }
    }

    pub fn to_status(&self) -> Status {
        Status::new(self.code(), self.to_string())
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        e.to_status()
    }
}

impl From<metastore_request::Invalid> for Error {
    fn from(e: metastore_request::Invalid) -> Self {
        use metastore_request::Invalid;
        match e {
            Invalid::EmptyKey => Error::EmptyKey,
            Invalid::ValueProvided => Error::ValueProvided,
            Invalid::LeaseProvided => Error::LeaseProvided,
            Invalid::TooManyOps => Error::TooManyOps,
            Invalid::DuplicateKey => Error::DuplicateKey,
            Invalid::InvalidSortOption => Error::InvalidSortOption,
            Invalid::RequestTooLarge => Error::RequestTooLarge,
            Invalid::EmptyOp => Error::KeyNotFound,
        }
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        match ErrorCode::try_from(e.code) {
            Ok(ErrorCode::Compacted) => Error::Compacted,
            Ok(ErrorCode::FutureRevision) => Error::FutureRev,
            Ok(ErrorCode::LeaseNotFound) => Error::LeaseNotFound,
            Ok(ErrorCode::LeaseExists) => Error::LeaseExists,
            Ok(ErrorCode::LeaseTtlTooLarge) => Error::LeaseTtlTooLarge,
            Ok(ErrorCode::KeyNotFound) => Error::KeyNotFound,
            Ok(ErrorCode::NotLeader) => Error::NotLeader,
            Ok(ErrorCode::NoLeader) => Error::NoLeader,
            Ok(ErrorCode::LeaderChanged) => Error::LeaderChanged,
            Ok(ErrorCode::Timeout) => Error::Timeout,
            Ok(ErrorCode::MemberExists) => Error::MemberExists,
            Ok(ErrorCode::MemberNotFound) => Error::MemberNotFound,
            Ok(ErrorCode::PeerUrlExists) => Error::PeerUrlExists,
            Ok(ErrorCode::LearnerNotReady) => Error::LearnerNotReady,
            Ok(ErrorCode::TooManyLearners) => Error::TooManyLearners,
            Ok(ErrorCode::MemberNotLearner) => Error::MemberNotLearner,
            Ok(ErrorCode::BadLeaderTransferee) => Error::BadLeaderTransferee,
            Ok(ErrorCode::LearnerUnsupported) => Error::LearnerUnsupported,
            Ok(ErrorCode::NotEnoughStarted) => Error::NotEnoughStarted,
            Ok(ErrorCode::UnhealthyCluster) => Error::Unhealthy,
            Ok(ErrorCode::EmptyKey) => Error::EmptyKey,
            Ok(ErrorCode::ValueProvided) => Error::ValueProvided,
            Ok(ErrorCode::LeaseProvided) => Error::LeaseProvided,
            Ok(ErrorCode::TooManyOps) => Error::TooManyOps,
            Ok(ErrorCode::DuplicateKey) => Error::DuplicateKey,
            Ok(ErrorCode::InvalidSortOption) => Error::InvalidSortOption,
            Ok(ErrorCode::RequestTooLarge) => Error::RequestTooLarge,
            Ok(ErrorCode::OutcomeUnknown) => Error::TimeoutLeaderFail,
            // Applied by an earlier attempt whose answer was lost: as unknown to the client.
            Ok(ErrorCode::DuplicateRequest) => Error::Timeout,
            _ => Error::Internal(e.detail),
        }
    }
}

/// Maps a failed call to storaged (transport or status) to a client error.
pub fn from_upstream(status: &Status) -> Error {
    match status.code() {
        Code::DeadlineExceeded | Code::Cancelled => Error::Timeout,
        Code::Unavailable => Error::Unavailable(status.message().to_string()),
        _ => Error::Internal(status.message().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every etcd error, with the exact code and text etcd sends.
    #[test]
    fn every_variant_matches_etcd() {
        let table = [
            (
                Error::EmptyKey,
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (
                Error::KeyNotFound,
                Code::InvalidArgument,
                "etcdserver: key not found",
            ),
            (
                Error::ValueProvided,
                Code::InvalidArgument,
                "etcdserver: value is provided",
            ),
            (
                Error::LeaseProvided,
                Code::InvalidArgument,
                "etcdserver: lease is provided",
            ),
            (
                Error::TooManyOps,
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (
                Error::DuplicateKey,
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                Error::InvalidSortOption,
                Code::InvalidArgument,
                "etcdserver: invalid sort option",
            ),
            (
                Error::RequestTooLarge,
                Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            (
                Error::Compacted,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                Error::FutureRev,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (
                Error::LeaseNotFound,
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (Error::NoLeader, Code::Unavailable, "etcdserver: no leader"),
            (
                Error::NotLeader,
                Code::FailedPrecondition,
                "etcdserver: not leader",
            ),
            (
                Error::Timeout,
                Code::Unavailable,
                "etcdserver: request timed out",
            ),
            (
                Error::LeaderChanged,
                Code::Unavailable,
                "etcdserver: leader changed",
            ),
            (
                Error::TimeoutLeaderFail,
                Code::Unavailable,
                "etcdserver: request timed out, possibly due to previous leader failure",
            ),
            (
                Error::MemberExists,
                Code::FailedPrecondition,
                "etcdserver: member ID already exist",
            ),
            (
                Error::PeerUrlExists,
                Code::FailedPrecondition,
                "etcdserver: Peer URLs already exists",
            ),
            (
                Error::MemberBadUrls,
                Code::InvalidArgument,
                "etcdserver: given member URLs are invalid",
            ),
            (
                Error::MemberNotFound,
                Code::NotFound,
                "etcdserver: member not found",
            ),
            (
                Error::MemberNotLearner,
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member",
            ),
            (
                Error::LearnerNotReady,
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            (
                Error::TooManyLearners,
                Code::FailedPrecondition,
                "etcdserver: too many learner members in cluster",
            ),
            (
                Error::BadLeaderTransferee,
                Code::FailedPrecondition,
                "etcdserver: bad leader transferee",
            ),
            (
                Error::LearnerUnsupported,
                Code::Unavailable,
                "etcdserver: rpc not supported for learner",
            ),
            (
                Error::NotEnoughStarted,
                Code::FailedPrecondition,
                "etcdserver: re-configuration failed due to not enough started members",
            ),
            (
                Error::Unhealthy,
                Code::Unavailable,
                "etcdserver: unhealthy cluster",
            ),
        ];
        for (err, code, msg) in table {
            let status = err.to_status();
            assert_eq!(status.code(), code, "{err:?}");
            assert_eq!(status.message(), msg, "{err:?}");
        }
    }

    #[test]
    fn storage_codes_map_to_etcd_errors() {
        let e = |code: ErrorCode| {
            Error::from(StorageError {
                code: code as i32,
                detail: String::new(),
            })
        };
        assert_eq!(e(ErrorCode::Compacted), Error::Compacted);
        assert_eq!(e(ErrorCode::FutureRevision), Error::FutureRev);
        assert_eq!(e(ErrorCode::LeaseNotFound), Error::LeaseNotFound);
        assert_eq!(e(ErrorCode::KeyNotFound), Error::KeyNotFound);
        assert_eq!(e(ErrorCode::LeaseExists), Error::LeaseExists);
        assert_eq!(e(ErrorCode::LeaseTtlTooLarge), Error::LeaseTtlTooLarge);
        assert_eq!(e(ErrorCode::LeaderChanged), Error::LeaderChanged);
        assert_eq!(e(ErrorCode::MemberNotFound), Error::MemberNotFound);
        assert_eq!(e(ErrorCode::PeerUrlExists), Error::PeerUrlExists);
        assert_eq!(e(ErrorCode::MemberNotLearner), Error::MemberNotLearner);
        assert_eq!(e(ErrorCode::LearnerNotReady), Error::LearnerNotReady);
        assert_eq!(
            e(ErrorCode::BadLeaderTransferee),
            Error::BadLeaderTransferee
        );
        assert_eq!(e(ErrorCode::OutcomeUnknown), Error::TimeoutLeaderFail);
        assert_eq!(e(ErrorCode::DuplicateRequest), Error::Timeout);
        assert_eq!(e(ErrorCode::InvalidSortOption), Error::InvalidSortOption);
        assert_eq!(e(ErrorCode::EmptyKey), Error::EmptyKey);
        assert_eq!(e(ErrorCode::DuplicateKey), Error::DuplicateKey);
        assert!(matches!(e(ErrorCode::StorageFailure), Error::Internal(_)));
    }
}
