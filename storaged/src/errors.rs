//! The one mapping from storaged's errors to the internal error codes gateways receive
//! (the gateway alone turns them into etcd's client-visible text).

use crate::auth::AuthError;
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
        MvccError::Auth(a) => auth_code(a),
        MvccError::Corrupt(_) | MvccError::Engine(_) => ErrorCode::StorageFailure,
    }
}

fn auth_code(e: &AuthError) -> ErrorCode {
    match e {
        AuthError::NotEnabled => ErrorCode::AuthNotEnabled,
        AuthError::AuthFailed => ErrorCode::AuthFailed,
        AuthError::NoPasswordUser => ErrorCode::NoPasswordUser,
        AuthError::InvalidToken => ErrorCode::InvalidAuthToken,
        AuthError::PermissionDenied => ErrorCode::PermissionDenied,
        AuthError::UserEmpty => ErrorCode::UserEmpty,
        AuthError::UserAlreadyExists => ErrorCode::UserAlreadyExists,
        AuthError::UserNotFound => ErrorCode::UserNotFound,
        AuthError::RoleEmpty => ErrorCode::RoleEmpty,
        AuthError::RoleAlreadyExists => ErrorCode::RoleAlreadyExists,
        AuthError::RoleNotFound => ErrorCode::RoleNotFound,
        AuthError::RootUserNotExist => ErrorCode::RootUserNotExist,
        AuthError::RootRoleNotExist => ErrorCode::RootRoleNotExist,
        AuthError::RoleNotGranted => ErrorCode::RoleNotGranted,
        AuthError::PermissionNotGranted => ErrorCode::PermissionNotGranted,
        AuthError::PermissionNotGiven => ErrorCode::PermissionNotGiven,
        AuthError::InvalidAuthMgmt => ErrorCode::InvalidAuthMgmt,
        AuthError::OldRevision => ErrorCode::AuthOldRevision,
        AuthError::Corrupt(_) => ErrorCode::StorageFailure,
    }
}

/// The status metadata key naming a domain error of a streaming call (the gateway reads it).
pub const STORAGE_ERROR_KEY: &str = "metastore-error-code";

/// A domain error of a call whose answer is a stream, as a status naming its code.
pub fn error_status(e: &NodeError) -> tonic::Status {
    let err = storage_error(e);
    let mut status = tonic::Status::unknown(err.detail);
    if let Ok(v) = err.code.to_string().parse() {
        status.metadata_mut().insert(STORAGE_ERROR_KEY, v);
    }
    status
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
