//! What each request needs of its caller while auth is on (etcd's checks, per request kind).
//!
//! Reads are checked by the member serving them; writes when their entry is applied, against
//! the auth store at that point, so a permission revoked after a write was proposed refuses
//! it (`revision of auth store is old`).

use super::AuthError;
use super::perms::{Need, covers};
use super::state::AuthState;
use crate::command::Command;
use crate::mvcc::Leases;
use metastore_internal_proto::storage::AuthInfo;
use metastore_proto::etcdserverpb::request_op::Request;
use metastore_proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

/// etcd's key check: passes while auth is off; else the caller needs an identity checked at
/// the current auth revision, and root or a grant covering the keys.
pub fn keys(
    state: &AuthState,
    who: &AuthInfo,
    need: Need,
    key: &[u8],
    range_end: &[u8],
) -> Result<(), AuthError> {
    if !state.enabled {
        return Ok(());
    }
    if who.revision == 0 || who.user.is_empty() {
        return Err(AuthError::UserEmpty);
    }
    if who.revision < state.revision {
        return Err(AuthError::OldRevision);
    }
    let user = state.user(&who.user).ok_or(AuthError::PermissionDenied)?;
    if state.is_root(&who.user) || covers(state.permissions_of(user), need, key, range_end) {
        Ok(())
    } else {
        Err(AuthError::PermissionDenied)
    }
}

pub fn range(state: &AuthState, who: &AuthInfo, r: &RangeRequest) -> Result<(), AuthError> {
    keys(state, who, Need::Read, &r.key, &r.range_end)
}

fn put(
    state: &AuthState,
    who: &AuthInfo,
    r: &PutRequest,
    leases: Option<&Leases>,
) -> Result<(), AuthError> {
    keys(state, who, Need::Write, &r.key, &[])?;
    // Whoever attaches a key to a lease must be able to write every key already on it (they
    // could revoke it otherwise).
    if let Some(leases) = leases {
        lease_keys(state, who, r.lease, leases)?;
    }
    if r.prev_kv {
        keys(state, who, Need::Read, &r.key, &[])?;
    }
    Ok(())
}

fn delete_range(
    state: &AuthState,
    who: &AuthInfo,
    r: &DeleteRangeRequest,
) -> Result<(), AuthError> {
    keys(state, who, Need::Write, &r.key, &r.range_end)?;
    if r.prev_kv {
        keys(state, who, Need::Read, &r.key, &r.range_end)?;
    }
    Ok(())
}

/// A txn: every compare needs read; every op of both branches what it needs alone.
pub fn txn(
    state: &AuthState,
    who: &AuthInfo,
    t: &TxnRequest,
    leases: Option<&Leases>,
) -> Result<(), AuthError> {
    if !state.enabled {
        return Ok(());
    }
    for c in &t.compare {
        keys(state, who, Need::Read, &c.key, &c.range_end)?;
    }
    t.success
        .iter()
        .chain(&t.failure)
        .try_for_each(|op| request_op(state, who, op, leases))
}

fn request_op(
    state: &AuthState,
    who: &AuthInfo,
    op: &RequestOp,
    leases: Option<&Leases>,
) -> Result<(), AuthError> {
    match &op.request {
        Some(Request::RequestRange(r)) => range(state, who, r),
        Some(Request::RequestPut(r)) => put(state, who, r, leases),
        Some(Request::RequestDeleteRange(r)) => delete_range(state, who, r),
        Some(Request::RequestTxn(t)) => txn(state, who, t, leases),
        None => Ok(()),
    }
}

/// WRITE on every key attached to lease `id` (revoking it deletes them).
pub fn lease_keys(
    state: &AuthState,
    who: &AuthInfo,
    id: i64,
    leases: &Leases,
) -> Result<(), AuthError> {
    if !state.enabled || id == 0 {
        return Ok(());
    }
    match leases.get(id) {
        Some(lease) => lease
            .keys
            .iter()
            .try_for_each(|k| keys(state, who, Need::Write, k, &[])),
        None => Ok(()),
    }
}

/// READ on every key attached to lease `id` (LeaseTimeToLive listing its keys; etcd 3.4.26+).
pub fn lease_keys_readable(
    state: &AuthState,
    who: &AuthInfo,
    attached: &[Vec<u8>],
) -> Result<(), AuthError> {
    attached
        .iter()
        .try_for_each(|k| keys(state, who, Need::Read, k, &[]))
}

/// The check of a write when its entry is applied. `who` is `None` for the members' own
/// entries (lease expiry, checkpoints, publications), which are not checked.
pub fn command(
    state: &AuthState,
    who: Option<&AuthInfo>,
    cmd: &Command,
    leases: &Leases,
) -> Result<(), AuthError> {
    let Some(who) = who else { return Ok(()) };
    match cmd {
        Command::Put(r) => put(state, who, r, Some(leases)),
        Command::DeleteRange(r) => delete_range(state, who, r),
        Command::Txn(t) => txn(state, who, t, Some(leases)),
        Command::LeaseRevoke { id } => lease_keys(state, who, *id, leases),
        // Auth changes check their caller themselves; the rest need nothing (as etcd).
        _ => Ok(()),
    }
}
