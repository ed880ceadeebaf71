//! MetaStore's REST API (`/api/v1/...`) through real processes with a plain HTTP client, on
//! every engine and topology: key round trips (text, base64, keys with slashes), data crossing
//! between REST, etcd gRPC and etcd's JSON gateway, `If-Match` compare-and-swap, transactions,
//! leases, watches as Server-Sent Events resumed with `Last-Event-ID`, problem+json errors,
//! auth tokens, and the OpenAPI document (checked in, served, validated, every operation
//! routed).

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use etcd_client::{Client, CompactionOptions, GetOptions, Txn, TxnOp};
use futures::StreamExt;
use metastore_tests::{Case, Deployment, Topology, grpc_status, matrix};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use std::time::Duration;

matrix!(
    kv_round_trips,
    cas_txn_and_errors,
    leases,
    sse_watch,
    auth_tokens,
    json_gateway_writes_and_past_lists
);

/// A REST client of one gateway.
struct Rest {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// An answer: status, content type and body.
struct Answer {
    status: StatusCode,
    content_type: String,
    etag: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }

    /// The body, which must be a problem with `status`.
    fn problem(&self, status: u16) -> Result<Value> {
        ensure!(
            self.status.as_u16() == status,
            "want {status}, got {} {}",
            self.status,
            self.body
        );
        ensure!(
            self.content_type == "application/problem+json",
            "content type {}",
            self.content_type
        );
        let p = self.json()?;
        ensure!(p["type"] == "about:blank", "{p}");
        ensure!(p["status"] == status, "{p}");
        let reason = self.status.canonical_reason().unwrap_or_default();
        ensure!(p["title"] == reason, "{p}");
        ensure!(p["detail"].is_string(), "{p}");
        Ok(p)
    }

    /// The body, which must be a 200 JSON answer.
    fn ok(&self) -> Result<Value> {
        ensure!(
            self.status == StatusCode::OK,
            "want 200, got {} {}",
            self.status,
            self.body
        );
        ensure!(
            self.content_type == "application/json",
            "{}",
            self.content_type
        );
        self.json()
    }
}

impl Rest {
    fn new(d: &Deployment) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: d.endpoint(),
            token: None,
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(20));
        if let Some(token) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        req
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Answer> {
        let resp = req.send().await?;
        let status = resp.status();
        let text = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = text(header::CONTENT_TYPE).unwrap_or_default();
        let etag = text(header::ETAG);
        let body = resp.text().await?;
        Ok(Answer {
            status,
            content_type,
            etag,
            body,
        })
    }

    async fn get(&self, path: &str) -> Result<Answer> {
        self.send(self.request(Method::GET, path)).await
    }

    async fn put(&self, path: &str, body: &str) -> Result<Answer> {
        self.send(self.request(Method::PUT, path).body(body.to_string()))
            .await
    }

    async fn put_if(&self, path: &str, body: &str, if_match: &str) -> Result<Answer> {
        let req = self.request(Method::PUT, path).body(body.to_string());
        self.send(req.header(header::IF_MATCH, if_match)).await
    }

    async fn delete(&self, path: &str) -> Result<Answer> {
        self.send(self.request(Method::DELETE, path)).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Answer> {
        let req = self
            .request(Method::POST, path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.send(req).await
    }
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// `text` percent-encoded for a URL path segment or query value.
fn esc(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn kv_round_trips(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    let rest = Rest::new(&d);

    // Put and get: readable JSON, ETag of the mod_revision.
    let put = rest.put("/api/v1/kv/foo", "bar").await?.ok()?;
    let rev = put["revision"].as_i64().context("revision")?;
    let got = rest.get("/api/v1/kv/foo").await?;
    assert_eq!(got.etag.as_deref(), Some(format!("\"{rev}\"").as_str()));
    assert_eq!(
        got.ok()?,
        json!({"key": "foo", "value": "bar", "create_revision": rev, "mod_revision": rev,
            "version": 1, "lease": "0"}),
        "{}",
        d.case
    );

    // Keys with slashes, raw and percent-encoded; read back over gRPC.
    rest.put("/api/v1/kv/app/conf/x", "v1").await?.ok()?;
    rest.put("/api/v1/kv/app/conf/y", "v2").await?.ok()?;
    rest.put(&format!("/api/v1/kv/{}", esc("/abs/key")), "slash")
        .await?
        .ok()?;
    let got = rest.get("/api/v1/kv/app/conf/x").await?.ok()?;
    assert_eq!(
        (got["key"].as_str(), got["value"].as_str()),
        (Some("app/conf/x"), Some("v1"))
    );
    let grpc = c.get("/abs/key", None).await?;
    assert_eq!(grpc.kvs().first().map(|kv| kv.value()), Some(&b"slash"[..]));

    // Listing by prefix, with limit; the empty prefix lists every key.
    let list = rest.get("/api/v1/kv?prefix=app/").await?.ok()?;
    assert_eq!(list["count"], 2);
    assert_eq!(list["more"], false);
    assert_eq!(list["kvs"][1]["key"], "app/conf/y");
    let limited = rest.get("/api/v1/kv?prefix=app/&limit=1").await?.ok()?;
    assert_eq!(
        (limited["count"].as_i64(), limited["more"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(limited["kvs"].as_array().map(Vec::len), Some(1));
    let all = rest.get("/api/v1/kv").await?.ok()?;
    assert_eq!(all["count"], 4);
    assert!(all["revision"].as_i64() >= Some(rev));

    // Reads at an old revision.
    rest.put("/api/v1/kv/foo", "baz").await?.ok()?;
    let old = rest
        .get(&format!("/api/v1/kv/foo?revision={rev}"))
        .await?
        .ok()?;
    assert_eq!(old["value"], "bar");

    // Base64: binary key and value; the key percent-encoded in the path.
    let (bkey, bval) = (b"\xff\x01bin".to_vec(), b"\x00\xfe".to_vec());
    let path = format!("/api/v1/kv/{}?encoding=base64", esc(&b64(&bkey)));
    rest.put(&path, &b64(&bval)).await?.ok()?;
    let got = rest.get(&path).await?.ok()?;
    assert_eq!(got["key"].as_str(), Some(b64(&bkey).as_str()));
    assert_eq!(got["value"].as_str(), Some(b64(&bval).as_str()));
    let grpc = c.get(bkey.clone(), None).await?;
    assert_eq!(grpc.kvs().first().map(|kv| kv.value()), Some(&bval[..]));
    // The same key in text is refused, not mangled.
    let listed = rest.get("/api/v1/kv").await?;
    listed.problem(406)?;

    // Written over gRPC, read over REST.
    c.put("grpc/k", "from-grpc", None).await?;
    let got = rest.get("/api/v1/kv/grpc/k").await?.ok()?;
    assert_eq!(got["value"], "from-grpc");

    // Written over REST, read over etcd's JSON gateway.
    let range = rest
        .post("/v3/kv/range", json!({"key": b64(b"app/conf/y")}))
        .await?;
    assert_eq!(range.status, StatusCode::OK, "{}", range.body);
    let range = range.json()?;
    assert_eq!(range["kvs"][0]["value"].as_str(), Some(b64(b"v2").as_str()));

    // POST with a form, and with JSON.
    let form = rest
        .request(Method::POST, "/api/v1/kv")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("key={}&value={}", esc("form/k"), esc("a b&c")));
    rest.send(form).await?.ok()?;
    let grpc = c.get("form/k", None).await?;
    assert_eq!(grpc.kvs().first().map(|kv| kv.value()), Some(&b"a b&c"[..]));
    rest.post("/api/v1/kv", json!({"key": "json/k", "value": "jv"}))
        .await?
        .ok()?;
    assert_eq!(rest.get("/api/v1/kv/json/k").await?.ok()?["value"], "jv");

    // Delete one key, then a prefix.
    let del = rest.delete("/api/v1/kv/json/k").await?.ok()?;
    assert_eq!(del["deleted"], 1);
    let del = rest.delete("/api/v1/kv/app/?prefix=true").await?.ok()?;
    assert_eq!(del["deleted"], 2);
    let grpc = c.get("app/", Some(GetOptions::new().with_prefix())).await?;
    assert_eq!(grpc.count(), 0);
    rest.get("/api/v1/kv/json/k").await?.problem(404)?;
    Ok(())
}

/// The revision in the header of an etcd JSON gateway answer (a string there).
fn header_revision(answer: &Answer) -> Result<i64> {
    ensure!(
        answer.status == StatusCode::OK,
        "{} {}",
        answer.status,
        answer.body
    );
    let v = answer.json()?;
    let rev = v["header"]["revision"]
        .as_str()
        .context("header revision")?;
    Ok(rev.parse()?)
}

/// Keys written over etcd's JSON gateway (`/v3/kv/put`, base64) read back over REST, in text
/// and in base64; a REST list by prefix at a past `?revision=` shows the values of then.
async fn json_gateway_writes_and_past_lists(d: Deployment) -> Result<()> {
    d.ready().await?;
    let rest = Rest::new(&d);
    let put = |key: &[u8], value: &[u8]| {
        rest.post("/v3/kv/put", json!({"key": b64(key), "value": b64(value)}))
    };
    let r1 = header_revision(&put(b"jg/a", b"one").await?)?;
    let r2 = header_revision(&put(b"jg/b", b"two").await?)?;
    assert_eq!(r2, r1 + 1);

    let got = rest.get("/api/v1/kv/jg/a").await?;
    assert_eq!(got.etag.as_deref(), Some(format!("\"{r1}\"").as_str()));
    assert_eq!(
        got.ok()?,
        json!({"key": "jg/a", "value": "one", "create_revision": r1, "mod_revision": r1,
            "version": 1, "lease": "0"})
    );
    // A binary value: refused in text, exact in base64.
    let r3 = header_revision(&put(b"jb/k", b"\x00\xffz").await?)?;
    rest.get("/api/v1/kv/jb/k").await?.problem(406)?;
    let got = rest
        .get(&format!(
            "/api/v1/kv/{}?encoding=base64",
            esc(&b64(b"jb/k"))
        ))
        .await?
        .ok()?;
    assert_eq!(
        got,
        json!({"key": b64(b"jb/k"), "value": "AP96", "create_revision": r3,
            "mod_revision": r3, "version": 1, "lease": "0"})
    );

    // Change the prefix over the JSON gateway: overwrite a, delete b, add c.
    let r4 = header_revision(&put(b"jg/a", b"uno").await?)?;
    let del = rest
        .post("/v3/kv/deleterange", json!({"key": b64(b"jg/b")}))
        .await?;
    let r5 = header_revision(&del)?;
    assert_eq!(del.json()?["deleted"], "1", "{}", del.body);
    let r6 = header_revision(&put(b"jg/c", b"three").await?)?;
    assert_eq!((r4, r5, r6), (r3 + 1, r3 + 2, r3 + 3));

    let kv = |key: &str, value: &str, create: i64, modified: i64, version: i64| {
        json!({"key": key, "value": value, "create_revision": create,
            "mod_revision": modified, "version": version, "lease": "0"})
    };
    let now = rest.get("/api/v1/kv?prefix=jg/").await?.ok()?;
    assert_eq!(
        now,
        json!({"revision": r6, "count": 2, "more": false,
            "kvs": [kv("jg/a", "uno", r1, r4, 2), kv("jg/c", "three", r6, r6, 1)]})
    );
    // At r2: a and b as first written. The header's revision is the store's (etcd's Range).
    let then = rest
        .get(&format!("/api/v1/kv?prefix=jg/&revision={r2}"))
        .await?
        .ok()?;
    assert_eq!(
        then,
        json!({"revision": r6, "count": 2, "more": false,
            "kvs": [kv("jg/a", "one", r1, r1, 1), kv("jg/b", "two", r2, r2, 1)]})
    );
    // At r1 only a existed; at r4 a was overwritten and b still there; limit applies too.
    let rest = &rest;
    let at = |rev: i64, limit: i64| async move {
        rest.get(&format!(
            "/api/v1/kv?prefix=jg/&revision={rev}&limit={limit}"
        ))
        .await
    };
    assert_eq!(
        at(r1, 0).await?.ok()?["kvs"],
        json!([kv("jg/a", "one", r1, r1, 1)])
    );
    let limited = at(r4, 1).await?.ok()?;
    assert_eq!(
        limited,
        json!({"revision": r6, "count": 2, "more": true,
            "kvs": [kv("jg/a", "uno", r1, r4, 2)]})
    );
    // The same list in base64.
    let b = rest
        .get(&format!(
            "/api/v1/kv?prefix={}&revision={r2}&encoding=base64",
            esc(&b64(b"jg/"))
        ))
        .await?
        .ok()?;
    let values: Vec<&str> = b["kvs"]
        .as_array()
        .context("kvs")?
        .iter()
        .filter_map(|kv| kv["value"].as_str())
        .collect();
    assert_eq!(values, [b64(b"one"), b64(b"two")]);
    Ok(())
}

async fn cas_txn_and_errors(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    let rest = Rest::new(&d);

    // If-Match "0": create only.
    let created = rest.put_if("/api/v1/kv/cas", "1", "\"0\"").await?.ok()?;
    let rev = created["revision"].as_i64().context("revision")?;
    let again = rest
        .put_if("/api/v1/kv/cas", "x", "0")
        .await?
        .problem(412)?;
    assert_eq!(
        again["detail"],
        format!("If-Match \"0\" failed: the key's mod_revision is {rev}")
    );
    // The current ETag wins once; the stale one then fails and changes nothing.
    let next = rest
        .put_if("/api/v1/kv/cas", "2", &format!("\"{rev}\""))
        .await?
        .ok()?;
    let rev2 = next["revision"].as_i64().context("revision")?;
    rest.put_if("/api/v1/kv/cas", "3", &format!("\"{rev}\""))
        .await?
        .problem(412)?;
    let grpc = c.get("cas", None).await?;
    assert_eq!(grpc.kvs().first().map(|kv| kv.value()), Some(&b"2"[..]));
    // A tag that is no revision can match nothing.
    rest.put_if("/api/v1/kv/cas", "4", "\"abc\"")
        .await?
        .problem(412)?;
    // Conditional delete.
    let del = rest
        .request(Method::DELETE, "/api/v1/kv/cas")
        .header(header::IF_MATCH, format!("\"{rev}\""));
    rest.send(del).await?.problem(412)?;
    let del = rest
        .request(Method::DELETE, "/api/v1/kv/cas")
        .header(header::IF_MATCH, format!("\"{rev2}\""));
    assert_eq!(rest.send(del).await?.ok()?["deleted"], 1);

    // A transaction: both writes in one revision, then the failure branch.
    let txn = json!({
        "compare": [{"key": "t/a", "target": "version", "result": "=", "value": 0}],
        "success": [{"put": {"key": "t/a", "value": "1"}}, {"put": {"key": "t/b", "value": "2"}},
            {"get": {"key": "t/", "prefix": true}}],
        "failure": [{"get": {"key": "t/a"}}]
    });
    let won = rest.post("/api/v1/txn", txn.clone()).await?.ok()?;
    let r = won["revision"].as_i64().context("revision")?;
    assert_eq!(won["succeeded"], true);
    assert_eq!(won["results"][0], json!({"put": {"revision": r}}));
    assert_eq!(won["results"][2]["get"]["count"], 2);
    let a = c.get("t/a", None).await?;
    let b = c.get("t/b", None).await?;
    let revs: Vec<i64> = [a, b]
        .iter()
        .filter_map(|g| g.kvs().first().map(|kv| kv.mod_revision()))
        .collect();
    assert_eq!(revs, [r, r]);
    let lost = rest.post("/api/v1/txn", txn).await?.ok()?;
    assert_eq!(lost["succeeded"], false);
    assert_eq!(lost["results"][0]["get"]["kvs"][0]["value"], "1");
    let by_value = json!({
        "compare": [{"key": "t/b", "target": "value", "result": "=", "value": "2"},
            {"key": "t/b", "target": "mod_revision", "result": "<", "value": r + 1}],
        "success": [{"delete": {"key": "t/", "prefix": true}}]
    });
    let deleted = rest.post("/api/v1/txn", by_value).await?.ok()?;
    assert_eq!(deleted["results"][0], json!({"delete": {"deleted": 2}}));

    // Problems: missing key, bad base64, bad parameters, bad JSON, etcd's own errors.
    let missing = rest.get("/api/v1/kv/nope").await?.problem(404)?;
    assert_eq!(
        missing,
        json!({"type": "about:blank", "title": "Not Found", "status": 404,
            "detail": "key not found: nope"})
    );
    let bad = rest
        .get("/api/v1/kv/a?encoding=base64")
        .await?
        .problem(400)?;
    assert!(
        bad["detail"].as_str().is_some_and(|t| t.contains("base64")),
        "{bad}"
    );
    rest.put("/api/v1/kv/aw==?encoding=base64", "%%%")
        .await?
        .problem(400)?;
    rest.get("/api/v1/kv/a?revision=abc").await?.problem(400)?;
    rest.post("/api/v1/txn", json!({"compare": 1}))
        .await?
        .problem(400)?;
    let future = c
        .get("foo", Some(GetOptions::new().with_revision(1_000_000)))
        .await
        .expect_err("a future revision");
    let (code, text) = grpc_status(&future);
    let p = rest.get("/api/v1/kv/foo?revision=1000000").await?;
    let p = p.problem(400)?;
    assert_eq!(
        (p["detail"].as_str(), p["grpc_code"].as_i64()),
        (Some(text.as_str()), Some(code as i64))
    );
    // The etcd limits are the etcd services' own: an empty key is refused with etcd's text.
    let empty = rest
        .post("/api/v1/kv", json!({"key": "", "value": "v"}))
        .await?;
    let p = empty.problem(400)?;
    assert_eq!(p["detail"], "etcdserver: key is not provided");
    Ok(())
}

async fn leases(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    let rest = Rest::new(&d);
    let granted = rest
        .post("/api/v1/leases", json!({"ttl": 60}))
        .await?
        .ok()?;
    let id = granted["id"]
        .as_str()
        .context("lease ids are strings")?
        .to_string();
    let id_num: i64 = id.parse()?;
    assert_eq!(granted["ttl"], 60);

    // A key on the lease, seen the same over gRPC.
    rest.put(&format!("/api/v1/kv/l/k?lease={id}"), "v")
        .await?
        .ok()?;
    let got = rest.get("/api/v1/kv/l/k").await?.ok()?;
    assert_eq!(got["lease"].as_str(), Some(id.as_str()));
    let grpc = c.get("l/k", None).await?;
    assert_eq!(grpc.kvs().first().map(|kv| kv.lease()), Some(id_num));

    let info = rest.get(&format!("/api/v1/leases/{id}")).await?.ok()?;
    assert_eq!(
        (info["granted_ttl"].as_i64(), info["keys"].clone()),
        (Some(60), json!(["l/k"]))
    );
    let ttl = info["ttl"].as_i64().context("ttl")?;
    assert!(ttl > 0 && ttl <= 60, "{info}");
    let hex = format!("0x{id_num:x}");
    assert_eq!(
        rest.get(&format!("/api/v1/leases/{hex}")).await?.ok()?["id"],
        id
    );
    let list = rest.get("/api/v1/leases").await?.ok()?;
    let ids: Vec<&str> = list["leases"]
        .as_array()
        .context("leases")?
        .iter()
        .filter_map(|l| l["id"].as_str())
        .collect();
    assert!(ids.contains(&id.as_str()), "{list}");
    let renewed = rest
        .send(rest.request(Method::POST, &format!("/api/v1/leases/{id}/keepalive")))
        .await?
        .ok()?;
    assert_eq!(renewed, json!({"id": id, "ttl": 60}));

    // An id given as a JSON number.
    let chosen = rest
        .post("/api/v1/leases", json!({"ttl": 30, "id": 4242}))
        .await?
        .ok()?;
    assert_eq!(chosen["id"], "4242");

    // Revoke deletes the key; the lease is gone after.
    rest.delete(&format!("/api/v1/leases/{id}")).await?.ok()?;
    rest.get("/api/v1/kv/l/k").await?.problem(404)?;
    rest.get(&format!("/api/v1/leases/{id}"))
        .await?
        .problem(404)?;
    rest.send(rest.request(Method::POST, &format!("/api/v1/leases/{id}/keepalive")))
        .await?
        .problem(404)?;
    let twice = rest
        .delete(&format!("/api/v1/leases/{id}"))
        .await?
        .problem(404)?;
    let (code, text) = match c.lease_revoke(id_num).await {
        Err(e) => grpc_status(&e),
        Ok(_) => bail!("revoked twice"),
    };
    assert_eq!(twice["detail"].as_str(), Some(text.as_str()));
    assert_eq!(twice["grpc_code"].as_i64(), Some(code as i64));
    rest.get("/api/v1/leases/not-a-number")
        .await?
        .problem(400)?;
    Ok(())
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
struct SseEvent {
    event: String,
    data: Value,
    id: Option<String>,
}

/// The events of an SSE answer, read as they come.
struct Events {
    body: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buf: String,
}

impl Events {
    async fn open(rest: &Rest, path: &str, last_event_id: Option<i64>) -> Result<Self> {
        let mut req = rest
            .http
            .get(format!("{}{path}", rest.base))
            .header(header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        if let Some(token) = &rest.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let resp = req.send().await?;
        ensure!(resp.status() == StatusCode::OK, "{}", resp.status());
        let ct = resp.headers().get(header::CONTENT_TYPE).cloned();
        ensure!(
            ct.as_ref().and_then(|v| v.to_str().ok()) == Some("text/event-stream"),
            "{ct:?}"
        );
        Ok(Self {
            body: resp.bytes_stream().map(|b| b.map(|b| b.to_vec())).boxed(),
            buf: String::new(),
        })
    }

    /// The next event (keep-alive comments skipped); None when the stream ended.
    async fn next(&mut self) -> Result<Option<SseEvent>> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut data, mut id) = (String::new(), String::new(), None);
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value).to_string();
                    match field {
                        "event" => event = value,
                        "data" => data.push_str(&value),
                        "id" => id = Some(value),
                        _ => {}
                    }
                }
                if event.is_empty() && data.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data).context("event data")?;
                return Ok(Some(SseEvent { event, data, id }));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                .await
                .context("no event within 10 s")?;
            match chunk {
                Some(bytes) => self.buf.push_str(std::str::from_utf8(&bytes?)?),
                None => return Ok(None),
            }
        }
    }

    /// The next `n` events as `(event, key, id)`.
    async fn take(&mut self, n: usize) -> Result<Vec<(String, String, Option<String>)>> {
        let mut out = Vec::new();
        while out.len() < n {
            let e = self.next().await?.context("stream ended")?;
            let key = e.data["key"].as_str().unwrap_or_default().to_string();
            out.push((e.event, key, e.id));
        }
        Ok(out)
    }
}

fn ev(event: &str, key: &str, id: Option<i64>) -> (String, String, Option<String>) {
    (event.into(), key.into(), id.map(|r| r.to_string()))
}

async fn sse_watch(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    let rest = Rest::new(&d);
    let mut live = Events::open(&rest, "/api/v1/watch/w/?prefix=true", None).await?;
    let rev = |a: Answer| -> Result<i64> { a.ok()?["revision"].as_i64().context("revision") };
    let r1 = rev(rest.put("/api/v1/kv/w/a", "1").await?)?;
    let r2 = rev(rest.put("/api/v1/kv/w/b", "2").await?)?;
    let r3 = rev(rest.delete("/api/v1/kv/w/a").await?)?;
    // Two events in one revision: the id is on the second only.
    let txn = Txn::new().and_then([TxnOp::put("w/c", "3", None), TxnOp::put("w/d", "4", None)]);
    let r4 = c
        .txn(txn)
        .await?
        .header()
        .map(|h| h.revision())
        .context("rev")?;
    let r5 = rev(rest.put("/api/v1/kv/w/e", "5").await?)?;
    let want = vec![
        ev("put", "w/a", Some(r1)),
        ev("put", "w/b", Some(r2)),
        ev("delete", "w/a", Some(r3)),
        ev("put", "w/c", None),
        ev("put", "w/d", Some(r4)),
        ev("put", "w/e", Some(r5)),
    ];
    assert_eq!(live.take(6).await.context("live")?, want, "{}", d.case);
    drop(live);

    // Resuming after r2 gets every later revision once, then what comes next.
    let mut resumed = Events::open(&rest, "/api/v1/watch/w/?prefix=true", Some(r2)).await?;
    assert_eq!(resumed.take(4).await.context("resumed")?, want[2..]);
    let r6 = rev(rest.put("/api/v1/kv/w/f", "6").await?)?;
    let next = resumed
        .next()
        .await
        .context("after resume")?
        .context("event")?;
    assert_eq!(next.id, Some(r6.to_string()));
    assert_eq!(
        next.data,
        json!({"key": "w/f", "value": "6", "create_revision": r6, "mod_revision": r6,
            "version": 1, "lease": "0"})
    );
    // Resuming inside a revision is impossible: after r3, the whole txn comes again.
    let mut mid = Events::open(&rest, "/api/v1/watch/w/?prefix=true", Some(r3)).await?;
    assert_eq!(mid.take(2).await.context("mid")?, want[3..5]);
    // Every key, from a start revision; one key.
    let path = format!("/api/v1/watch?start_revision={r5}");
    let mut all = Events::open(&rest, &path, None).await?;
    assert_eq!(
        all.take(1).await.context("all")?,
        [ev("put", "w/e", Some(r5))]
    );
    let path = format!("/api/v1/watch/w/b?start_revision={r1}");
    let mut one = Events::open(&rest, &path, None).await?;
    assert_eq!(
        one.take(1).await.context("one")?,
        [ev("put", "w/b", Some(r2))]
    );

    // A compacted start: one error event with etcd's text, then the end.
    c.compact(r5, Some(CompactionOptions::new().with_physical()))
        .await?;
    let mut old = Events::open(&rest, "/api/v1/watch/w/?prefix=true", Some(r1)).await?;
    let e = old
        .next()
        .await
        .context("compacted")?
        .context("error event")?;
    assert_eq!(e.event, "error");
    assert_eq!(
        e.data["detail"],
        "mvcc: required revision has been compacted"
    );
    assert_eq!(e.data["compact_revision"].as_i64(), Some(r5));
    assert_eq!(e.data["status"], 400);
    assert_eq!(
        old.next().await.context("end")?,
        None,
        "the stream ends after the error"
    );
    Ok(())
}

async fn auth_tokens(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    let mut rest = Rest::new(&d);
    rest.put("/api/v1/kv/secret", "s").await?.ok()?;
    // Before auth is on, there is no token to get.
    let off = rest
        .post(
            "/api/v1/auth/token",
            json!({"name": "root", "password": "pw"}),
        )
        .await?;
    ensure!(off.status.is_client_error(), "{}", off.body);
    c.user_add("root", "root-pw", None).await?;
    c.user_grant_role("root", "root").await?;
    c.auth_enable().await?;

    // Without a token: etcd's own error, as an anonymous gRPC client gets it.
    let mut anon = Client::connect([d.endpoint()], None).await?;
    let (code, text) = match anon.get("secret", None).await {
        Err(e) => grpc_status(&e),
        Ok(_) => bail!("read without a token"),
    };
    let denied = rest.get("/api/v1/kv/secret").await?;
    ensure!(denied.status.is_client_error(), "{}", denied.body);
    let p = denied.problem(denied.status.as_u16())?;
    assert_eq!(p["detail"].as_str(), Some(text.as_str()));
    assert_eq!(p["grpc_code"].as_i64(), Some(code as i64));

    let wrong = rest
        .post(
            "/api/v1/auth/token",
            json!({"name": "root", "password": "nope"}),
        )
        .await?;
    let p = wrong.problem(wrong.status.as_u16())?;
    assert_eq!(
        p["detail"],
        "etcdserver: authentication failed, invalid user ID or password"
    );

    let token = rest
        .post(
            "/api/v1/auth/token",
            json!({"name": "root", "password": "root-pw"}),
        )
        .await?
        .ok()?;
    let token = token["token"].as_str().context("token")?.to_string();
    rest.token = Some(token.clone());
    assert_eq!(rest.get("/api/v1/kv/secret").await?.ok()?["value"], "s");
    rest.put("/api/v1/kv/secret", "t").await?.ok()?;
    // The raw token works too.
    let raw = rest
        .http
        .get(format!("{}/api/v1/kv/secret", rest.base))
        .header(header::AUTHORIZATION, &token);
    assert_eq!(rest.send(raw).await?.ok()?["value"], "t");
    // A watch with the token streams; without one it is refused.
    let path = "/api/v1/watch/secret?start_revision=1";
    let mut watch = Events::open(&rest, path, None).await?;
    assert_eq!(watch.take(1).await?[0].1, "secret");
    rest.token = None;
    let refused = Events::open(&rest, path, None).await;
    ensure!(refused.is_err(), "a watch without a token is refused");
    Ok(())
}

/// The served document is the checked-in one, is valid OpenAPI, and every operation it lists
/// is routed.
#[tokio::test]
async fn openapi_document_is_served_and_routed() -> Result<()> {
    let d = Deployment::start(Case::new("memory", Topology::One))?;
    d.ready().await?;
    let rest = Rest::new(&d);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let checked_in = std::fs::read_to_string(path)?;
    let served = rest.get("/api/v1/openapi.json").await?;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.content_type, "application/json");
    assert!(
        served.body == checked_in,
        "served document differs from docs/openapi.json"
    );
    let doc: Value = serde_json::from_str(&served.body)?;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "{}",
        doc["openapi"]
    );

    let paths = doc["paths"].as_object().context("paths")?;
    assert!(paths.len() >= 10, "{}", paths.len());
    for (path, item) in paths {
        for method in item.as_object().context("path item")?.keys() {
            let uri = path.replace("{key}", "routed/k").replace("{id}", "1");
            let method = Method::from_bytes(method.to_uppercase().as_bytes())?;
            let req = rest
                .request(method.clone(), &uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body("{}")
                .timeout(Duration::from_secs(10));
            // Headers are enough (a watch streams on).
            let resp = req.send().await?;
            let status = resp.status();
            let body = if status == StatusCode::NOT_FOUND {
                resp.text().await?
            } else {
                String::new()
            };
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            assert!(
                !(status == StatusCode::NOT_FOUND && body == "404 page not found\n"),
                "{method} {uri} is not routed"
            );
        }
    }

    // The document is valid OpenAPI: `scripts/deps.sh --test` installs openapi-spec-validator
    // into the test virtualenv; a missing one fails the test rather than skipping the check.
    let python = test_python();
    let have = std::process::Command::new(&python)
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .with_context(|| format!("{}: run scripts/deps.sh --test", python.display()))?;
    ensure!(
        have.status.success(),
        "{}: no openapi_spec_validator (run scripts/deps.sh --test): {}",
        python.display(),
        String::from_utf8_lossy(&have.stderr)
    );
    let out = std::process::Command::new(&python)
        .args(["-m", "openapi_spec_validator", path])
        .output()?;
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The Python of the test virtualenv `scripts/deps.sh --test` makes: `METASTORE_PYTHON`, else
/// `bin/python` of `METASTORE_PYENV` (default `~/.cache/metastore-py`).
fn test_python() -> std::path::PathBuf {
    if let Some(python) = std::env::var_os("METASTORE_PYTHON") {
        return python.into();
    }
    let venv = std::env::var_os("METASTORE_PYENV").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_default();
            std::path::PathBuf::from(home).join(".cache/metastore-py")
        },
        std::path::PathBuf::from,
    );
    venv.join("bin/python")
}
