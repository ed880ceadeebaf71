//! Auth: users, roles and key permissions (replicated state, [`state`]), the checks every
//! request passes ([`check`], [`perms`]), and the simple tokens that name a caller
//! ([`tokens`]).
//!
//! A gateway passes the client's token along unchanged; the member serving a request turns
//! it into an [`AuthInfo`] (user and the auth revision it was checked at) with
//! [`Auth::identify`]. Writes carry that identity in their log entry and are checked again
//! when applied.

pub mod check;
pub mod jwt;
pub mod perms;
pub mod state;
pub mod tokens;

use crate::mvcc::{MvccError, Store};
use jwt::JwtKeys;
use metastore_internal_proto::storage::AuthInfo;
use metastore_internal_proto::storage::auth_change::Change;
use parking_lot::{RwLock, RwLockReadGuard};
use state::{AuthState, Invalidate, MetaWrite, Outcome};
use std::sync::Arc;
use std::time::Duration;
use tokens::Tokens;

/// etcd's auth errors (the gateway owns their client-visible text).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication is not enabled")]
    NotEnabled,
    #[error("authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("password was given for no password user")]
    NoPasswordUser,
    #[error("invalid auth token")]
    InvalidToken,
    #[error("permission denied")]
    PermissionDenied,
    #[error("user name is empty")]
    UserEmpty,
    #[error("user name already exists")]
    UserAlreadyExists,
    #[error("user name not found")]
    UserNotFound,
    #[error("role name is empty")]
    RoleEmpty,
    #[error("role name already exists")]
    RoleAlreadyExists,
    #[error("role name not found")]
    RoleNotFound,
    #[error("root user does not exist")]
    RootUserNotExist,
    #[error("root user does not have root role")]
    RootRoleNotExist,
    #[error("role is not granted to the user")]
    RoleNotGranted,
    #[error("permission is not granted to the role")]
    PermissionNotGranted,
    #[error("permission not given")]
    PermissionNotGiven,
    #[error("invalid auth management")]
    InvalidAuthMgmt,
    #[error("revision of auth store is old")]
    OldRevision,
    /// A stored user or role does not decode.
    #[error("corrupt auth record: {0}")]
    Corrupt(String),
}

/// Settings of the auth layer.
#[derive(Clone, Debug)]
pub struct AuthOptions {
    /// bcrypt cost of stored password hashes (`--bcrypt-cost`).
    pub bcrypt_cost: u32,
    /// Idle time after which a simple token is dropped (`--auth-token-ttl`).
    pub token_ttl: Duration,
    /// `--auth-token jwt,...`: signed tokens instead of simple ones.
    pub jwt: Option<Arc<JwtKeys>>,
}

impl Default for AuthOptions {
    fn default() -> Self {
        Self {
            bcrypt_cost: 10,
            token_ttl: Duration::from_secs(300),
            jwt: None,
        }
    }
}

/// A member's auth layer: the auth store as last applied, and its simple tokens.
pub struct Auth {
    state: RwLock<AuthState>,
    tokens: Tokens,
    options: AuthOptions,
}

/// What an applied auth change answers.
#[derive(Clone, Debug, PartialEq)]
pub enum AuthApplied {
    Done,
    Token(String),
}

/// No identity: what a request without a token runs as.
pub fn anonymous() -> AuthInfo {
    AuthInfo {
        user: String::new(),
        revision: 0,
    }
}

impl Auth {
    pub fn new(options: AuthOptions) -> Self {
        Self {
            state: RwLock::new(AuthState::default()),
            tokens: Tokens::new(options.token_ttl),
            options,
        }
    }

    pub fn options(&self) -> &AuthOptions {
        &self.options
    }

    /// Reads the auth store from `store` (at start, and after a snapshot replaced it).
    pub fn load(&self, store: &Store) -> Result<(), MvccError> {
        let records = store.meta_with_prefix(state::META_PREFIX)?;
        *self.state.write() = AuthState::load(&records)?;
        Ok(())
    }

    pub fn state(&self) -> RwLockReadGuard<'_, AuthState> {
        self.state.read()
    }

    /// Who a request with `token` runs as: nobody without a token; the token's user, checked
    /// at the current auth revision, with a valid one. A token that is not (or no longer)
    /// valid is refused, also while auth is off (as etcd 3.4).
    pub fn identify(&self, token: &str) -> Result<AuthInfo, AuthError> {
        if token.is_empty() {
            return Ok(anonymous());
        }
        if let Some(jwt) = &self.options.jwt {
            // A JWT names the auth revision its password was checked at.
            let (user, revision) = jwt.verify(token).ok_or(AuthError::InvalidToken)?;
            return Ok(AuthInfo { user, revision });
        }
        let user = self.tokens.user_of(token).ok_or(AuthError::InvalidToken)?;
        Ok(AuthInfo {
            user,
            revision: self.state.read().revision,
        })
    }

    /// Who a request runs as whose client authenticated with a TLS certificate naming `user`
    /// (and sent no token): that user, at the current auth revision (etcd's rule; a user that
    /// does not exist gets no permission).
    pub fn certified(&self, user: &str) -> AuthInfo {
        AuthInfo {
            user: user.to_string(),
            revision: self.state.read().revision,
        }
    }

    /// Applies an auth change (entry `index`): decides it, updates the tokens, and returns
    /// the metadata writes that record it.
    pub fn apply(
        &self,
        index: u64,
        who: Option<&AuthInfo>,
        change: &Change,
    ) -> Result<(AuthApplied, Vec<MetaWrite>), AuthError> {
        let (outcome, writes) = self.state.write().change(who, change)?;
        let applied = match outcome {
            Outcome::Done => AuthApplied::Done,
            Outcome::Token { user } => {
                let Change::Token(t) = change else {
                    return Err(AuthError::Corrupt("token outcome of another change".into()));
                };
                AuthApplied::Token(self.tokens.grant(&t.prefix, index, &user))
            }
            Outcome::Invalidate(Invalidate::User(user)) => {
                self.tokens.invalidate_user(&user);
                AuthApplied::Done
            }
            Outcome::Invalidate(Invalidate::All) => {
                self.tokens.invalidate_all();
                AuthApplied::Done
            }
        };
        Ok((applied, writes))
    }
}

#[cfg(test)]
mod tests;
