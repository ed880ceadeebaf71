//! The one mapping from storaged's errors to the internal error codes gateways receive
//! (the gateway alone turns them into etcd's client-visible text).

use crate::cluster::MembershipError;
use crate::mvcc::MvccError;
use crate::node::NodeError;
use metastore_internal_proto::storage::{ErrorCode, StorageError};
use metastore_request::Invalid;

pub fn storage_error(e: &NodeError) -> StorageError {
    let code = match e {
        NodeError::Mvcc(m) => mvcc_code(m),
        NodeError::Task(_) => ErrorCode::StorageFailure,
        NodeError::NotLeader(_) => ErrorCode::NoLeader,
        NodeError::Learner => ErrorCode::LearnerUnsupported,
        NodeError::Raft(_) => ErrorCode::LeaderChanged,
        NodeError::OutcomeUnknown(_) => ErrorCode::OutcomeUnknown,
    };
    StorageError {
        code: code as i32,
        detail: e.to_string(),
    }
}

fn mvcc_code(e: &MvccError) -> ErrorCode {
    match e {
        MvccError::Compacted => ErrorCode::Compacted,
        MvccError::FutureRev => ErrorCode::FutureRevision,
        MvccError::LeaseNotFound => ErrorCode::LeaseNotFound,
        MvccError::LeaseExists => ErrorCode::LeaseExists,
        MvccError::LeaseTtlTooLarge => ErrorCode::LeaseTtlTooLarge,
        MvccError::KeyNotFound => ErrorCode::KeyNotFound,
        MvccError::InvalidRequest(_) => ErrorCode::InvalidRequest,
        MvccError::Rejected(i) => match i {
            Invalid::EmptyKey => ErrorCode::EmptyKey,
            Invalid::ValueProvided => ErrorCode::ValueProvided,
            Invalid::LeaseProvided => ErrorCode::LeaseProvided,
            Invalid::TooManyOps => ErrorCode::TooManyOps,
            Invalid::DuplicateKey => ErrorCode::DuplicateKey,
            Invalid::InvalidSortOption => ErrorCode::InvalidSortOption,
            Invalid::RequestTooLarge => ErrorCode::RequestTooLarge,
            Invalid::EmptyOp => ErrorCode::KeyNotFound,
        },
        MvccError::Duplicate => ErrorCode::DuplicateRequest,
        MvccError::NoSpace => ErrorCode::NoSpace,
        MvccError::CorruptAlarm => ErrorCode::Corrupt,
        MvccError::WrongDowngradeVersionFormat => ErrorCode::WrongDowngradeVersionFormat,
        MvccError::InvalidDowngradeTargetVersion => ErrorCode::InvalidDowngradeTargetVersion,
        MvccError::DowngradeInProcess => ErrorCode::DowngradeInProcess,
        MvccError::NoInflightDowngrade => ErrorCode::NoInflightDowngrade,
        MvccError::Corrupt(_) | MvccError::Engine(_) => ErrorCode::StorageFailure,
    }
}

pub fn membership_error(e: &MembershipError) -> StorageError {
    let code = match e {
        MembershipError::Node(n) => return storage_error(n),
        MembershipError::NotFound => ErrorCode::MemberNotFound,
        MembershipError::PeerUrlExists => ErrorCode::PeerUrlExists,
        MembershipError::Exists => ErrorCode::MemberExists,
        MembershipError::NotLearner => ErrorCode::MemberNotLearner,
        MembershipError::TooManyLearners => ErrorCode::TooManyLearners,
        MembershipError::NotEnoughStarted => ErrorCode::NotEnoughStarted,
        MembershipError::Unhealthy => ErrorCode::UnhealthyCluster,
        MembershipError::LearnerNotReady => ErrorCode::LearnerNotReady,
        MembershipError::BadTransferee(_) => ErrorCode::BadLeaderTransferee,
        MembershipError::TransferTimeout => ErrorCode::Timeout,
        MembershipError::Stopped(_) => ErrorCode::StorageFailure,
    };
    StorageError {
        code: code as i32,
        detail: e.to_string(),
    }
}
