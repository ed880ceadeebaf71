//! The auth store as replicated state: users, roles, the enabled flag and the auth revision.
//!
//! It lives in the store's metadata (so it is in every snapshot and survives restarts) and is
//! changed only by applied log entries. Every change is decided in full before anything is
//! written: [`AuthState::change`] works on a copy and returns the metadata writes that turn
//! the old state into the new one.

use super::AuthError;
use metastore_internal_proto::storage::AuthInfo;
use metastore_internal_proto::storage::auth_change::Change;
use metastore_proto::authpb::{Permission, Role, User, UserAddOptions};
use prost::Message;
use std::collections::BTreeMap;

/// Where the auth store lives among the store's metadata.
pub const META_PREFIX: &[u8] = b"auth/";
const ENABLED_KEY: &[u8] = b"auth/enabled";
const REVISION_KEY: &[u8] = b"auth/revision";
const USER_PREFIX: &[u8] = b"auth/user/";
const ROLE_PREFIX: &[u8] = b"auth/role/";

pub const ROOT: &str = "root";

/// etcd's backend buckets for the auth store (snapshot files): the enabled flag and the
/// revision in `auth`, users and roles (the same `authpb` records) by name.
pub const ETCD_AUTH_BUCKET: &[u8] = b"auth";
pub const ETCD_USERS_BUCKET: &[u8] = b"authUsers";
pub const ETCD_ROLES_BUCKET: &[u8] = b"authRoles";
pub const ETCD_ENABLED: &[u8] = b"authEnabled";
pub const ETCD_REVISION: &[u8] = b"authRevision";

/// The etcd bucket and key of one of the auth store's metadata keys.
pub fn etcd_record_of(meta_key: &[u8]) -> Option<(&'static [u8], Vec<u8>)> {
    if meta_key == ENABLED_KEY {
        Some((ETCD_AUTH_BUCKET, ETCD_ENABLED.to_vec()))
    } else if meta_key == REVISION_KEY {
        Some((ETCD_AUTH_BUCKET, ETCD_REVISION.to_vec()))
    } else if let Some(name) = meta_key.strip_prefix(USER_PREFIX) {
        Some((ETCD_USERS_BUCKET, name.to_vec()))
    } else {
        let name = meta_key.strip_prefix(ROLE_PREFIX)?;
        Some((ETCD_ROLES_BUCKET, name.to_vec()))
    }
}

/// The metadata key of an etcd auth bucket's record, after checking its value decodes as
/// etcd's record; `Ok(None)` for records the store does not keep.
pub fn meta_key_of(bucket: &[u8], key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        format!("{what} {:?}: {e}", String::from_utf8_lossy(key))
    };
    Ok(match bucket {
        ETCD_AUTH_BUCKET if key == ETCD_ENABLED => {
            if value.len() != 1 {
                return Err(bad("auth flag", &"not one byte"));
            }
            Some(ENABLED_KEY.to_vec())
        }
        ETCD_AUTH_BUCKET if key == ETCD_REVISION => {
            if value.len() != 8 {
                return Err(bad("auth revision", &"not 8 bytes"));
            }
            Some(REVISION_KEY.to_vec())
        }
        ETCD_USERS_BUCKET => {
            User::decode(value).map_err(|e| bad("user", &e))?;
            Some([USER_PREFIX, key].concat())
        }
        ETCD_ROLES_BUCKET => {
            Role::decode(value).map_err(|e| bad("role", &e))?;
            Some([ROLE_PREFIX, key].concat())
        }
        _ => None,
    })
}

/// A metadata write: a value to store, or `None` to remove the key.
pub type MetaWrite = (Vec<u8>, Option<Vec<u8>>);

#[derive(Clone, Debug, PartialEq)]
pub struct AuthState {
    pub enabled: bool,
    /// Rises by one with every change of users, roles or permissions (1 on a new store).
    pub revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
}

impl Default for AuthState {
    fn default() -> Self {
        Self {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
        }
    }
}

/// What an applied change tells its proposer.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The change is done (or had nothing to do).
    Done,
    /// A token may be handed to this user.
    Token { user: String },
    /// These users' tokens are no longer valid (deleted, password changed; all on disable).
    Invalidate(Invalidate),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Invalidate {
    User(String),
    All,
}

fn decode_err(what: &str, e: impl std::fmt::Display) -> AuthError {
    AuthError::Corrupt(format!("{what}: {e}"))
}

impl AuthState {
    /// Reads the auth store from the metadata records under [`META_PREFIX`].
    pub fn load(records: &[(Vec<u8>, Vec<u8>)]) -> Result<Self, AuthError> {
        let mut state = AuthState::default();
        for (k, v) in records {
            if k == ENABLED_KEY {
                state.enabled = v.as_slice() == [1];
            } else if k == REVISION_KEY {
                let bytes: [u8; 8] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| decode_err("auth revision", "not 8 bytes"))?;
                state.revision = u64::from_be_bytes(bytes);
            } else if let Some(name) = k.strip_prefix(USER_PREFIX) {
                let user = User::decode(v.as_slice()).map_err(|e| decode_err("user", e))?;
                state
                    .users
                    .insert(String::from_utf8_lossy(name).into_owned(), user);
            } else if let Some(name) = k.strip_prefix(ROLE_PREFIX) {
                let role = Role::decode(v.as_slice()).map_err(|e| decode_err("role", e))?;
                state
                    .roles
                    .insert(String::from_utf8_lossy(name).into_owned(), role);
            }
        }
        Ok(state)
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// User names, sorted.
    pub fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    /// Role names, sorted.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// Every user and every role (for backups).
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.roles.values()
    }

    pub fn is_root(&self, user: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == ROOT))
    }

    /// The permissions of every role `user` holds (roles that do not exist grant nothing).
    pub fn permissions_of<'a>(&'a self, user: &'a User) -> impl Iterator<Item = &'a Permission> {
        user.roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.key_permission.iter())
    }

    /// etcd's admin check: passes while auth is off; else the caller must be a user holding
    /// the root role.
    pub fn require_admin(&self, who: Option<&AuthInfo>) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let who = match who {
            Some(w) if !w.user.is_empty() => w,
            _ => return Err(AuthError::UserEmpty),
        };
        match self.users.get(&who.user) {
            None => Err(AuthError::UserNotFound),
            Some(_) if self.is_root(&who.user) => Ok(()),
            Some(_) => Err(AuthError::PermissionDenied),
        }
    }

    /// Applies `change` as asked by `who`: checks everything first, then returns what it
    /// means for tokens and the metadata writes that record it. `self` is unchanged on error.
    pub fn change(
        &mut self,
        who: Option<&AuthInfo>,
        change: &Change,
    ) -> Result<(Outcome, Vec<MetaWrite>), AuthError> {
        if !matches!(change, Change::Token(_)) {
            self.require_admin(who)?;
        }
        let mut next = self.clone();
        let outcome = next.decide(change)?;
        // etcd keeps the revision when auth is enabled.
        if next.changed_from(self) && !matches!(change, Change::Enable(_)) {
            next.revision += 1;
        }
        let writes = next.writes_from(self);
        *self = next;
        Ok((outcome, writes))
    }

    fn changed_from(&self, before: &AuthState) -> bool {
        self.users != before.users || self.roles != before.roles || self.enabled != before.enabled
    }

    fn user_mut(&mut self, name: &str) -> Result<&mut User, AuthError> {
        self.users.get_mut(name).ok_or(AuthError::UserNotFound)
    }

    fn decide(&mut self, change: &Change) -> Result<Outcome, AuthError> {
        match change {
            Change::Enable(_) => {
                if self.enabled {
                    return Ok(Outcome::Done);
                }
                let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
                if !root.roles.iter().any(|r| r == ROOT) {
                    return Err(AuthError::RootRoleNotExist);
                }
                self.enabled = true;
                Ok(Outcome::Done)
            }
            Change::Disable(_) => {
                if !self.enabled {
                    return Ok(Outcome::Done);
                }
                self.enabled = false;
                Ok(Outcome::Invalidate(Invalidate::All))
            }
            Change::UserAdd(r) => {
                if r.name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(&r.name) {
                    return Err(AuthError::UserAlreadyExists);
                }
                let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
                self.users.insert(
                    r.name.clone(),
                    User {
                        name: r.name.clone().into_bytes(),
                        password: if no_password {
                            Vec::new()
                        } else {
                            r.hashed_password.clone().into_bytes()
                        },
                        roles: Vec::new(),
                        options: Some(UserAddOptions { no_password }),
                    },
                );
                Ok(Outcome::Done)
            }
            Change::UserDelete(r) => {
                if self.enabled && r.name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.users.remove(&r.name).ok_or(AuthError::UserNotFound)?;
                Ok(Outcome::Invalidate(Invalidate::User(r.name.clone())))
            }
            Change::UserChangePassword(r) => {
                self.user_mut(&r.name)?.password = r.hashed_password.clone().into_bytes();
                Ok(Outcome::Invalidate(Invalidate::User(r.name.clone())))
            }
            Change::UserGrantRole(r) => {
                if !self.users.contains_key(&r.user) {
                    return Err(AuthError::UserNotFound);
                }
                if r.role != ROOT && !self.roles.contains_key(&r.role) {
                    return Err(AuthError::RoleNotFound);
                }
                let user = self.user_mut(&r.user)?;
                if let Err(at) = user.roles.binary_search(&r.role) {
                    user.roles.insert(at, r.role.clone());
                }
                Ok(Outcome::Done)
            }
            Change::UserRevokeRole(r) => {
                if self.enabled && r.name == ROOT && r.role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let user = self.user_mut(&r.name)?;
                let before = user.roles.len();
                user.roles.retain(|role| *role != r.role);
                if user.roles.len() == before {
                    return Err(AuthError::RoleNotGranted);
                }
                Ok(Outcome::Done)
            }
            Change::RoleAdd(r) => {
                if r.name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(&r.name) {
                    return Err(AuthError::RoleAlreadyExists);
                }
                self.roles.insert(
                    r.name.clone(),
                    Role {
                        name: r.name.clone().into_bytes(),
                        key_permission: Vec::new(),
                    },
                );
                Ok(Outcome::Done)
            }
            Change::RoleDelete(r) => {
                if self.enabled && r.role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.roles.remove(&r.role).ok_or(AuthError::RoleNotFound)?;
                for user in self.users.values_mut() {
                    user.roles.retain(|role| *role != r.role);
                }
                Ok(Outcome::Done)
            }
            Change::RoleGrantPermission(r) => {
                let perm = r.perm.as_ref().ok_or(AuthError::PermissionNotGiven)?;
                if !valid_permission_range(&perm.key, &perm.range_end) {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let role = self.roles.get_mut(&r.name).ok_or(AuthError::RoleNotFound)?;
                match role
                    .key_permission
                    .iter_mut()
                    .find(|p| p.key == perm.key && p.range_end == perm.range_end)
                {
                    Some(existing) => existing.perm_type = perm.perm_type,
                    None => {
                        role.key_permission.push(perm.clone());
                        role.key_permission.sort_by(|a, b| a.key.cmp(&b.key));
                    }
                }
                Ok(Outcome::Done)
            }
            Change::RoleRevokePermission(r) => {
                let role = self.roles.get_mut(&r.role).ok_or(AuthError::RoleNotFound)?;
                let before = role.key_permission.len();
                role.key_permission
                    .retain(|p| p.key != r.key || p.range_end != r.range_end);
                if role.key_permission.len() == before {
                    return Err(AuthError::PermissionNotGranted);
                }
                Ok(Outcome::Done)
            }
            Change::Token(t) => {
                if !self.enabled {
                    return Err(AuthError::NotEnabled);
                }
                if !self.users.contains_key(&t.user) {
                    return Err(AuthError::AuthFailed);
                }
                // The password was checked against an older auth store: check it again.
                if t.revision != self.revision {
                    return Err(AuthError::OldRevision);
                }
                Ok(Outcome::Token {
                    user: t.user.clone(),
                })
            }
        }
    }

    /// The metadata writes that turn `before` into `self`.
    fn writes_from(&self, before: &AuthState) -> Vec<MetaWrite> {
        let mut out = Vec::new();
        if self.enabled != before.enabled {
            out.push((ENABLED_KEY.to_vec(), Some(vec![u8::from(self.enabled)])));
        }
        if self.revision != before.revision {
            out.push((
                REVISION_KEY.to_vec(),
                Some(self.revision.to_be_bytes().to_vec()),
            ));
        }
        diff(&before.users, &self.users, USER_PREFIX, &mut out);
        diff(&before.roles, &self.roles, ROLE_PREFIX, &mut out);
        out
    }
}

fn diff<M: Message + PartialEq>(
    before: &BTreeMap<String, M>,
    after: &BTreeMap<String, M>,
    prefix: &[u8],
    out: &mut Vec<MetaWrite>,
) {
    let key = |name: &str| [prefix, name.as_bytes()].concat();
    for (name, value) in after {
        if before.get(name) != Some(value) {
            out.push((key(name), Some(value.encode_to_vec())));
        }
    }
    for name in before.keys().filter(|n| !after.contains_key(*n)) {
        out.push((key(name), None));
    }
}

/// etcd (3.4.25+): a permission needs a key, and a range end after it (or `"\0"`).
fn valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || range_end == [0] || key < range_end)
}
