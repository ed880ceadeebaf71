//! etcd's Auth service on a member: changes become log entries (passwords hashed before
//! they are proposed), reads are answered from the auth store after a read index, and
//! Authenticate checks the password here and makes the token through raft.

use super::StorageService;
use crate::auth::AuthApplied;
use crate::auth::AuthError;
use crate::auth::state::AuthState;
use crate::auth::tokens::random_prefix;
use crate::command::{Command, Proposal};
use crate::mvcc::MvccError;
use crate::node::NodeError;
use crate::state_machine::Applied;
use metastore_internal_proto::storage::auth_change::Change;
use metastore_internal_proto::storage::auth_request::Op;
use metastore_internal_proto::storage::auth_response::Result as AuthResult;
use metastore_internal_proto::storage::{AuthInfo, RequestContext, TokenGrant};
use metastore_proto::etcdserverpb as pb;

/// How often Authenticate checks a password again when the auth store changed meanwhile.
const AUTHENTICATE_ATTEMPTS: usize = 3;

fn auth_err(e: AuthError) -> NodeError {
    NodeError::Mvcc(MvccError::Auth(e))
}

/// A bcrypt hash of `password` (off the async runtime: it is slow on purpose).
async fn hash(password: String, cost: u32) -> Result<String, NodeError> {
    tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
        .await
        .map_err(|e| NodeError::Task(e.to_string()))?
        .map_err(|e| NodeError::Task(format!("hashing a password: {e}")))
}

impl StorageService {
    /// Runs one Auth RPC on this member (changes fail with not-leader on a follower).
    pub(super) async fn auth_op(
        &self,
        op: Op,
        ctx: &RequestContext,
    ) -> Result<AuthResult, NodeError> {
        if let Op::Authenticate(r) = op {
            return self.authenticate(r).await.map(AuthResult::Authenticate);
        }
        let who = self.node.identify(ctx).await?;
        let cost = self.node.auth().options().bcrypt_cost;
        let change = match op {
            Op::Enable(r) => Change::Enable(r),
            Op::Disable(r) => Change::Disable(r),
            Op::UserAdd(mut r) => {
                let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
                let password = std::mem::take(&mut r.password);
                r.hashed_password = if no_password {
                    String::new()
                } else {
                    hash(password, cost).await?
                };
                Change::UserAdd(r)
            }
            Op::UserChangePassword(mut r) => {
                r.hashed_password = hash(std::mem::take(&mut r.password), cost).await?;
                Change::UserChangePassword(r)
            }
            Op::UserDelete(r) => Change::UserDelete(r),
            Op::UserGrantRole(r) => Change::UserGrantRole(r),
            Op::UserRevokeRole(r) => Change::UserRevokeRole(r),
            Op::RoleAdd(r) => Change::RoleAdd(r),
            Op::RoleDelete(r) => Change::RoleDelete(r),
            Op::RoleGrantPermission(r) => Change::RoleGrantPermission(r),
            Op::RoleRevokePermission(r) => Change::RoleRevokePermission(r),
            read => return self.auth_read(read, &who).await,
        };
        let result = respond(&change);
        self.node.require_leader()?;
        let proposal = Proposal {
            origin: None,
            auth: Some(who),
            command: Command::Auth(change),
        };
        match self.node.write(proposal).await? {
            Applied::Auth(AuthApplied::Done) => Ok(result),
            other => Err(NodeError::Task(format!("auth change applied as {other:?}"))),
        }
    }

    /// Checks the password here, then makes the token through raft; asks again if the auth
    /// store changed in between.
    async fn authenticate(
        &self,
        r: pb::AuthenticateRequest,
    ) -> Result<pb::AuthenticateResponse, NodeError> {
        self.node.require_leader()?;
        for _ in 0..AUTHENTICATE_ATTEMPTS {
            let (hashed, revision) = {
                let state = self.node.auth().state();
                if !state.enabled {
                    return Err(auth_err(AuthError::NotEnabled));
                }
                let user = state.user(&r.name).ok_or(auth_err(AuthError::AuthFailed))?;
                if user.options.as_ref().is_some_and(|o| o.no_password) {
                    return Err(auth_err(AuthError::NoPasswordUser));
                }
                (
                    String::from_utf8_lossy(&user.password).into_owned(),
                    state.revision,
                )
            };
            let password = r.password.clone();
            let matches = tokio::task::spawn_blocking(move || {
                bcrypt::verify(password, &hashed).unwrap_or(false)
            })
            .await
            .map_err(|e| NodeError::Task(e.to_string()))?;
            if !matches {
                return Err(auth_err(AuthError::AuthFailed));
            }
            if let Some(jwt) = &self.node.auth().options().jwt {
                // Signed here; any member with the public key verifies it, no entry needed.
                let token = jwt.sign(&r.name, revision).map_err(NodeError::Task)?;
                return Ok(pb::AuthenticateResponse {
                    header: None,
                    token,
                });
            }
            let grant = Change::Token(TokenGrant {
                user: r.name.clone(),
                prefix: random_prefix(),
                revision,
            });
            match self.node.write(Command::Auth(grant)).await {
                Ok(Applied::Auth(AuthApplied::Token(token))) => {
                    return Ok(pb::AuthenticateResponse {
                        header: None,
                        token,
                    });
                }
                Ok(other) => {
                    return Err(NodeError::Task(format!("token applied as {other:?}")));
                }
                Err(NodeError::Mvcc(MvccError::Auth(AuthError::OldRevision))) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(auth_err(AuthError::OldRevision))
    }

    /// Status, user and role reads: after a read index, from this member's auth store.
    async fn auth_read(&self, op: Op, who: &AuthInfo) -> Result<AuthResult, NodeError> {
        self.node.linearize().await?;
        let state = self.node.auth().state();
        read(&state, op, who)
    }
}

/// The (empty) answer of a change that succeeded.
fn respond(change: &Change) -> AuthResult {
    match change {
        Change::Enable(_) => AuthResult::Enable(Default::default()),
        Change::Disable(_) => AuthResult::Disable(Default::default()),
        Change::UserAdd(_) => AuthResult::UserAdd(Default::default()),
        Change::UserDelete(_) => AuthResult::UserDelete(Default::default()),
        Change::UserChangePassword(_) => AuthResult::UserChangePassword(Default::default()),
        Change::UserGrantRole(_) => AuthResult::UserGrantRole(Default::default()),
        Change::UserRevokeRole(_) => AuthResult::UserRevokeRole(Default::default()),
        Change::RoleAdd(_) => AuthResult::RoleAdd(Default::default()),
        Change::RoleDelete(_) => AuthResult::RoleDelete(Default::default()),
        Change::RoleGrantPermission(_) => AuthResult::RoleGrantPermission(Default::default()),
        Change::RoleRevokePermission(_) => AuthResult::RoleRevokePermission(Default::default()),
        Change::Token(_) => AuthResult::Authenticate(Default::default()),
    }
}

/// The answer of a read, with etcd's checks: root for lists and status, root or yourself
/// for a user, root or a holder for a role.
fn read(state: &AuthState, op: Op, who: &AuthInfo) -> Result<AuthResult, NodeError> {
    let is_self = |name: &str| state.enabled && !who.user.is_empty() && who.user == name;
    let holds = |role: &str| {
        state.enabled
            && state
                .user(&who.user)
                .is_some_and(|u| u.roles.iter().any(|r| r == role))
    };
    Ok(match op {
        Op::Status(_) => {
            state.require_admin(Some(who)).map_err(auth_err)?;
            AuthResult::Status(pb::AuthStatusResponse {
                header: None,
                enabled: state.enabled,
                auth_revision: state.revision,
            })
        }
        Op::UserList(_) => {
            state.require_admin(Some(who)).map_err(auth_err)?;
            AuthResult::UserList(pb::AuthUserListResponse {
                header: None,
                users: state.user_names(),
            })
        }
        Op::RoleList(_) => {
            state.require_admin(Some(who)).map_err(auth_err)?;
            AuthResult::RoleList(pb::AuthRoleListResponse {
                header: None,
                roles: state.role_names(),
            })
        }
        Op::UserGet(r) => {
            if !is_self(&r.name) {
                state.require_admin(Some(who)).map_err(auth_err)?;
            }
            let user = state
                .user(&r.name)
                .ok_or(auth_err(AuthError::UserNotFound))?;
            AuthResult::UserGet(pb::AuthUserGetResponse {
                header: None,
                roles: user.roles.clone(),
            })
        }
        Op::RoleGet(r) => {
            if !holds(&r.role) {
                state.require_admin(Some(who)).map_err(auth_err)?;
            }
            let role = state
                .role(&r.role)
                .ok_or(auth_err(AuthError::RoleNotFound))?;
            AuthResult::RoleGet(pb::AuthRoleGetResponse {
                header: None,
                perm: role.key_permission.clone(),
            })
        }
        other => return Err(NodeError::Task(format!("{other:?} is not an auth read"))),
    })
}
