//! etcd JSON gateway routes checked on MetaStore alone, against etcd's documented answers: the
//! etcd 3.5 routes the Debian etcd 3.4 of the differential tests does not serve (HashKV's own
//! `/v3/maintenance/hashkv`, `/v3/auth/status`, `/v3/maintenance/downgrade`), and on three
//! members the member list and `/v3/maintenance/transfer-leadership` moving the leader.

use anyhow::{Context, Result, ensure};
use metastore_proto::etcdserverpb::HashKvRequest;
use metastore_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use metastore_tests::{Cluster, Deployment, channel, matrix, retry_until};
use serde_json::{Value, json};
use std::time::Duration;

matrix!(hashkv_route, auth_status_route, downgrade_route);

/// An answer: status and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }

    /// The body of a 200 answer with the header's ids and term checked (decimal strings, not
    /// zero) and replaced by `"*"`.
    fn ok(&self) -> Result<Value> {
        ensure!(
            self.status == 200,
            "want 200, got {} {}",
            self.status,
            self.body
        );
        let mut v = self.json()?;
        if let Some(h) = v.get_mut("header").and_then(Value::as_object_mut) {
            for name in ["cluster_id", "member_id", "raft_term"] {
                let field = h.get_mut(name).with_context(|| format!("no {name}"))?;
                let n: u64 = field.as_str().context("a string")?.parse()?;
                ensure!(n != 0, "{name} 0");
                *field = json!("*");
            }
        }
        Ok(v)
    }

    /// The body of an error answer: etcd 3.5's grpc-gateway body, with HTTP `status`.
    fn error(&self, status: u16) -> Result<Value> {
        ensure!(
            self.status == status,
            "want {status}, got {} {}",
            self.status,
            self.body
        );
        self.json()
    }
}

/// etcd's unary error body.
fn etcd_error(text: &str, code: i64) -> Value {
    json!({"error": text, "message": text, "code": code})
}

/// A header as [`Answer::ok`] leaves it.
fn header(revision: i64) -> Value {
    json!({"cluster_id": "*", "member_id": "*", "revision": revision.to_string(),
        "raft_term": "*"})
}

async fn post(base: &str, path: &str, body: &str, token: &str) -> Result<Answer> {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .timeout(Duration::from_secs(20))
        .body(body.to_string());
    if !token.is_empty() {
        req = req.header("Authorization", token);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    Ok(Answer {
        status,
        body: resp.text().await?,
    })
}

/// The revision in the header of a 200 answer.
fn revision_of(a: &Answer) -> Result<i64> {
    let v = a.ok()?;
    Ok(v["header"]["revision"]
        .as_str()
        .context("revision")?
        .parse()?)
}

/// HashKV over JSON: the hash gRPC HashKV gives at the same revision, `compact_revision` -1
/// until a compaction, etcd's errors for compacted and future revisions.
async fn hashkv_route(d: Deployment) -> Result<()> {
    d.ready().await?;
    let base = d.endpoint();
    let put = |body: &'static str| post(&base, "/v3/kv/put", body, "");
    let r1 = revision_of(&put(r#"{"key":"aC9h","value":"MQ=="}"#).await?)?;
    let r2 = revision_of(&put(r#"{"key":"aC9i","value":"Mg=="}"#).await?)?;
    // Whichever member serves it, HashKV sees the puts this gateway acknowledged.
    let now = post(&base, "/v3/maintenance/hashkv", "{}", "")
        .await?
        .ok()?;
    let hash_now = now["hash"].as_u64().context("hash is a JSON number")?;
    assert_eq!(
        now,
        json!({"header": header(r2), "hash": hash_now, "compact_revision": "-1"})
    );

    let grpc = MaintenanceClient::new(channel(&base).await?);
    let grpc_hash = |revision| {
        let mut grpc = grpc.clone();
        async move {
            let r = grpc.hash_kv(HashKvRequest { revision }).await?.into_inner();
            Ok::<_, anyhow::Error>((r.hash, r.compact_revision))
        }
    };
    assert_eq!(grpc_hash(0).await?, (u32::try_from(hash_now)?, -1));
    let at_r1 = post(
        &base,
        "/v3/maintenance/hashkv",
        &format!(r#"{{"revision":"{r1}"}}"#),
        "",
    )
    .await?
    .ok()?;
    let (hash_r1, _) = grpc_hash(r1).await?;
    assert_eq!(
        at_r1,
        json!({"header": header(r2), "hash": hash_r1, "compact_revision": "-1"})
    );
    assert_ne!(u64::from(hash_r1), hash_now, "r1 and r2 hash differently");
    // The revision as a JSON number too.
    let again = post(
        &base,
        "/v3/maintenance/hashkv",
        &format!(r#"{{"revision":{r1}}}"#),
        "",
    )
    .await?
    .ok()?;
    assert_eq!(again, at_r1);

    // After a compaction at r1: compact_revision says so, r1 itself is compacted.
    let compacted = post(
        &base,
        "/v3/kv/compaction",
        &format!(r#"{{"revision":"{r1}","physical":true}}"#),
        "",
    )
    .await?;
    compacted.ok()?;
    let after = retry_until(
        "HashKV after the compaction",
        Duration::from_secs(10),
        || {
            let base = base.clone();
            async move {
                let v = post(&base, "/v3/maintenance/hashkv", "{}", "")
                    .await?
                    .ok()?;
                Ok((v["compact_revision"].as_str() == Some(r1.to_string().as_str())).then_some(v))
            }
        },
    )
    .await?;
    assert_eq!(
        after,
        json!({"header": header(r2), "hash": grpc_hash(0).await?.0, "compact_revision":
            r1.to_string()})
    );
    let old = post(
        &base,
        "/v3/maintenance/hashkv",
        &format!(r#"{{"revision":"{r1}"}}"#),
        "",
    )
    .await?;
    assert_eq!(
        old.error(400)?,
        etcd_error("etcdserver: mvcc: required revision has been compacted", 11)
    );
    let future = post(
        &base,
        "/v3/maintenance/hashkv",
        r#"{"revision":"1000"}"#,
        "",
    )
    .await?;
    assert_eq!(
        future.error(400)?,
        etcd_error(
            "etcdserver: mvcc: required revision is a future revision",
            11
        )
    );
    let get = reqwest::get(format!("{base}/v3/maintenance/hashkv")).await?;
    assert_eq!(get.status().as_u16(), 405);
    assert_eq!(get.text().await?, "Method Not Allowed\n");
    Ok(())
}

/// AuthStatus over JSON: `enabled` (omitted while false) and `authRevision`, which starts at
/// 1 and rises with every auth change but enabling; root only once auth is on.
async fn auth_status_route(d: Deployment) -> Result<()> {
    d.ready().await?;
    let base = d.endpoint();
    let status = |token: String| {
        let base = base.clone();
        async move { post(&base, "/v3/auth/status", "{}", &token).await }
    };
    assert_eq!(
        status(String::new()).await?.ok()?,
        json!({"header": header(1), "authRevision": "1"})
    );
    for (path, body) in [
        ("/v3/auth/user/add", r#"{"name":"root","password":"rpw"}"#),
        ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
        ("/v3/auth/user/add", r#"{"name":"u","password":"upw"}"#),
        ("/v3/auth/enable", "{}"),
    ] {
        post(&base, path, body, "").await?.ok()?;
    }
    let token = |name: &'static str, password: &'static str| {
        let base = base.clone();
        async move {
            let body = format!(r#"{{"name":"{name}","password":"{password}"}}"#);
            let a = post(&base, "/v3/auth/authenticate", &body, "").await?;
            Ok::<_, anyhow::Error>(a.ok()?["token"].as_str().context("token")?.to_string())
        }
    };
    let (root, user) = (token("root", "rpw").await?, token("u", "upw").await?);
    assert_eq!(
        status(String::new()).await?.error(400)?,
        etcd_error("etcdserver: user name is empty", 3)
    );
    assert_eq!(
        status("not-a-token".into()).await?.error(401)?,
        etcd_error("etcdserver: invalid auth token", 16)
    );
    assert_eq!(
        status(user).await?.error(403)?,
        etcd_error("etcdserver: permission denied", 7)
    );
    // Two users added and a role granted; enabling keeps the revision.
    assert_eq!(
        status(root.clone()).await?.ok()?,
        json!({"header": header(1), "enabled": true, "authRevision": "4"})
    );
    post(&base, "/v3/auth/disable", "{}", &root).await?.ok()?;
    assert_eq!(
        status(String::new()).await?.ok()?,
        json!({"header": header(1), "authRevision": "5"})
    );
    Ok(())
}

/// Downgrade over JSON (actions by name and by number): the cluster version in `version`,
/// etcd 3.5's errors, and the enabled target in Status `downgradeInfo`.
async fn downgrade_route(d: Deployment) -> Result<()> {
    d.ready().await?;
    let base = d.endpoint();
    let downgrade = |body: &'static str| post(&base, "/v3/maintenance/downgrade", body, "");
    let ok = json!({"header": header(1), "version": "3.4.0"});
    assert_eq!(
        downgrade(r#"{"action":"VALIDATE","version":"3.3"}"#)
            .await?
            .ok()?,
        ok
    );
    // VALIDATE is the default action.
    assert_eq!(downgrade(r#"{"version":"3.3.9"}"#).await?.ok()?, ok);
    assert_eq!(
        downgrade(r#"{"action":"VALIDATE","version":"three"}"#)
            .await?
            .error(400)?,
        etcd_error("etcdserver: wrong downgrade target version format", 3)
    );
    assert_eq!(
        downgrade(r#"{"action":0,"version":"3.2"}"#)
            .await?
            .error(400)?,
        etcd_error("etcdserver: invalid downgrade target version", 3)
    );
    assert_eq!(
        downgrade(r#"{"action":"CANCEL"}"#).await?.error(400)?,
        etcd_error("etcdserver: no inflight downgrade job", 9)
    );
    assert_eq!(
        downgrade(r#"{"action":"ENABLE","version":"3.3.5"}"#)
            .await?
            .ok()?,
        ok
    );
    assert_eq!(
        downgrade(r#"{"action":1,"version":"3.3"}"#)
            .await?
            .error(400)?,
        etcd_error("etcdserver: cluster has a downgrade job in progress", 9)
    );
    let info = retry_until("Status downgradeInfo", Duration::from_secs(10), || {
        let base = base.clone();
        async move {
            let v = post(&base, "/v3/maintenance/status", "{}", "")
                .await?
                .ok()?;
            Ok((v["downgradeInfo"] != json!({})).then_some(v["downgradeInfo"].clone()))
        }
    })
    .await?;
    assert_eq!(info, json!({"enabled": true, "targetVersion": "3.3.0"}));
    assert_eq!(downgrade(r#"{"action":2}"#).await?.ok()?, ok);
    assert_eq!(
        downgrade(r#"{"action":"CANCEL"}"#).await?.error(400)?,
        etcd_error("etcdserver: no inflight downgrade job", 9)
    );
    let bad = downgrade(r#"{"action":"SIDEGRADE"}"#).await?.error(400)?;
    assert_eq!(bad["code"], 3, "{bad}");
    Ok(())
}

#[tokio::test]
async fn transfer_leadership_memory() -> Result<()> {
    transfer_leadership("memory").await
}

#[tokio::test]
async fn transfer_leadership_rocksdb() -> Result<()> {
    transfer_leadership("rocksdb").await
}

/// The member id each gateway's member reports, in member order.
async fn member_ids(c: &Cluster) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for g in 0..c.members.len() {
        let v = post(&c.gateway(g), "/v3/maintenance/status", "{}", "")
            .await?
            .json()?;
        ids.push(
            v["header"]["member_id"]
                .as_str()
                .context("member_id")?
                .to_string(),
        );
    }
    Ok(ids)
}

/// Waits until every member's Status names `leader`.
async fn everyone_sees(c: &Cluster, leader: &str) -> Result<()> {
    retry_until(
        &format!("every member sees {leader} lead"),
        Duration::from_secs(10),
        move || async move {
            for g in 0..c.members.len() {
                let v = post(&c.gateway(g), "/v3/maintenance/status", "{}", "")
                    .await?
                    .json()?;
                if v["leader"] != leader {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await
}

/// Three members, a gateway in front of each: the JSON member list names them all with their
/// URLs; transfer-leadership (sent to any gateway: MetaStore forwards it to the leader) answers
/// `{}` once the target leads; a target that is no voter is a bad transferee.
async fn transfer_leadership(engine: &str) -> Result<()> {
    let c = Cluster::start(engine, 3, 3, &[])?;
    let first = c.leader(0).await?;
    let ids = member_ids(&c).await?;

    // The member list, once every gateway published its client URL.
    let want: Vec<Value> = (0..3)
        .map(|i| {
            let m = &c.members[i];
            json!({"ID": ids[i], "name": m.name,
                "peerURLs": [format!("{}://127.0.0.1:{}", c.internal_scheme, m.peer_port)],
                "clientURLs": [c.gateway(i)]})
        })
        .collect();
    let list = retry_until("every member's client URL", Duration::from_secs(20), || {
        let base = c.gateway(1);
        async move {
            let v = post(&base, "/v3/cluster/member/list", "{}", "")
                .await?
                .ok()?;
            let mut members = v["members"].as_array().context("members")?.clone();
            members.sort_by_key(|m| m["name"].as_str().map(str::to_string));
            let done = members.iter().all(|m| m.get("clientURLs").is_some());
            Ok(done.then_some((v, members)))
        }
    })
    .await?;
    assert_eq!(list.1, want);
    assert_eq!(list.0["header"]["revision"], Value::Null, "{}", list.0);

    // To a follower, asked through a gateway in front of the third member.
    let target = (first + 1) % 3;
    let via = (first + 2) % 3;
    let body = format!(r#"{{"targetID":"{}"}}"#, ids[target]);
    let moved = post(
        &c.gateway(via),
        "/v3/maintenance/transfer-leadership",
        &body,
        "",
    )
    .await?;
    assert_eq!((moved.status, moved.body.as_str()), (200, "{}"));
    let v = post(&c.gateway(target), "/v3/maintenance/status", "{}", "")
        .await?
        .json()?;
    assert_eq!(v["leader"], ids[target], "the target leads once answered");
    everyone_sees(&c, &ids[target]).await?;

    // Back, through the gateway of the new leader.
    let body = format!(r#"{{"targetID":"{}"}}"#, ids[first]);
    let back = post(
        &c.gateway(target),
        "/v3/maintenance/transfer-leadership",
        &body,
        "",
    )
    .await?;
    assert_eq!((back.status, back.body.as_str()), (200, "{}"));
    everyone_sees(&c, &ids[first]).await?;

    // A learner, an unknown id and no id are bad transferees; the leader stays.
    let added = post(
        &c.gateway(0),
        "/v3/cluster/member/add",
        &format!(
            r#"{{"peerURLs":["http://127.0.0.1:{}"],"isLearner":true}}"#,
            metastore_tests::free_port()?
        ),
        "",
    )
    .await?
    .ok()?;
    let learner = added["member"]["ID"].as_str().context("ID")?.to_string();
    assert_eq!(added["member"]["isLearner"], true, "{added}");
    for body in [
        format!(r#"{{"targetID":"{learner}"}}"#),
        r#"{"targetID":"1"}"#.to_string(),
        "{}".to_string(),
    ] {
        let refused = post(
            &c.gateway(0),
            "/v3/maintenance/transfer-leadership",
            &body,
            "",
        )
        .await?;
        assert_eq!(
            refused.error(400)?,
            etcd_error("etcdserver: bad leader transferee", 9),
            "{body}"
        );
    }
    let removed = post(
        &c.gateway(0),
        "/v3/cluster/member/remove",
        &format!(r#"{{"ID":"{learner}"}}"#),
        "",
    )
    .await?
    .ok()?;
    assert_eq!(removed["members"].as_array().map(Vec::len), Some(3));
    everyone_sees(&c, &ids[first]).await?;
    Ok(())
}
