//! The gateway's one error type and its one mapping to gRPC. Every client-visible text lives
//! here: etcd's errors byte for byte as etcd sends them (clients match errors by that text),
//! the watch cancel reasons, and MetaStore's own few texts. Internal details (a storage
//! failure, an unreachable member) are logged, never shown: the client gets a fixed text.

use metastore_internal_proto::storage::{ErrorCode, StorageError};
use std::borrow::Cow;
use std::fmt;
use tonic::{Code, Status};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    EmptyKey,
    KeyNotFound,
    ValueProvided,
    LeaseProvided,
    TooManyOps,
    DuplicateKey,
    InvalidSortOption,
    RequestTooLarge,
    Compacted,
    FutureRev,
    LeaseNotFound,
    LeaseExists,
    LeaseTtlTooLarge,
    NoLeader,
    NotLeader,
    Timeout,
    /// A write whose outcome is unknown after a leader change (it may still be applied).
    TimeoutLeaderFail,
    LeaderChanged,
    /// Over the gateway's request rate limit (`--rate-limit-*`): MetaStore's use of etcd's
    /// text, with the gRPC code for it (etcd's own, for its apply backlog, goes out as Unknown).
    TooManyRequests,
    /// The gateway is stopping (SIGTERM or SIGINT): streams end with this so clients go on
    /// elsewhere.
    Stopped,
    MemberExists,
    PeerUrlExists,
    MemberBadUrls,
    MemberNotFound,
    MemberNotLearner,
    LearnerNotReady,
    TooManyLearners,
    BadLeaderTransferee,
    LearnerUnsupported,
    NotEnoughStarted,
    Unhealthy,
    /// A NOSPACE alarm is active and the request would add data.
    NoSpace,
    /// A CORRUPT alarm is active.
    CorruptCluster,
    WrongDowngradeVersionFormat,
    InvalidDowngradeTargetVersion,
    DowngradeInProcess,
    NoInflightDowngrade,
    /// Proclaim by a candidate whose key is gone or was created anew.
    ElectionNotLeader,
    /// Leader asked of an election nobody campaigns in.
    ElectionNoLeader,
    /// Proclaim or Resign without a `leader`.
    LeaderFieldMissing,
    /// A Lock whose owner key went away (its lease ended) while it waited.
    LockSessionExpired,
    AuthNotEnabled,
    AuthFailed,
    /// Authenticate with a password for a user added with `no_password` (unmapped in etcd).
    NoPasswordUser,
    InvalidAuthToken,
    PermissionDenied,
    UserEmpty,
    UserAlreadyExists,
    UserNotFound,
    RoleEmpty,
    RoleAlreadyExists,
    RoleNotFound,
    RootUserNotExist,
    RootRoleNotExist,
    RoleNotGranted,
    PermissionNotGranted,
    PermissionNotGiven,
    InvalidAuthMgmt,
    AuthOldRevision,
    /// An admin check of Maintenance that failed: etcd 3.4 sends the auth layer's raw text
    /// with code Unknown there.
    MaintenanceAuth(&'static str),
    /// An etcd RPC or option MetaStore does not implement yet (what is not supported).
    Unsupported(&'static str),
    /// No storage member could be reached; the detail is logged, not sent.
    Unavailable(String),
    /// A bug, a broken invariant or a storage failure; the detail is logged, not sent.
    Internal(String),
}

/// The fixed text sent for [`Error::Unavailable`]. etcd sends a gRPC Unavailable status when
/// it cannot serve; the text carries no detail.
const UNAVAILABLE_TEXT: &str = "metastore: storage unavailable";
/// The fixed text sent for [`Error::Internal`]. etcd 3.4 sends code Unknown with its error's
/// text for errors outside its table; ours stays fixed so no internal detail leaks.
const INTERNAL_TEXT: &str = "metastore: internal error";

impl Error {
    /// The table: the gRPC code and the exact text the client gets for each error.
    fn etcd(&self) -> (Code, Cow<'static, str>) {
        let (code, text) = match self {
            Error::EmptyKey => (Code::InvalidArgument, "etcdserver: key is not provided"),
            Error::KeyNotFound => (Code::InvalidArgument, "etcdserver: key not found"),
            Error::ValueProvided => (Code::InvalidArgument, "etcdserver: value is provided"),
            Error::LeaseProvided => (Code::InvalidArgument, "etcdserver: lease is provided"),
            Error::TooManyOps => (
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            Error::DuplicateKey => (
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            Error::InvalidSortOption => (Code::InvalidArgument, "etcdserver: invalid sort option"),
            Error::RequestTooLarge => (Code::InvalidArgument, "etcdserver: request is too large"),
            Error::Compacted => (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            Error::FutureRev => (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            Error::LeaseNotFound => (Code::NotFound, "etcdserver: requested lease not found"),
            Error::LeaseExists => (Code::FailedPrecondition, "etcdserver: lease already exists"),
            Error::LeaseTtlTooLarge => (Code::OutOfRange, "etcdserver: too large lease TTL"),
            Error::NoLeader => (Code::Unavailable, "etcdserver: no leader"),
            Error::NotLeader => (Code::FailedPrecondition, "etcdserver: not leader"),
            Error::Timeout => (Code::Unavailable, "etcdserver: request timed out"),
            Error::TimeoutLeaderFail => (
                Code::Unavailable,
                "etcdserver: request timed out, possibly due to previous leader failure",
            ),
            Error::LeaderChanged => (Code::Unavailable, "etcdserver: leader changed"),
            Error::Stopped => (Code::Unavailable, "etcdserver: server stopped"),
            Error::TooManyRequests => (Code::ResourceExhausted, "etcdserver: too many requests"),
            Error::MemberExists => (
                Code::FailedPrecondition,
                "etcdserver: member ID already exist",
            ),
            Error::PeerUrlExists => (
                Code::FailedPrecondition,
                "etcdserver: Peer URLs already exists",
            ),
            Error::MemberBadUrls => (
                Code::InvalidArgument,
                "etcdserver: given member URLs are invalid",
            ),
            Error::MemberNotFound => (Code::NotFound, "etcdserver: member not found"),
            Error::MemberNotLearner => (
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member",
            ),
            Error::LearnerNotReady => (
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            Error::TooManyLearners => (
                Code::FailedPrecondition,
                "etcdserver: too many learner members in cluster",
            ),
            Error::BadLeaderTransferee => (
                Code::FailedPrecondition,
                "etcdserver: bad leader transferee",
            ),
            Error::LearnerUnsupported => (
                Code::Unavailable,
                "etcdserver: rpc not supported for learner",
            ),
            Error::NotEnoughStarted => (
                Code::FailedPrecondition,
                "etcdserver: re-configuration failed due to not enough started members",
            ),
            Error::Unhealthy => (Code::Unavailable, "etcdserver: unhealthy cluster"),
            // Outside etcd's table: sent as code Unknown with the raw text, as etcd does.
            Error::NoSpace => (
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            Error::CorruptCluster => (Code::DataLoss, "etcdserver: corrupt cluster"),
            Error::WrongDowngradeVersionFormat => (
                Code::InvalidArgument,
                "etcdserver: wrong downgrade target version format",
            ),
            Error::InvalidDowngradeTargetVersion => (
                Code::InvalidArgument,
                "etcdserver: invalid downgrade target version",
            ),
            Error::DowngradeInProcess => (
                Code::FailedPrecondition,
                "etcdserver: cluster has a downgrade job in progress",
            ),
            Error::NoInflightDowngrade => (
                Code::FailedPrecondition,
                "etcdserver: no inflight downgrade job",
            ),
            Error::ElectionNotLeader => (Code::Unknown, "election: not leader"),
            Error::ElectionNoLeader => (Code::Unknown, "election: no leader"),
            Error::LeaderFieldMissing => (Code::Unknown, "\"leader\" field must be provided"),
            Error::LockSessionExpired => (Code::Unknown, "mutex: session is expired"),
            Error::AuthNotEnabled => (
                Code::FailedPrecondition,
                "etcdserver: authentication is not enabled",
            ),
            Error::AuthFailed => (
                Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password",
            ),
            Error::NoPasswordUser => (
                Code::Unknown,
                "auth: authentication failed, password was given for no password user",
            ),
            Error::InvalidAuthToken => (Code::Unauthenticated, "etcdserver: invalid auth token"),
            Error::PermissionDenied => (Code::PermissionDenied, "etcdserver: permission denied"),
            Error::UserEmpty => (Code::InvalidArgument, "etcdserver: user name is empty"),
            Error::UserAlreadyExists => (
                Code::FailedPrecondition,
                "etcdserver: user name already exists",
            ),
            Error::UserNotFound => (Code::FailedPrecondition, "etcdserver: user name not found"),
            Error::RoleEmpty => (Code::InvalidArgument, "etcdserver: role name is empty"),
            Error::RoleAlreadyExists => (
                Code::FailedPrecondition,
                "etcdserver: role name already exists",
            ),
            Error::RoleNotFound => (Code::FailedPrecondition, "etcdserver: role name not found"),
            Error::RootUserNotExist => (
                Code::FailedPrecondition,
                "etcdserver: root user does not exist",
            ),
            Error::RootRoleNotExist => (
                Code::FailedPrecondition,
                "etcdserver: root user does not have root role",
            ),
            Error::RoleNotGranted => (
                Code::FailedPrecondition,
                "etcdserver: role is not granted to the user",
            ),
            Error::PermissionNotGranted => (
                Code::FailedPrecondition,
                "etcdserver: permission is not granted to the role",
            ),
            Error::PermissionNotGiven => {
                (Code::InvalidArgument, "etcdserver: permission not given")
            }
            Error::InvalidAuthMgmt => {
                (Code::InvalidArgument, "etcdserver: invalid auth management")
            }
            Error::AuthOldRevision => (
                Code::InvalidArgument,
                "etcdserver: revision of auth store is old",
            ),
            Error::MaintenanceAuth(text) => (Code::Unknown, *text),
            Error::Unsupported(what) => {
                let text = format!("metastore: {what} is not supported yet");
                return (Code::Unimplemented, text.into());
            }
            Error::Unavailable(_) => (Code::Unavailable, UNAVAILABLE_TEXT),
            Error::Internal(_) => (Code::Unknown, INTERNAL_TEXT),
        };
        (code, text.into())
    }

    pub fn code(&self) -> Code {
        self.etcd().0
    }

    /// The text the client gets (no internal detail).
    pub fn client_text(&self) -> Cow<'static, str> {
        self.etcd().1
    }

    /// Logs what the client is not told.
    fn log_detail(&self) {
        match self {
            Error::Internal(detail) => {
                tracing::warn!(%detail, "internal error answered to a client")
            }
            Error::Unavailable(detail) => tracing::info!(%detail, "storage unavailable"),
            _ => {}
        }
    }

    /// The status the client gets; internal detail goes to the log.
    pub fn to_status(&self) -> Status {
        self.log_detail();
        Status::new(self.code(), self.client_text())
    }

    /// The status etcd's Lock and Election services send: they call KV through etcd's own
    /// client, which keeps an etcd error's text but not its code (the client sees Unknown);
    /// storage that cannot be reached keeps its code.
    pub fn to_status_via_client(&self) -> Status {
        self.log_detail();
        let code = match self {
            Error::Unavailable(_) => self.code(),
            _ => Code::Unknown,
        };
        Status::new(code, self.client_text())
    }

    /// As etcd 3.4's Maintenance service reports a failed admin check: the auth layer's raw
    /// text, code Unknown. Other errors are unchanged.
    pub fn in_maintenance(self) -> Self {
        match self {
            Error::PermissionDenied => Error::MaintenanceAuth("auth: permission denied"),
            Error::UserEmpty => Error::MaintenanceAuth("auth: user name is empty"),
            Error::UserNotFound => Error::MaintenanceAuth("auth: user not found"),
            Error::InvalidAuthToken => Error::MaintenanceAuth("auth: invalid auth token"),
            other => other,
        }
    }

    /// Whether a watch refused for this error names it as a full gRPC status text (etcd's
    /// auth refusals, which the Go client matches to refresh its token).
    fn is_auth(&self) -> bool {
        matches!(
            self,
            Error::PermissionDenied
                | Error::UserEmpty
                | Error::InvalidAuthToken
                | Error::AuthOldRevision
        )
    }

    /// The table from storaged's codes to etcd's errors; `detail` is kept only where it is
    /// logged.
    fn from_code(code: ErrorCode, detail: String) -> Self {
        match code {
            ErrorCode::Compacted => Error::Compacted,
            ErrorCode::FutureRevision => Error::FutureRev,
            ErrorCode::LeaseNotFound => Error::LeaseNotFound,
            ErrorCode::LeaseExists => Error::LeaseExists,
            ErrorCode::LeaseTtlTooLarge => Error::LeaseTtlTooLarge,
            ErrorCode::KeyNotFound => Error::KeyNotFound,
            ErrorCode::NotLeader => Error::NotLeader,
            ErrorCode::NoLeader => Error::NoLeader,
            ErrorCode::LeaderChanged => Error::LeaderChanged,
            ErrorCode::Timeout => Error::Timeout,
            ErrorCode::MemberExists => Error::MemberExists,
            ErrorCode::MemberNotFound => Error::MemberNotFound,
            ErrorCode::PeerUrlExists => Error::PeerUrlExists,
            ErrorCode::LearnerNotReady => Error::LearnerNotReady,
            ErrorCode::TooManyLearners => Error::TooManyLearners,
            ErrorCode::MemberNotLearner => Error::MemberNotLearner,
            ErrorCode::BadLeaderTransferee => Error::BadLeaderTransferee,
            ErrorCode::LearnerUnsupported => Error::LearnerUnsupported,
            ErrorCode::NotEnoughStarted => Error::NotEnoughStarted,
            ErrorCode::UnhealthyCluster => Error::Unhealthy,
            ErrorCode::EmptyKey => Error::EmptyKey,
            ErrorCode::ValueProvided => Error::ValueProvided,
            ErrorCode::LeaseProvided => Error::LeaseProvided,
            ErrorCode::TooManyOps => Error::TooManyOps,
            ErrorCode::DuplicateKey => Error::DuplicateKey,
            ErrorCode::InvalidSortOption => Error::InvalidSortOption,
            ErrorCode::RequestTooLarge => Error::RequestTooLarge,
            ErrorCode::OutcomeUnknown => Error::TimeoutLeaderFail,
            ErrorCode::NoSpace => Error::NoSpace,
            ErrorCode::Corrupt => Error::CorruptCluster,
            ErrorCode::WrongDowngradeVersionFormat => Error::WrongDowngradeVersionFormat,
            ErrorCode::InvalidDowngradeTargetVersion => Error::InvalidDowngradeTargetVersion,
            ErrorCode::DowngradeInProcess => Error::DowngradeInProcess,
            ErrorCode::NoInflightDowngrade => Error::NoInflightDowngrade,
            ErrorCode::AuthNotEnabled => Error::AuthNotEnabled,
            ErrorCode::AuthFailed => Error::AuthFailed,
            ErrorCode::InvalidAuthToken => Error::InvalidAuthToken,
            ErrorCode::PermissionDenied => Error::PermissionDenied,
            ErrorCode::UserEmpty => Error::UserEmpty,
            ErrorCode::UserAlreadyExists => Error::UserAlreadyExists,
            ErrorCode::UserNotFound => Error::UserNotFound,
            ErrorCode::RoleEmpty => Error::RoleEmpty,
            ErrorCode::RoleAlreadyExists => Error::RoleAlreadyExists,
            ErrorCode::RoleNotFound => Error::RoleNotFound,
            ErrorCode::RootUserNotExist => Error::RootUserNotExist,
            ErrorCode::RootRoleNotExist => Error::RootRoleNotExist,
            ErrorCode::RoleNotGranted => Error::RoleNotGranted,
            ErrorCode::PermissionNotGranted => Error::PermissionNotGranted,
            ErrorCode::InvalidAuthMgmt => Error::InvalidAuthMgmt,
            ErrorCode::AuthOldRevision => Error::AuthOldRevision,
            ErrorCode::PermissionNotGiven => Error::PermissionNotGiven,
            ErrorCode::NoPasswordUser => Error::NoPasswordUser,
            // Applied by an earlier attempt whose answer was lost: as unknown to the client.
            ErrorCode::DuplicateRequest => Error::Timeout,
            // A request the gateway's own checks should have refused, a storage failure, or a
            // reply without a code: a bug or a broken disk, not something the client did.
            ErrorCode::InvalidRequest | ErrorCode::StorageFailure | ErrorCode::Unspecified => {
                Error::Internal(format!("storage error {}: {detail}", code.as_str_name()))
            }
        }
    }
}

impl fmt::Display for Error {
    /// The client's text, plus the internal detail (for logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unavailable(detail) | Error::Internal(detail) => {
                write!(f, "{}: {detail}", self.client_text())
            }
            _ => f.write_str(&self.client_text()),
        }
    }
}

impl std::error::Error for Error {}

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
            Ok(code) => Error::from_code(code, e.detail),
            // A code from a newer storaged that this gateway does not know yet.
            Err(_) => Error::Internal(format!(
                "unknown storage error code {}: {}",
                e.code, e.detail
            )),
        }
    }
}

/// The status metadata key under which storaged names a domain error of a streaming call
/// (whose answer cannot carry a `StorageError`).
pub const STORAGE_ERROR_KEY: &str = "metastore-error-code";

/// Maps a failed call to storaged (transport or status) to a client error.
pub fn from_upstream(status: &Status) -> Error {
    let named = status
        .metadata()
        .get(STORAGE_ERROR_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    if let Some(code) = named {
        return StorageError {
            code,
            detail: status.message().to_string(),
        }
        .into();
    }
    let detail = || format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::DeadlineExceeded | Code::Cancelled => Error::Timeout,
        Code::Unavailable => Error::Unavailable(detail()),
        _ => Error::Internal(detail()),
    }
}

/// Why a watch create request is refused (the `cancel_reason` of its reply).
#[derive(Debug)]
pub enum WatchRefusal {
    DuplicateId,
    EmptyRange,
    StreamLimit(usize),
    GatewayLimit(usize),
    /// The upstream watch could not be opened.
    Failed(Error),
}

impl WatchRefusal {
    /// The cancel reason the client gets.
    pub fn reason(&self) -> String {
        match self {
            WatchRefusal::DuplicateId => {
                "mvcc: duplicate watch ID provided on the WatchStream".into()
            }
            WatchRefusal::EmptyRange => "mvcc: watcher range is empty".into(),
            WatchRefusal::StreamLimit(limit) => {
                format!("metastore: too many watchers on this stream (limit {limit})")
            }
            WatchRefusal::GatewayLimit(limit) => {
                format!("metastore: too many watchers on this gateway (limit {limit})")
            }
            WatchRefusal::Failed(e) if e.is_auth() => {
                format!(
                    "rpc error: code = {:?} desc = {}",
                    e.code(),
                    e.client_text()
                )
            }
            WatchRefusal::Failed(e) => {
                e.log_detail();
                e.client_text().into_owned()
            }
        }
    }
}

/// The HTTP status etcd's JSON gateway answers for a gRPC code (grpc-gateway's mapping, as in
/// etcd 3.4's release builds, 3.5 and 3.6; FailedPrecondition is 400 there).
pub fn http_status_of(code: Code) -> http::StatusCode {
    use http::StatusCode as S;
    match code {
        Code::Ok => S::OK,
        Code::Cancelled => S::REQUEST_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => S::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => S::BAD_REQUEST,
        Code::DeadlineExceeded => S::GATEWAY_TIMEOUT,
        Code::NotFound => S::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => S::CONFLICT,
        Code::PermissionDenied => S::FORBIDDEN,
        Code::ResourceExhausted => S::TOO_MANY_REQUESTS,
        Code::Unimplemented => S::NOT_IMPLEMENTED,
        Code::Unavailable => S::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => S::UNAUTHORIZED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per `Error` variant: a value, the code and the exact text the client gets.
    /// `variant` has no wildcard, so a variant without a row does not compile.
    macro_rules! error_table {
        ($($name:ident $(($($arg:expr),*))? => $code:ident, $text:expr;)*) => {
            fn variant(e: &Error) -> &'static str {
                match e {
                    $(Error::$name { .. } => stringify!($name),)*
                }
            }
            fn rows() -> Vec<(&'static str, Error, Code, &'static str)> {
                vec![$((stringify!($name), Error::$name $(($($arg),*))?, Code::$code, $text)),*]
            }
        };
    }

    const DETAIL: &str = "disk on fire at /var/lib/metastore";

    error_table! {
        EmptyKey => InvalidArgument, "etcdserver: key is not provided";
        KeyNotFound => InvalidArgument, "etcdserver: key not found";
        ValueProvided => InvalidArgument, "etcdserver: value is provided";
        LeaseProvided => InvalidArgument, "etcdserver: lease is provided";
        TooManyOps => InvalidArgument, "etcdserver: too many operations in txn request";
        DuplicateKey => InvalidArgument, "etcdserver: duplicate key given in txn request";
        InvalidSortOption => InvalidArgument, "etcdserver: invalid sort option";
        RequestTooLarge => InvalidArgument, "etcdserver: request is too large";
        Compacted => OutOfRange, "etcdserver: mvcc: required revision has been compacted";
        FutureRev => OutOfRange, "etcdserver: mvcc: required revision is a future revision";
        LeaseNotFound => NotFound, "etcdserver: requested lease not found";
        LeaseExists => FailedPrecondition, "etcdserver: lease already exists";
        LeaseTtlTooLarge => OutOfRange, "etcdserver: too large lease TTL";
        NoLeader => Unavailable, "etcdserver: no leader";
        NotLeader => FailedPrecondition, "etcdserver: not leader";
        Timeout => Unavailable, "etcdserver: request timed out";
        TimeoutLeaderFail => Unavailable,
            "etcdserver: request timed out, possibly due to previous leader failure";
        LeaderChanged => Unavailable, "etcdserver: leader changed";
        Stopped => Unavailable, "etcdserver: server stopped";
        TooManyRequests => ResourceExhausted, "etcdserver: too many requests";
        MemberExists => FailedPrecondition, "etcdserver: member ID already exist";
        PeerUrlExists => FailedPrecondition, "etcdserver: Peer URLs already exists";
        MemberBadUrls => InvalidArgument, "etcdserver: given member URLs are invalid";
        MemberNotFound => NotFound, "etcdserver: member not found";
        MemberNotLearner => FailedPrecondition, "etcdserver: can only promote a learner member";
        LearnerNotReady => FailedPrecondition,
            "etcdserver: can only promote a learner member which is in sync with leader";
        TooManyLearners => FailedPrecondition, "etcdserver: too many learner members in cluster";
        BadLeaderTransferee => FailedPrecondition, "etcdserver: bad leader transferee";
        LearnerUnsupported => Unavailable, "etcdserver: rpc not supported for learner";
        NotEnoughStarted => FailedPrecondition,
            "etcdserver: re-configuration failed due to not enough started members";
        Unhealthy => Unavailable, "etcdserver: unhealthy cluster";
        NoSpace => ResourceExhausted, "etcdserver: mvcc: database space exceeded";
        CorruptCluster => DataLoss, "etcdserver: corrupt cluster";
        WrongDowngradeVersionFormat => InvalidArgument,
            "etcdserver: wrong downgrade target version format";
        InvalidDowngradeTargetVersion => InvalidArgument,
            "etcdserver: invalid downgrade target version";
        DowngradeInProcess => FailedPrecondition,
            "etcdserver: cluster has a downgrade job in progress";
        NoInflightDowngrade => FailedPrecondition, "etcdserver: no inflight downgrade job";
        ElectionNotLeader => Unknown, "election: not leader";
        ElectionNoLeader => Unknown, "election: no leader";
        LeaderFieldMissing => Unknown, "\"leader\" field must be provided";
        LockSessionExpired => Unknown, "mutex: session is expired";
        AuthNotEnabled => FailedPrecondition, "etcdserver: authentication is not enabled";
        AuthFailed => InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password";
        NoPasswordUser => Unknown,
            "auth: authentication failed, password was given for no password user";
        InvalidAuthToken => Unauthenticated, "etcdserver: invalid auth token";
        PermissionDenied => PermissionDenied, "etcdserver: permission denied";
        UserEmpty => InvalidArgument, "etcdserver: user name is empty";
        UserAlreadyExists => FailedPrecondition, "etcdserver: user name already exists";
        UserNotFound => FailedPrecondition, "etcdserver: user name not found";
        RoleEmpty => InvalidArgument, "etcdserver: role name is empty";
        RoleAlreadyExists => FailedPrecondition, "etcdserver: role name already exists";
        RoleNotFound => FailedPrecondition, "etcdserver: role name not found";
        RootUserNotExist => FailedPrecondition, "etcdserver: root user does not exist";
        RootRoleNotExist => FailedPrecondition, "etcdserver: root user does not have root role";
        RoleNotGranted => FailedPrecondition, "etcdserver: role is not granted to the user";
        PermissionNotGranted => FailedPrecondition,
            "etcdserver: permission is not granted to the role";
        PermissionNotGiven => InvalidArgument, "etcdserver: permission not given";
        InvalidAuthMgmt => InvalidArgument, "etcdserver: invalid auth management";
        AuthOldRevision => InvalidArgument, "etcdserver: revision of auth store is old";
        MaintenanceAuth("auth: permission denied") => Unknown, "auth: permission denied";
        Unsupported("auth") => Unimplemented, "metastore: auth is not supported yet";
        Unavailable(DETAIL.into()) => Unavailable, "metastore: storage unavailable";
        Internal(DETAIL.into()) => Unknown, "metastore: internal error";
    }

    /// Every error variant, with the exact code and text the client gets; no detail leaks.
    #[test]
    fn every_error_variant_has_its_code_and_text() {
        for (name, err, code, text) in rows() {
            assert_eq!(variant(&err), name);
            let status = err.to_status();
            assert_eq!(status.code(), code, "{name}");
            assert_eq!(status.message(), text, "{name}");
            assert!(!status.message().contains("disk on fire"), "{name}");
        }
    }

    /// What each storaged code becomes; `None` for the codes that are internal errors.
    /// No wildcard: a new code without a row here does not compile.
    fn expected(code: ErrorCode) -> Option<Error> {
        Some(match code {
            ErrorCode::Compacted => Error::Compacted,
            ErrorCode::FutureRevision => Error::FutureRev,
            ErrorCode::LeaseNotFound => Error::LeaseNotFound,
            ErrorCode::KeyNotFound => Error::KeyNotFound,
            ErrorCode::NotLeader => Error::NotLeader,
            ErrorCode::NoLeader => Error::NoLeader,
            ErrorCode::LeaseExists => Error::LeaseExists,
            ErrorCode::LeaseTtlTooLarge => Error::LeaseTtlTooLarge,
            ErrorCode::MemberExists => Error::MemberExists,
            ErrorCode::MemberNotFound => Error::MemberNotFound,
            ErrorCode::PeerUrlExists => Error::PeerUrlExists,
            ErrorCode::LearnerNotReady => Error::LearnerNotReady,
            ErrorCode::TooManyLearners => Error::TooManyLearners,
            ErrorCode::MemberNotLearner => Error::MemberNotLearner,
            ErrorCode::UnhealthyCluster => Error::Unhealthy,
            ErrorCode::LeaderChanged => Error::LeaderChanged,
            ErrorCode::Timeout => Error::Timeout,
            ErrorCode::BadLeaderTransferee => Error::BadLeaderTransferee,
            ErrorCode::LearnerUnsupported => Error::LearnerUnsupported,
            ErrorCode::NotEnoughStarted => Error::NotEnoughStarted,
            ErrorCode::EmptyKey => Error::EmptyKey,
            ErrorCode::ValueProvided => Error::ValueProvided,
            ErrorCode::LeaseProvided => Error::LeaseProvided,
            ErrorCode::TooManyOps => Error::TooManyOps,
            ErrorCode::DuplicateKey => Error::DuplicateKey,
            ErrorCode::InvalidSortOption => Error::InvalidSortOption,
            ErrorCode::RequestTooLarge => Error::RequestTooLarge,
            ErrorCode::OutcomeUnknown => Error::TimeoutLeaderFail,
            ErrorCode::DuplicateRequest => Error::Timeout,
            ErrorCode::NoSpace => Error::NoSpace,
            ErrorCode::Corrupt => Error::CorruptCluster,
            ErrorCode::WrongDowngradeVersionFormat => Error::WrongDowngradeVersionFormat,
            ErrorCode::InvalidDowngradeTargetVersion => Error::InvalidDowngradeTargetVersion,
            ErrorCode::DowngradeInProcess => Error::DowngradeInProcess,
            ErrorCode::NoInflightDowngrade => Error::NoInflightDowngrade,
            ErrorCode::AuthNotEnabled => Error::AuthNotEnabled,
            ErrorCode::AuthFailed => Error::AuthFailed,
            ErrorCode::InvalidAuthToken => Error::InvalidAuthToken,
            ErrorCode::PermissionDenied => Error::PermissionDenied,
            ErrorCode::UserEmpty => Error::UserEmpty,
            ErrorCode::UserAlreadyExists => Error::UserAlreadyExists,
            ErrorCode::UserNotFound => Error::UserNotFound,
            ErrorCode::RoleEmpty => Error::RoleEmpty,
            ErrorCode::RoleAlreadyExists => Error::RoleAlreadyExists,
            ErrorCode::RoleNotFound => Error::RoleNotFound,
            ErrorCode::RootUserNotExist => Error::RootUserNotExist,
            ErrorCode::RootRoleNotExist => Error::RootRoleNotExist,
            ErrorCode::RoleNotGranted => Error::RoleNotGranted,
            ErrorCode::PermissionNotGranted => Error::PermissionNotGranted,
            ErrorCode::InvalidAuthMgmt => Error::InvalidAuthMgmt,
            ErrorCode::AuthOldRevision => Error::AuthOldRevision,
            ErrorCode::PermissionNotGiven => Error::PermissionNotGiven,
            ErrorCode::NoPasswordUser => Error::NoPasswordUser,
            ErrorCode::Unspecified | ErrorCode::InvalidRequest | ErrorCode::StorageFailure => {
                return None;
            }
        })
    }

    /// Walks every numeric value prost knows as an `ErrorCode` (and some it does not).
    #[test]
    fn every_storage_code_maps_to_its_etcd_error() {
        let mut walked = 0;
        for n in 0..1024 {
            let got = Error::from(StorageError {
                code: n,
                detail: DETAIL.into(),
            });
            match ErrorCode::try_from(n).ok().map(expected) {
                Some(Some(want)) => {
                    walked += 1;
                    assert_eq!(got, want, "code {n}");
                }
                // Internal, or unknown to this gateway (a newer storaged): a fixed text.
                Some(None) | None => {
                    walked += usize::from(ErrorCode::try_from(n).is_ok());
                    assert!(
                        matches!(&got, Error::Internal(d) if d.contains(DETAIL)),
                        "{n}"
                    );
                    assert_eq!(got.to_status().message(), "metastore: internal error");
                }
            }
        }
        // Every named code was seen (the values are dense from 0).
        assert_eq!(walked, ErrorCode::NoPasswordUser as usize + 1);
    }

    /// Lock and Election answers: every etcd error keeps its text and is sent as Unknown;
    /// storage that cannot be reached stays Unavailable.
    #[test]
    fn lock_and_election_errors_come_as_from_etcds_client() {
        for (name, err, _, text) in rows() {
            let status = err.to_status_via_client();
            let code = match err {
                Error::Unavailable(_) => Code::Unavailable,
                _ => Code::Unknown,
            };
            assert_eq!(status.code(), code, "{name}");
            assert_eq!(status.message(), text, "{name}");
        }
    }

    /// Maintenance admin refusals carry etcd 3.4's raw auth text; a refused watch names an
    /// auth error as the full gRPC status text the Go client matches.
    #[test]
    fn auth_refusals_in_maintenance_and_watch() {
        assert_eq!(
            Error::PermissionDenied
                .in_maintenance()
                .to_status()
                .message(),
            "auth: permission denied"
        );
        assert_eq!(Error::UserEmpty.in_maintenance().code(), Code::Unknown);
        assert_eq!(Error::Compacted.in_maintenance(), Error::Compacted);
        assert_eq!(
            WatchRefusal::Failed(Error::InvalidAuthToken).reason(),
            "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"
        );
        assert_eq!(
            WatchRefusal::Failed(Error::AuthOldRevision).reason(),
            "rpc error: code = InvalidArgument desc = etcdserver: revision of auth store is old"
        );
        assert_eq!(
            WatchRefusal::Failed(Error::PermissionDenied).reason(),
            "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
        );
        // A streaming call's error named in the status metadata keeps its kind.
        let mut status = Status::unknown("refused");
        status.metadata_mut().insert(
            STORAGE_ERROR_KEY,
            (ErrorCode::PermissionDenied as i32)
                .to_string()
                .parse()
                .expect("ascii"),
        );
        assert_eq!(from_upstream(&status), Error::PermissionDenied);
    }

    #[test]
    fn upstream_failures_hide_their_detail() {
        let e = from_upstream(&Status::unavailable(DETAIL));
        assert!(matches!(&e, Error::Unavailable(d) if d.contains(DETAIL)));
        assert_eq!(e.to_status().message(), "metastore: storage unavailable");
        let e = from_upstream(&Status::internal(DETAIL));
        assert_eq!(e.to_status().code(), Code::Unknown);
        assert_eq!(e.to_status().message(), "metastore: internal error");
        assert_eq!(
            from_upstream(&Status::deadline_exceeded(DETAIL)),
            Error::Timeout
        );
    }

    #[test]
    fn watch_refusals_have_etcd_reasons() {
        let cases = [
            (
                WatchRefusal::DuplicateId,
                "mvcc: duplicate watch ID provided on the WatchStream",
            ),
            (WatchRefusal::EmptyRange, "mvcc: watcher range is empty"),
            (
                WatchRefusal::StreamLimit(3),
                "metastore: too many watchers on this stream (limit 3)",
            ),
            (
                WatchRefusal::GatewayLimit(4),
                "metastore: too many watchers on this gateway (limit 4)",
            ),
            (
                WatchRefusal::Failed(Error::Compacted),
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                WatchRefusal::Failed(Error::Internal(DETAIL.into())),
                "metastore: internal error",
            ),
        ];
        for (refusal, reason) in cases {
            assert_eq!(refusal.reason(), reason, "{refusal:?}");
        }
    }
}
