//! The auth store's rules (etcd's errors, in etcd's order) and its persistence on both
//! engines.

use super::state::{AuthState, ROOT};
use super::*;
use crate::engine::{EngineKind, open};
use crate::mvcc::Store;
use metastore_proto::authpb::Permission;
use metastore_proto::authpb::permission::Type as PermType;
use metastore_proto::etcdserverpb as pb;
use std::sync::Arc;

fn root() -> AuthInfo {
    AuthInfo {
        user: ROOT.into(),
        revision: 1,
    }
}

fn user_add(name: &str) -> Change {
    Change::UserAdd(pb::AuthUserAddRequest {
        name: name.into(),
        hashed_password: format!("hash-of-{name}"),
        ..Default::default()
    })
}

fn grant(user: &str, role: &str) -> Change {
    Change::UserGrantRole(pb::AuthUserGrantRoleRequest {
        user: user.into(),
        role: role.into(),
    })
}

fn perm(role: &str, t: PermType, key: &str, end: &str) -> Change {
    Change::RoleGrantPermission(pb::AuthRoleGrantPermissionRequest {
        name: role.into(),
        perm: Some(Permission {
            perm_type: t as i32,
            key: key.into(),
            range_end: end.into(),
        }),
    })
}

fn apply(s: &mut AuthState, who: &AuthInfo, c: Change) -> Result<(), AuthError> {
    s.change(Some(who), &c).map(|_| ())
}

/// Users, roles and grants as etcd answers them, errors included, before and after enable.
#[test]
fn users_roles_and_their_errors() {
    let mut s = AuthState::default();
    let anyone = anonymous();
    assert_eq!(s.revision, 1);
    let enable = Change::Enable(pb::AuthEnableRequest {});
    assert_eq!(
        apply(&mut s, &anyone, enable.clone()),
        Err(AuthError::RootUserNotExist)
    );
    apply(&mut s, &anyone, user_add(ROOT)).expect("root");
    assert_eq!(
        apply(&mut s, &anyone, enable.clone()),
        Err(AuthError::RootRoleNotExist)
    );
    assert_eq!(
        apply(&mut s, &anyone, user_add(ROOT)),
        Err(AuthError::UserAlreadyExists)
    );
    assert_eq!(
        apply(&mut s, &anyone, user_add("")),
        Err(AuthError::UserEmpty)
    );
    // The role root need not exist to be granted.
    apply(&mut s, &anyone, grant(ROOT, ROOT)).expect("root role");
    assert_eq!(
        apply(&mut s, &anyone, grant(ROOT, "nope")),
        Err(AuthError::RoleNotFound)
    );
    assert_eq!(
        apply(&mut s, &anyone, grant("nobody", ROOT)),
        Err(AuthError::UserNotFound)
    );
    let before = s.revision;
    apply(&mut s, &anyone, grant(ROOT, ROOT)).expect("granting twice is fine");
    assert_eq!(s.revision, before, "no change, no new revision");
    apply(&mut s, &anyone, enable.clone()).expect("enable");
    assert!(s.enabled);
    assert_eq!(s.revision, before, "enabling keeps the revision");
    assert_eq!(
        apply(&mut s, &anyone, enable.clone()),
        Err(AuthError::UserEmpty)
    );
    apply(&mut s, &root(), enable).expect("enabling again is a no-op");
    // From now on only root changes anything.
    assert_eq!(
        apply(&mut s, &anyone, user_add("a")),
        Err(AuthError::UserEmpty)
    );
    let admin = AuthInfo {
        revision: s.revision,
        ..root()
    };
    apply(&mut s, &admin, user_add("alice")).expect("alice");
    let alice = AuthInfo {
        user: "alice".into(),
        revision: s.revision,
    };
    assert_eq!(
        apply(&mut s, &alice, user_add("b")),
        Err(AuthError::PermissionDenied)
    );
    let ghost = AuthInfo {
        user: "ghost".into(),
        revision: s.revision,
    };
    assert_eq!(
        apply(&mut s, &ghost, user_add("b")),
        Err(AuthError::UserNotFound)
    );
    // Roles.
    let role_add = |n: &str| Change::RoleAdd(pb::AuthRoleAddRequest { name: n.into() });
    assert_eq!(
        apply(&mut s, &admin, role_add("")),
        Err(AuthError::RoleEmpty)
    );
    apply(&mut s, &admin, role_add("app")).expect("app");
    assert_eq!(
        apply(&mut s, &admin, role_add("app")),
        Err(AuthError::RoleAlreadyExists)
    );
    apply(
        &mut s,
        &admin,
        perm("app", PermType::Read, "/app/", "/app0"),
    )
    .expect("perm");
    apply(
        &mut s,
        &admin,
        perm("app", PermType::Readwrite, "/app/", "/app0"),
    )
    .expect("update");
    apply(&mut s, &admin, perm("app", PermType::Write, "/a", "")).expect("second");
    let perms = &s.role("app").expect("app").key_permission;
    assert_eq!(
        perms.len(),
        2,
        "an existing (key, end) only changes its type"
    );
    assert_eq!(perms[0].key, b"/a", "sorted by key");
    assert_eq!(perms[1].perm_type, PermType::Readwrite as i32);
    let no_perm = Change::RoleGrantPermission(pb::AuthRoleGrantPermissionRequest {
        name: "app".into(),
        perm: None,
    });
    assert_eq!(
        apply(&mut s, &admin, no_perm),
        Err(AuthError::PermissionNotGiven)
    );
    assert_eq!(
        apply(&mut s, &admin, perm("app", PermType::Read, "b", "a")),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        apply(&mut s, &admin, perm("app", PermType::Read, "", "a")),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        apply(&mut s, &admin, perm("nope", PermType::Read, "a", "")),
        Err(AuthError::RoleNotFound)
    );
    let revoke = |key: &str, end: &str| {
        Change::RoleRevokePermission(pb::AuthRoleRevokePermissionRequest {
            role: "app".into(),
            key: key.into(),
            range_end: end.into(),
        })
    };
    assert_eq!(
        apply(&mut s, &admin, revoke("/a", "z")),
        Err(AuthError::PermissionNotGranted)
    );
    apply(&mut s, &admin, revoke("/a", "")).expect("revoke");
    apply(&mut s, &admin, grant("alice", "app")).expect("grant app");
    let revoke_role = |user: &str, role: &str| {
        Change::UserRevokeRole(pb::AuthUserRevokeRoleRequest {
            name: user.into(),
            role: role.into(),
        })
    };
    assert_eq!(
        apply(&mut s, &admin, revoke_role("alice", "x")),
        Err(AuthError::RoleNotGranted)
    );
    assert_eq!(
        apply(&mut s, &admin, revoke_role(ROOT, ROOT)),
        Err(AuthError::InvalidAuthMgmt)
    );
    let delete_user = |n: &str| Change::UserDelete(pb::AuthUserDeleteRequest { name: n.into() });
    let delete_role = |n: &str| Change::RoleDelete(pb::AuthRoleDeleteRequest { role: n.into() });
    assert_eq!(
        apply(&mut s, &admin, delete_user(ROOT)),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        apply(&mut s, &admin, delete_role(ROOT)),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        apply(&mut s, &admin, delete_user("bob")),
        Err(AuthError::UserNotFound)
    );
    // Deleting a role takes it from every user.
    apply(&mut s, &admin, delete_role("app")).expect("delete app");
    assert!(s.user("alice").expect("alice").roles.is_empty());
    // A failed change changes nothing, not even the revision.
    let snapshot = s.clone();
    assert!(apply(&mut s, &admin, delete_role("app")).is_err());
    assert_eq!(s, snapshot);
    // Disable needs root too, then anyone may change things again.
    let disable = Change::Disable(pb::AuthDisableRequest {});
    assert_eq!(
        apply(&mut s, &alice, disable.clone()),
        Err(AuthError::PermissionDenied)
    );
    let (outcome, _) = s.change(Some(&admin), &disable).expect("disable");
    assert_eq!(outcome, state::Outcome::Invalidate(state::Invalidate::All));
    apply(&mut s, &anyone, delete_user(ROOT)).expect("root may go while auth is off");
}

/// Key checks: no identity, a stale revision, a deleted user, root, and a granted range.
#[test]
fn key_checks_follow_etcd() {
    use super::check::keys;
    use super::perms::Need;
    let mut s = AuthState::default();
    let anyone = anonymous();
    for c in [
        user_add(ROOT),
        grant(ROOT, ROOT),
        user_add("alice"),
        Change::RoleAdd(pb::AuthRoleAddRequest { name: "app".into() }),
        perm("app", PermType::Read, "/app/", "/app0"),
        grant("alice", "app"),
        Change::Enable(pb::AuthEnableRequest {}),
    ] {
        apply(&mut s, &anyone, c).expect("setup");
    }
    let rev = s.revision;
    let alice = AuthInfo {
        user: "alice".into(),
        revision: rev,
    };
    let at = |user: &str, revision| AuthInfo {
        user: user.into(),
        revision,
    };
    assert_eq!(keys(&s, &alice, Need::Read, b"/app/x", b""), Ok(()));
    assert_eq!(keys(&s, &alice, Need::Read, b"/app/", b"/app0"), Ok(()));
    assert_eq!(
        keys(&s, &alice, Need::Read, b"/other", b""),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        keys(&s, &alice, Need::Write, b"/app/x", b""),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        keys(&s, &anyone, Need::Read, b"/app/x", b""),
        Err(AuthError::UserEmpty)
    );
    assert_eq!(
        keys(&s, &at("alice", rev - 1), Need::Read, b"/app/x", b""),
        Err(AuthError::OldRevision)
    );
    assert_eq!(
        keys(&s, &at("ghost", rev), Need::Read, b"/app/x", b""),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(keys(&s, &at(ROOT, rev), Need::Write, &[0], &[0]), Ok(()));
}

/// The auth store is replicated state: written with the entry, read back after a reopen, on
/// both engines; tokens are not (they are lost with the process, as etcd's simple tokens).
#[test]
fn the_auth_store_survives_a_reopen_on_both_engines() {
    for kind in [EngineKind::Memory, EngineKind::Rocksdb] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Arc::new(Store::open(open(kind, dir.path()).expect("engine").engine).expect("store"));
        let auth = Auth::new(AuthOptions::default());
        auth.load(&store).expect("load");
        let mut index = 0;
        let mut apply = |who: Option<&AuthInfo>, c: Change| {
            index += 1;
            let (applied, writes) = auth.apply(index, who, &c)?;
            store
                .write(index, |w| {
                    for (k, v) in writes {
                        match v {
                            Some(v) => w.put_meta(k, v),
                            None => w.delete_meta(k),
                        }
                    }
                    Ok(())
                })
                .expect("write");
            Ok::<_, AuthError>(applied)
        };
        let anyone = anonymous();
        for c in [user_add(ROOT), grant(ROOT, ROOT), user_add("alice")] {
            apply(Some(&anyone), c).expect("setup");
        }
        apply(Some(&anyone), Change::Enable(pb::AuthEnableRequest {})).expect("enable");
        let token = Change::Token(metastore_internal_proto::storage::TokenGrant {
            user: "alice".into(),
            prefix: "abcdefghijklmnop".into(),
            revision: auth.state().revision,
        });
        let AuthApplied::Token(t) = apply(None, token).expect("token") else {
            panic!("no token");
        };
        assert_eq!(t, format!("abcdefghijklmnop.{}", 5));
        assert_eq!(auth.identify(&t).map(|i| i.user), Ok("alice".to_string()));
        assert_eq!(auth.identify("nope.1"), Err(AuthError::InvalidToken));
        let before = auth.state().clone();
        let engine = store.shared_engine();
        drop(store);
        let reopened = Store::open(engine).expect("reopen");
        let again = Auth::new(AuthOptions::default());
        again.load(&reopened).expect("load");
        assert_eq!(*again.state(), before, "{kind:?}");
        assert!(again.state().enabled);
        assert_eq!(
            again.identify(&t),
            Err(AuthError::InvalidToken),
            "tokens are not kept"
        );
    }
}
