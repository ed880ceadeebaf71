//! Auth end to end with real clients, every engine and topology: the permission matrix (every
//! checked RPC × users with different grants) and the admin-call corpus answer as a real etcd
//! answers; tokens work across gateways, restarts and leader changes; a revoked permission
//! stops writes at once; expired tokens are renewed the way clients do it; auth turns off again.

use anyhow::{Context, Result, bail};
use etcd_client::{Client, ConnectOptions, GetOptions, Permission, PutOptions};
use metastore_tests::{Cluster, Deployment, ENGINES, Etcd, assert_same_answers, matrix};
use metastore_tests::{grpc_status, retry_until};
use std::time::Duration;

#[path = "auth/corpus.rs"]
mod corpus;
#[path = "auth/matrix.rs"]
mod perm_matrix;

matrix!(
    permission_matrix_matches_real_etcd,
    admin_corpus_matches_real_etcd,
    revoked_permission_stops_writes,
    auth_disabled_again
);
matrix!(storaged_args = ["--auth-token-ttl", "2"]; expired_token_is_renewed_by_the_client);

const ROOT_PASSWORD: &str = "root-secret";

/// What a call answered, as clients see it: `ok` (with what matters of the body) or the
/// status code and etcd's message.
pub fn outcome<T>(
    r: std::result::Result<T, etcd_client::Error>,
    body: impl Fn(&T) -> String,
) -> String {
    match r {
        Ok(v) => {
            let b = body(&v);
            if b.is_empty() {
                "ok".into()
            } else {
                format!("ok {b}")
            }
        }
        Err(e) => {
            let (code, message) = grpc_status(&e);
            format!("{code:?}: {message}")
        }
    }
}

/// A client of `endpoint` logged in as `user` (password `<user>-pw`, root's [`ROOT_PASSWORD`]).
pub async fn login(endpoint: &str, user: &str) -> Result<Client> {
    let options = ConnectOptions::new().with_user(user, password(user));
    Ok(Client::connect([endpoint], Some(options)).await?)
}

/// The password of `user` in these tests.
pub fn password(user: &str) -> String {
    if user == "root" {
        ROOT_PASSWORD.to_string()
    } else {
        format!("{user}-pw")
    }
}

/// Makes root (with the root role) and turns auth on, through an anonymous client.
async fn enable_auth(c: &mut Client) -> Result<()> {
    c.user_add("root", ROOT_PASSWORD, None).await?;
    c.user_grant_role("root", "root").await?;
    c.auth_enable().await?;
    Ok(())
}

async fn permission_matrix_matches_real_etcd(d: Deployment) -> Result<()> {
    let etcd = Etcd::start()?;
    let want = perm_matrix::run(&etcd.endpoint())
        .await
        .context("real etcd")?;
    d.ready().await?;
    let got = perm_matrix::run(&d.endpoint()).await.context("metastore")?;
    // etcd 3.4.23 does not check the ops of nested txns (later releases do, as MetaStore):
    // those answers are checked on their own.
    let nested = |a: &String| a.contains(perm_matrix::NESTED_TXN);
    let (_, want): (Vec<_>, Vec<_>) = want.into_iter().partition(nested);
    let (got_nested, got): (Vec<_>, Vec<_>) = got.into_iter().partition(nested);
    assert_same_answers(d.case, &want, &got);
    assert_eq!(got_nested.len(), 7, "{got_nested:?}");
    for a in &got_nested {
        // Only root and `fk` (read-write from /n) may write /other/n.
        let allowed = a.starts_with("root ") || a.starts_with("fk ");
        let want = if allowed {
            "ok succeeded true"
        } else {
            "PermissionDenied: etcdserver: permission denied"
        };
        assert!(a.ends_with(want), "{a}");
    }
    // The table must hold refusals and grants both, or it proves nothing.
    let denied = got
        .iter()
        .filter(|a| a.contains("permission denied"))
        .count();
    assert!(denied > 30 && got.len() - denied > 30, "{got:#?}");
    Ok(())
}

async fn admin_corpus_matches_real_etcd(d: Deployment) -> Result<()> {
    let etcd = Etcd::start()?;
    let want = corpus::run(&etcd.endpoint()).await.context("real etcd")?;
    d.ready().await?;
    let got = corpus::run(&d.endpoint()).await.context("metastore")?;
    assert_same_answers(d.case, &want, &got);
    Ok(())
}

/// A writer puts to `/app/w` in a loop while root revokes its permission: every put
/// acknowledged lands before the revoke was acknowledged, every put after it is refused,
/// and the store holds exactly the acknowledged puts (plus those whose outcome was unknown).
async fn revoked_permission_stops_writes(d: Deployment) -> Result<()> {
    let mut anon = d.client().await?;
    anon.role_add("app").await?;
    anon.role_grant_permission("app", Permission::read_write("/app/").with_prefix())
        .await?;
    anon.user_add("writer", "writer-pw", None).await?;
    anon.user_grant_role("writer", "app").await?;
    enable_auth(&mut anon).await?;
    let mut root = login(&d.endpoint(), "root").await?;
    let mut writer = login(&d.endpoint(), "writer").await?;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = {
        let stop = stop.clone();
        let mut writer = writer.clone();
        tokio::spawn(async move {
            let mut history = Vec::new();
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let started = std::time::Instant::now();
                let r = writer.put("/app/w", n.to_string(), None).await;
                history.push((
                    n,
                    started,
                    r.map(|r| r.header().map_or(0, |h| h.revision())),
                ));
            }
            history
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Root's write just before the revoke and just after: the revoke lies between them.
    let before = root.put("/marker", "before", None).await?;
    root.role_revoke_permission(
        "app",
        "/app/",
        Some(etcd_client::RoleRevokePermissionOptions::new().with_prefix()),
    )
    .await?;
    let revoked_at = std::time::Instant::now();
    let after = root.put("/marker", "after", None).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let history = writing.await?;
    let after_rev = after.header().context("header")?.revision();
    let before_rev = before.header().context("header")?.revision();

    let mut acked = Vec::new();
    let mut unknown = Vec::new();
    let mut refused_after = 0;
    for (n, started, r) in &history {
        match r {
            Ok(rev) => {
                assert!(
                    *rev < after_rev,
                    "put {n} landed at {rev}, after the revoke ({after_rev})"
                );
                assert!(
                    *started < revoked_at,
                    "put {n} sent after the revoke was acknowledged"
                );
                acked.push((*rev, n.to_string()));
            }
            Err(e) => {
                let (_, message) = grpc_status(e);
                match message.as_str() {
                    "etcdserver: permission denied"
                    | "etcdserver: revision of auth store is old" => {
                        if *started > revoked_at {
                            refused_after += 1;
                        }
                    }
                    _ => unknown.push(n.to_string()),
                }
            }
        }
    }
    assert!(
        acked.len() > 5,
        "too few writes before the revoke: {}",
        acked.len()
    );
    assert!(
        refused_after > 5,
        "too few refused writes after the revoke: {refused_after}"
    );
    // The store's history of /app/w is the acknowledged puts, in order, plus unknown ones.
    let mut landed = Vec::new();
    let mut rev = after_rev;
    loop {
        let r = root
            .get("/app/w", Some(GetOptions::new().with_revision(rev)))
            .await?;
        let Some(kv) = r.kvs().first() else { break };
        landed.push((kv.mod_revision(), kv.value_str()?.to_string()));
        if kv.version() == 1 {
            break;
        }
        rev = kv.mod_revision() - 1;
    }
    landed.reverse();
    let unexplained: Vec<_> = landed
        .iter()
        .filter(|l| !acked.contains(l) && !unknown.contains(&l.1))
        .collect();
    assert!(
        unexplained.is_empty(),
        "writes nobody acknowledged or sent: {unexplained:?}"
    );
    let lost: Vec<_> = acked.iter().filter(|a| !landed.contains(a)).collect();
    assert!(lost.is_empty(), "acknowledged writes missing: {lost:?}");
    assert!(
        landed
            .iter()
            .all(|(rev, _)| *rev < after_rev && *rev != before_rev)
    );
    // And the writer stays refused.
    let e = writer
        .put("/app/w", "late", None)
        .await
        .err()
        .context("a put after the revoke")?;
    assert_eq!(grpc_status(&e).1, "etcdserver: permission denied");
    Ok(())
}

/// Tokens live 2 s: an idle client's token expires, the next call is refused with
/// `invalid auth token`, and a client that re-authenticates on that error (as clientv3 does)
/// carries on.
async fn expired_token_is_renewed_by_the_client(d: Deployment) -> Result<()> {
    let mut anon = d.client().await?;
    enable_auth(&mut anon).await?;
    let endpoint = d.endpoint();
    let mut plain = login(&endpoint, "root").await?;
    let options = ConnectOptions::new()
        .with_user("root", ROOT_PASSWORD)
        .with_auto_token_refresh(true);
    let mut renewing = Client::connect([endpoint.as_str()], Some(options)).await?;
    plain.put("k", "1", None).await?;
    renewing.put("k", "2", None).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let e = plain
        .put("k", "3", None)
        .await
        .err()
        .context("an expired token was accepted")?;
    assert_eq!(
        grpc_status(&e),
        (
            tonic::Code::Unauthenticated,
            "etcdserver: invalid auth token".into()
        )
    );
    renewing.put("k", "4", None).await?;
    let r = renewing.get("k", None).await?;
    assert_eq!(r.kvs()[0].value(), b"4");
    Ok(())
}

/// Root turns auth off: anonymous clients may do everything again, the users stay.
async fn auth_disabled_again(d: Deployment) -> Result<()> {
    let mut anon = d.client().await?;
    anon.user_add("u", "u-pw", None).await?;
    enable_auth(&mut anon).await?;
    let e = anon
        .put("k", "v", None)
        .await
        .err()
        .context("anonymous put with auth on")?;
    assert_eq!(grpc_status(&e).1, "etcdserver: user name is empty");
    let mut root = login(&d.endpoint(), "root").await?;
    root.auth_disable().await?;
    anon.put("k", "v", None).await?;
    let users = anon.user_list().await?;
    assert_eq!(users.users(), ["root", "u"]);
    // Turning auth off ends every token (a client that keeps sending one is told so; the
    // corpus compares that with etcd), and no new ones are given.
    let e = anon
        .auth_client()
        .authenticate("root".into(), ROOT_PASSWORD.into())
        .await;
    let (_, message) = grpc_status(&e.err().context("authenticated with auth off")?);
    assert_eq!(message, "etcdserver: authentication is not enabled");
    let e = anon.auth_disable().await;
    assert!(e.is_ok(), "disabling twice answers ok as etcd: {e:?}");
    Ok(())
}

/// A token from gateway A works on gateway B, after A restarts, and after the leader
/// changes (3 members: the leader is killed).
#[tokio::test]
async fn token_valid_on_every_gateway_and_after_leader_change() -> Result<()> {
    for engine in ENGINES {
        let mut c = Cluster::start(engine, 3, 2, &[])?;
        c.leader(0).await?;
        let mut anon = c.client(0).await?;
        enable_auth(&mut anon).await?;
        let token = anon
            .auth_client()
            .authenticate("root".into(), ROOT_PASSWORD.into())
            .await?
            .token()
            .to_string();
        let (g0, g1) = (c.gateway(0), c.gateway(1));
        let get = |endpoint: &str, token: &str| {
            let (endpoint, token) = (endpoint.to_string(), token.to_string());
            async move { token_get(&endpoint, &token).await.map(Some) }
        };
        token_get(&g1, &token)
            .await
            .context("token of gateway 0 on gateway 1")?;
        c.restart_gateway(0)?;
        retry_until("gateway 0 back", Duration::from_secs(20), || {
            get(&g0, &token)
        })
        .await?;
        let leader = c.leader(1).await?;
        c.kill_member(leader);
        retry_until(
            "token after the leader changed",
            Duration::from_secs(30),
            || get(&g1, &token),
        )
        .await
        .with_context(|| engine.to_string())?;
        // A made-up token is refused.
        let e = token_get(&c.gateway(1), "forged.1")
            .await
            .err()
            .context("forged token")?;
        assert!(format!("{e:#}").contains("invalid auth token"), "{e:#}");
    }
    Ok(())
}

/// Users, roles, permissions and the enabled flag travel in snapshot files: from MetaStore
/// into a real etcd and into MetaStore on the other engine, and from a real etcd into
/// MetaStore; the reader can read `/app/` and nothing else wherever it lands.
#[tokio::test]
async fn users_and_roles_travel_in_snapshots() -> Result<()> {
    async fn prepare(endpoint: &str) -> Result<()> {
        let mut c = Client::connect([endpoint], None).await?;
        c.put("/app/a", "1", None).await?;
        c.role_add("app-read").await?;
        c.role_grant_permission("app-read", Permission::read("/app/").with_prefix())
            .await?;
        c.user_add("reader", "reader-pw", None).await?;
        c.user_grant_role("reader", "app-read").await?;
        enable_auth(&mut c).await
    }
    async fn behaves(endpoint: &str, what: &str) -> Result<()> {
        let mut reader = login(endpoint, "reader").await.context(what.to_string())?;
        let got = reader.get("/app/a", None).await.context(what.to_string())?;
        assert_eq!(got.kvs()[0].value(), b"1", "{what}");
        let e = reader
            .put("/app/a", "2", None)
            .await
            .err()
            .context("reader wrote")?;
        assert_eq!(grpc_status(&e).1, "etcdserver: permission denied", "{what}");
        let mut anon = Client::connect([endpoint], None).await?;
        let e = anon
            .get("/app/a", None)
            .await
            .err()
            .context("anonymous read")?;
        assert_eq!(
            grpc_status(&e).1,
            "etcdserver: user name is empty",
            "{what}"
        );
        let mut root = login(endpoint, "root").await?;
        assert_eq!(
            root.user_list().await?.users(),
            ["reader", "root"],
            "{what}"
        );
        Ok(())
    }
    fn save(endpoint: &str, file: &std::path::Path) -> Result<()> {
        let path = file.to_str().context("path")?;
        let user = format!("root:{ROOT_PASSWORD}");
        metastore_tests::etcdctl(&[
            "--endpoints",
            endpoint,
            "--user",
            &user,
            "snapshot",
            "save",
            path,
        ])?;
        Ok(())
    }
    let dir = tempfile::tempdir()?;
    let source = Cluster::start("memory", 1, 1, &[])?;
    source.leader(0).await?;
    prepare(&source.gateway(0)).await?;
    let file = dir.path().join("metastore.db");
    save(&source.gateway(0), &file)?;
    let etcd = Etcd::restored_from(&file)?;
    behaves(
        &etcd.endpoint(),
        "real etcd restored from MetaStore's snapshot",
    )
    .await?;
    let restored = Cluster::restored_from("rocksdb", 1, 1, &file)?;
    restored.leader(0).await?;
    behaves(
        &restored.gateway(0),
        "MetaStore restored from its own snapshot",
    )
    .await?;

    let etcd = Etcd::start()?;
    prepare(&etcd.endpoint()).await?;
    let file = dir.path().join("etcd.db");
    save(&etcd.endpoint(), &file)?;
    let restored = Cluster::restored_from("memory", 1, 1, &file)?;
    restored.leader(0).await?;
    behaves(
        &restored.gateway(0),
        "MetaStore restored from etcd's snapshot",
    )
    .await?;
    Ok(())
}

/// `--auth-token jwt,...`: a token signed by one member works through every gateway, after
/// every member restarted, until an auth change makes it old or its ttl passes.
#[tokio::test]
async fn jwt_tokens_work_everywhere_and_survive_restarts() -> Result<()> {
    let keys =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../storaged/src/auth/testdata");
    let spec = format!(
        "jwt,pub-key={},priv-key={},sign-method=RS256,ttl=4s",
        keys.join("jwt_rs256.pub").display(),
        keys.join("jwt_rs256.key").display()
    );
    let mut c = Cluster::start("rocksdb", 3, 2, &["--auth-token", &spec])?;
    c.leader(0).await?;
    let mut anon = c.client(0).await?;
    enable_auth(&mut anon).await?;
    let authenticate = |endpoint: String| async move {
        let c = Client::connect([endpoint], None).await?;
        let r = c
            .auth_client()
            .authenticate("root".into(), ROOT_PASSWORD.into())
            .await?;
        anyhow::Ok(r.token().to_string())
    };
    let token = authenticate(c.gateway(0)).await?;
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    token_get(&c.gateway(1), &token)
        .await
        .context("on the other gateway")?;
    for i in 0..3 {
        c.kill_member(i);
    }
    for i in 0..3 {
        c.start_member(i)?;
    }
    c.leader(1).await?;
    retry_until(
        "the token after every member restarted",
        Duration::from_secs(30),
        || {
            let (endpoint, token) = (c.gateway(1), token.clone());
            async move { token_get(&endpoint, &token).await.map(Some) }
        },
    )
    .await?;
    let e = token_get(&c.gateway(0), &format!("{token}x"))
        .await
        .err()
        .context("a forged JWT")?;
    assert!(format!("{e}").contains("invalid auth token"), "{e}");
    // An auth change: the token's revision is old now.
    let mut root = login(&c.gateway(0), "root").await?;
    root.role_add("another").await?;
    let e = token_get(&c.gateway(1), &token)
        .await
        .err()
        .context("an old JWT")?;
    assert!(
        format!("{e}").contains("revision of auth store is old"),
        "{e}"
    );
    let fresh = authenticate(c.gateway(1)).await?;
    token_get(&c.gateway(0), &fresh).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let e = token_get(&c.gateway(0), &fresh)
        .await
        .err()
        .context("an expired JWT")?;
    assert!(format!("{e}").contains("invalid auth token"), "{e}");
    Ok(())
}

/// A range of `k` with `token` in the request metadata, as clients send it.
async fn token_get(endpoint: &str, token: &str) -> Result<()> {
    use metastore_proto::etcdserverpb::RangeRequest;
    let mut kv = metastore_tests::connect_kv(endpoint).await?;
    let mut req = tonic::Request::new(RangeRequest {
        key: b"k".to_vec(),
        ..Default::default()
    });
    req.metadata_mut().insert("token", token.parse()?);
    match kv.range(req).await {
        Ok(_) => Ok(()),
        Err(s) => bail!("{:?}: {}", s.code(), s.message()),
    }
}

/// Used by the matrix: a put with options, as text.
pub async fn put(c: &mut Client, key: &str, options: Option<PutOptions>) -> String {
    outcome(c.put(key, "v", options).await, |_| String::new())
}
