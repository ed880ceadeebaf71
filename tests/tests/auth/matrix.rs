//! The permission matrix: users with different grants each try every request etcd checks;
//! the answers (ok or etcd's error) are listed as `user request: answer`, in order, for a
//! comparison with a real etcd.

use super::{login, outcome, password, put};
use anyhow::{Context, Result};
use etcd_client::{
    AlarmAction, AlarmType, Client, Compare, CompareOp, DeleteOptions, GetOptions, Permission,
    PutOptions, Txn, TxnOp, WatchOptions,
};
use std::time::Duration;

/// Users and their roles: `reader` reads `/app/`, `writer` reads and writes it, `wo` only
/// writes it, `fk` reads and writes from `/n` to the end of the keyspace, `span` reads
/// `[/app/a, /app/c)`, `nobody` has no role.
const USERS: [(&str, &[&str]); 7] = [
    ("root", &["root"]),
    ("reader", &["app-read"]),
    ("writer", &["app-rw"]),
    ("wo", &["app-wo"]),
    ("fk", &["from-n"]),
    ("span", &["a-to-c", "app-read-again"]),
    ("nobody", &[]),
];

/// The step whose answer differs from etcd 3.4.23 on purpose (docs/limitations.md).
pub const NESTED_TXN: &str = "txn nested put /other/";

async fn set_up(c: &mut Client) -> Result<()> {
    for (k, v) in [
        ("/app/a", "1"),
        ("/app/b", "1"),
        ("/other/x", "1"),
        ("/z", "1"),
    ] {
        c.put(k, v, None).await?;
    }
    let roles = [
        ("app-read", Permission::read("/app/").with_prefix()),
        ("app-rw", Permission::read_write("/app/").with_prefix()),
        ("app-wo", Permission::write("/app/").with_prefix()),
        ("from-n", Permission::read_write("/n").with_from_key()),
        (
            "a-to-c",
            Permission::read("/app/a").with_range_end("/app/c"),
        ),
        // Overlapping grants of one user add up.
        ("app-read-again", Permission::read("/app/b")),
    ];
    for (role, perm) in roles {
        c.role_add(role).await?;
        c.role_grant_permission(role, perm).await?;
    }
    for (user, roles) in USERS {
        c.user_add(user, password(user), None).await?;
        for role in roles {
            c.user_grant_role(user, *role).await?;
        }
    }
    c.auth_enable().await?;
    Ok(())
}

/// Runs the matrix against `endpoint` (a fresh store) and returns its answers.
pub async fn run(endpoint: &str) -> Result<Vec<String>> {
    let mut anon = Client::connect([endpoint], None).await?;
    set_up(&mut anon).await?;
    // Root's own password change in the matrix ends its tokens: this client logs in again.
    let options = etcd_client::ConnectOptions::new()
        .with_user("root", password("root"))
        .with_auto_token_refresh(true);
    let mut root = Client::connect([endpoint], Some(options)).await?;
    let mut answers = Vec::new();
    for (user, _) in USERS {
        // Root gives every user two leases: one on an /app/ key, one on an /other/ key.
        let on_app = root.lease_grant(600, None).await?.id();
        let on_other = root.lease_grant(600, None).await?.id();
        let lease = |id| Some(PutOptions::new().with_lease(id));
        root.put(format!("/app/lease-{user}"), "v", lease(on_app))
            .await?;
        root.put(format!("/other/lease-{user}"), "v", lease(on_other))
            .await?;
        let mut c = login(endpoint, user)
            .await
            .with_context(|| format!("login {user}"))?;
        for (what, answer) in requests(&mut c, user, on_app, on_other).await? {
            answers.push(format!("{user} {what}: {answer}"));
        }
    }
    answers.push(format!(
        "anonymous get: {}",
        outcome(anon.get("/app/a", None).await, |_| String::new())
    ));
    Ok(answers)
}

fn count(r: &etcd_client::GetResponse) -> String {
    format!("{} keys", r.kvs().len())
}

async fn requests(
    c: &mut Client,
    u: &str,
    on_app: i64,
    on_other: i64,
) -> Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    let get = |k: &str, o: Option<GetOptions>| {
        let mut c = c.clone();
        let k = k.to_string();
        async move { outcome(c.get(k, o).await, count) }
    };
    out.push(("get /app/a", get("/app/a", None).await));
    out.push(("get /app/b", get("/app/b", None).await));
    out.push(("get /other/x", get("/other/x", None).await));
    out.push((
        "get /app/ prefix",
        get("/app/", Some(GetOptions::new().with_prefix())).await,
    ));
    out.push((
        "get [/app/a, /app/c)",
        get("/app/a", Some(GetOptions::new().with_range("/app/c"))).await,
    ));
    out.push((
        "get [/app/a, /app/d)",
        get("/app/a", Some(GetOptions::new().with_range("/app/d"))).await,
    ));
    out.push((
        "get all keys",
        get("\0", Some(GetOptions::new().with_all_keys())).await,
    ));
    out.push((
        "get from /other/",
        get("/other/", Some(GetOptions::new().with_from_key())).await,
    ));
    out.push(("get /z", get("/z", None).await));
    out.push((
        "get /app/a serializable",
        get("/app/a", Some(GetOptions::new().with_serializable())).await,
    ));
    out.push((
        "get /app/a count only",
        get("/app/a", Some(GetOptions::new().with_count_only())).await,
    ));

    out.push(("put /app/u", put(c, &format!("/app/{u}"), None).await));
    out.push((
        "put /app/u prev_kv",
        put(
            c,
            &format!("/app/{u}"),
            Some(PutOptions::new().with_prev_key()),
        )
        .await,
    ));
    out.push(("put /other/u", put(c, &format!("/other/{u}"), None).await));
    out.push(("put /zz/u", put(c, &format!("/zz/{u}"), None).await));
    out.push((
        "put /app/u with the /other/ lease",
        put(
            c,
            &format!("/app/{u}-l"),
            Some(PutOptions::new().with_lease(on_other)),
        )
        .await,
    ));
    out.push((
        "put /app/u ignore value",
        put(
            c,
            &format!("/app/{u}"),
            Some(PutOptions::new().with_ignore_value()),
        )
        .await,
    ));

    let del = |k: String, o: Option<DeleteOptions>| {
        let mut c = c.clone();
        async move { outcome(c.delete(k, o).await, |r| format!("{} deleted", r.deleted())) }
    };
    out.push(("delete /app/u", del(format!("/app/{u}"), None).await));
    out.push((
        "delete /app/zz prefix prev_kv",
        del(
            "/app/zz".into(),
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await,
    ));
    out.push(("delete /other/u", del(format!("/other/{u}"), None).await));

    let txn = |t: Txn| {
        let mut c = c.clone();
        async move { outcome(c.txn(t).await, |r| format!("succeeded {}", r.succeeded())) }
    };
    let on_a = || Compare::version("/app/a", CompareOp::Greater, 0);
    let put_t = || TxnOp::put(format!("/app/t-{u}"), "v", None);
    out.push((
        "txn if /app/a then put",
        txn(Txn::new().when([on_a()]).and_then([put_t()])).await,
    ));
    out.push((
        "txn if /app/a then get",
        txn(Txn::new()
            .when([on_a()])
            .and_then([TxnOp::get("/app/a", None)]))
        .await,
    ));
    out.push((
        "txn if /other/x",
        txn(Txn::new().when([Compare::version("/other/x", CompareOp::Greater, 0)])).await,
    ));
    out.push((
        "txn else get /other/x",
        txn(Txn::new()
            .when([on_a()])
            .and_then([put_t()])
            .or_else([TxnOp::get("/other/x", None)]))
        .await,
    ));
    out.push((
        "txn else delete /other/x",
        txn(Txn::new().or_else([TxnOp::delete("/other/x", None)])).await,
    ));
    out.push((
        "txn nested put /other/",
        txn(Txn::new().and_then([TxnOp::txn(
            Txn::new().or_else([TxnOp::put("/other/n", "v", None)]),
        )]))
        .await,
    ));
    out.push((
        "txn compare range /app/",
        txn(Txn::new().when([Compare::version("/app/", CompareOp::Greater, 0).with_prefix()]))
            .await,
    ));

    out.push((
        "watch /app/ prefix",
        watch(c, "/app/", WatchOptions::new().with_prefix()).await?,
    ));
    out.push((
        "watch /other/x",
        watch(c, "/other/x", WatchOptions::new()).await?,
    ));
    out.push((
        "watch from /p",
        watch(c, "/p", WatchOptions::new().with_from_key()).await?,
    ));

    out.push((
        "lease grant",
        outcome(c.lease_grant(60, None).await, |_| String::new()),
    ));
    out.push((
        "lease revoke (/app/ key)",
        outcome(c.lease_revoke(on_app).await, |_| String::new()),
    ));
    out.push((
        "lease revoke (/other/ key)",
        outcome(c.lease_revoke(on_other).await, |_| String::new()),
    ));
    out.push(("leases", outcome(c.leases().await, |_| String::new())));

    out.push((
        "compact 2",
        outcome(c.compact(2, None).await, |_| String::new()),
    ));
    out.push((
        "alarm list",
        outcome(
            c.alarm(AlarmAction::Get, AlarmType::None, None).await,
            |r| format!("{} alarms", r.alarms().len()),
        ),
    ));
    out.push(("status", outcome(c.status().await, |_| String::new())));
    out.push((
        "defragment",
        outcome(c.defragment().await, |_| String::new()),
    ));
    out.push(("hash", outcome(c.hash().await, |_| String::new())));
    out.push(("hash kv", outcome(c.hash_kv(0).await, |_| String::new())));
    out.push(("snapshot", snapshot(c).await));
    let members = c.member_list().await;
    out.push((
        "member list",
        outcome(members.as_ref().map_err(clone_err), |_| String::new()),
    ));
    if let Ok(m) = members {
        let me = &m.members()[0];
        out.push((
            "member update (same urls)",
            outcome(
                c.member_update(me.id(), me.peer_urls().to_vec()).await,
                |_| String::new(),
            ),
        ));
    }

    out.push((
        "user get self",
        outcome(c.user_get(u).await, |r| format!("{:?}", r.roles())),
    ));
    out.push((
        "user get writer",
        outcome(c.user_get("writer").await, |r| format!("{:?}", r.roles())),
    ));
    out.push((
        "user list",
        outcome(c.user_list().await, |r| format!("{:?}", r.users())),
    ));
    out.push((
        "role list",
        outcome(c.role_list().await, |r| format!("{:?}", r.roles())),
    ));
    out.push((
        "role get app-read",
        outcome(c.role_get("app-read").await, |r| {
            format!("{} perms", r.permissions().len())
        }),
    ));
    out.push((
        "role get app-rw",
        outcome(c.role_get("app-rw").await, |r| {
            format!("{} perms", r.permissions().len())
        }),
    ));
    out.push((
        "role add",
        outcome(c.role_add(format!("new-{u}")).await, |_| String::new()),
    ));
    out.push((
        "user add",
        outcome(c.user_add(format!("new-{u}"), "pw", None).await, |_| {
            String::new()
        }),
    ));
    out.push((
        "auth enable",
        outcome(c.auth_enable().await, |_| String::new()),
    ));

    let locked = tokio::time::timeout(
        Duration::from_secs(10),
        c.lock(format!("/app/lock-{u}"), None),
    )
    .await
    .context("lock hangs")?;
    let key = locked.as_ref().ok().map(|l| l.key().to_vec());
    out.push(("lock /app/lock-u", outcome(locked, |_| String::new())));
    if let Some(key) = key {
        out.push(("unlock", outcome(c.unlock(key).await, |_| String::new())));
    }
    // Last: a new password ends the user's tokens (etcd's simple tokens too).
    out.push((
        "user change own password",
        outcome(c.user_change_password(u, password(u)).await, |_| {
            String::new()
        }),
    ));
    out.push((
        "get after the password change",
        outcome(c.get("/app/a", None).await, count),
    ));
    Ok(out)
}

fn clone_err(e: &etcd_client::Error) -> etcd_client::Error {
    match e {
        etcd_client::Error::GRpcStatus(s) => etcd_client::Error::GRpcStatus(s.clone()),
        other => etcd_client::Error::InvalidArgs(other.to_string()),
    }
}

/// A watch's first answer: created, or canceled with etcd's reason.
async fn watch(c: &mut Client, key: &str, options: WatchOptions) -> Result<String> {
    let mut stream = match c.watch(key, Some(options)).await {
        Ok(s) => s,
        Err(e) => return Ok(outcome::<()>(Err(e), |_| String::new())),
    };
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .context("no answer to a watch")?;
    Ok(match first {
        Ok(Some(r)) if r.canceled() => format!("canceled: {}", r.cancel_reason()),
        Ok(Some(r)) if r.created() => "created".into(),
        Ok(Some(r)) => format!("unexpected {r:?}"),
        Ok(None) => "stream ended".into(),
        Err(e) => outcome::<()>(Err(e), |_| String::new()),
    })
}

/// A snapshot's first message (or the error): root gets the stream going.
async fn snapshot(c: &mut Client) -> String {
    let first = match c.snapshot().await {
        Ok(mut s) => s.message().await.map(|_| ()),
        Err(e) => Err(e),
    };
    outcome(first, |_| String::new())
}
