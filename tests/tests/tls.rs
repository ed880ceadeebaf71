//! TLS with etcd's flags: etcdctl over `https://` with `--cacert/--cert/--key`, refused without
//! a client certificate under `--client-cert-auth`, a server certificate replaced on disk
//! served without a restart, a 3-member cluster whose peer and storage links are TLS, and
//! auto TLS (certificates made at start) on every link.

use anyhow::{Result, ensure};
use metastore_tests::certs::{self, Pair};
use metastore_tests::{Cluster, Proc, binary, etcdctl, free_port, retry_until, wait_port};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A gateway serving `https://` in front of `c`, with `extra` flags.
fn tls_gateway(c: &Cluster, server: &Pair, ca: &Pair, extra: &[&str]) -> Result<(Proc, String)> {
    let mut args = vec!["--cert-file", server.cert(), "--key-file", server.key()];
    args.extend_from_slice(&["--trusted-ca-file", ca.cert()]);
    args.extend_from_slice(extra);
    https_gateway(c, "http", &args)
}

/// A gateway serving `https://` with `args`, in front of `c`'s members reached over `scheme`.
fn https_gateway(c: &Cluster, scheme: &str, args: &[&str]) -> Result<(Proc, String)> {
    let port = free_port()?;
    let url = format!("https://127.0.0.1:{port}");
    let storage: Vec<String> = c
        .members
        .iter()
        .map(|m| format!("{scheme}://127.0.0.1:{}", m.storage_port))
        .collect();
    let mut child = Command::new(binary("metastore-gateway")?)
        .arg(format!("--listen-client-urls={url}"))
        .arg(format!("--storage-endpoints={}", storage.join(",")))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    wait_port(port, &mut child, "gateway")?;
    Ok((Proc(child), url))
}

fn ctl(url: &str, tls: &[&str], cmd: &[&str]) -> Result<String> {
    let mut args = vec![
        "--endpoints",
        url,
        "--dial-timeout",
        "3s",
        "--command-timeout",
        "5s",
    ];
    args.extend_from_slice(tls);
    args.extend_from_slice(cmd);
    etcdctl(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_over_tls_with_client_certificates_and_rotation() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = certs::ca(dir.path(), "ca")?;
    let server = certs::issue(dir.path(), &ca, "server", "gateway")?;
    let client = certs::issue(dir.path(), &ca, "client", "root")?;
    let c = Cluster::start("memory", 1, 0, &[])?;
    let (_gw, url) = tls_gateway(&c, &server, &ca, &["--client-cert-auth"])?;

    let full = [
        "--cacert",
        ca.cert(),
        "--cert",
        client.cert(),
        "--key",
        client.key(),
    ];
    ctl(&url, &full, &["put", "foo", "bar"])?;
    assert_eq!(
        ctl(&url, &full, &["get", "foo", "--print-value-only"])?,
        "bar\n"
    );
    // No client certificate: refused under --client-cert-auth.
    let refused = ctl(&url, &["--cacert", ca.cert()], &["get", "foo"]);
    assert!(
        refused.is_err(),
        "served without a client certificate: {refused:?}"
    );
    // A client that does not trust the server's CA stops at the handshake.
    let other = certs::ca(dir.path(), "other-ca")?;
    let untrusted = ctl(
        &url,
        &[
            "--cacert",
            other.cert(),
            "--cert",
            client.cert(),
            "--key",
            client.key(),
        ],
        &["get", "foo"],
    );
    assert!(
        untrusted.is_err(),
        "a server certificate from an unknown CA was accepted"
    );

    // Rotation: the server certificate is replaced on disk by one from another CA; new
    // connections get it without a restart.
    let ca2 = certs::ca(dir.path(), "ca2")?;
    certs::issue(dir.path(), &ca2, "server", "gateway")?;
    let rotated = [
        "--cacert",
        ca2.cert(),
        "--cert",
        client.cert(),
        "--key",
        client.key(),
    ];
    retry_until(
        "the new certificate is served",
        Duration::from_secs(15),
        || async {
            Ok(ctl(&url, &rotated, &["get", "foo", "--print-value-only"])
                .ok()
                .filter(|v| v == "bar\n"))
        },
    )
    .await?;
    let old = ctl(&url, &full, &["get", "foo"]);
    assert!(old.is_err(), "the replaced certificate is still served");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tls_without_client_certificates() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = certs::ca(dir.path(), "ca")?;
    let server = certs::issue(dir.path(), &ca, "server", "gateway")?;
    let c = Cluster::start("memory", 1, 0, &[])?;
    let (_gw, url) = tls_gateway(&c, &server, &ca, &[])?;
    ctl(&url, &["--cacert", ca.cert()], &["put", "k", "v"])?;
    let got = ctl(
        &url,
        &["--cacert", ca.cert()],
        &["get", "k", "--print-value-only"],
    )?;
    ensure!(got == "v\n", "{got:?}");
    // Plain HTTP to a TLS port is not served.
    let plain = ctl(&url.replace("https", "http"), &[], &["get", "k"]);
    assert!(plain.is_err(), "plain HTTP accepted on a TLS port");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_over_peer_and_storage_tls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = certs::ca(dir.path(), "ca")?;
    let member = certs::issue(dir.path(), &ca, "member", "member")?;
    let gateway = certs::issue(dir.path(), &ca, "gateway", "gateway")?;
    let storaged_args = [
        "--peer-cert-file",
        member.cert(),
        "--peer-key-file",
        member.key(),
        "--peer-trusted-ca-file",
        ca.cert(),
        "--peer-client-cert-auth",
        "--cert-file",
        member.cert(),
        "--key-file",
        member.key(),
        "--trusted-ca-file",
        ca.cert(),
        "--client-cert-auth",
    ];
    let gateway_args = [
        "--storage-cert-file",
        gateway.cert(),
        "--storage-key-file",
        gateway.key(),
        "--storage-trusted-ca-file",
        ca.cert(),
    ];
    for engine in ["memory", "rocksdb"] {
        let mut c = Cluster::start_internal_tls(engine, 3, 1, &storaged_args, &gateway_args)?;
        let mut client = c.client(0).await?;
        for i in 0..20 {
            client.put(format!("t/{i}"), "v", None).await?;
        }
        // Losing the leader: the others elect one over TLS and serve everything written.
        let leader = c.leader(0).await?;
        c.kill_member(leader);
        let got = retry_until(
            "reads after the leader is gone",
            Duration::from_secs(20),
            || {
                let mut client = client.clone();
                async move {
                    let r = client
                        .get("t/", Some(etcd_client::GetOptions::new().with_prefix()))
                        .await;
                    Ok(r.ok().map(|r| r.kvs().len()))
                }
            },
        )
        .await?;
        assert_eq!(got, 20, "{engine}");
        client.put("t/after", "v", None).await?;
        c.start_member(leader)?;
        // The storage port speaks TLS only: a plain connection gets nothing.
        let plain = tokio::time::timeout(Duration::from_secs(5), c.member_get(leader, "t/0")).await;
        assert!(
            !matches!(plain, Ok(Ok(_))),
            "{engine}: plain HTTP served on a TLS storage port"
        );
    }
    Ok(())
}

/// etcd's `--auto-tls` / `--peer-auto-tls`: members serve their peer and storage URLs with
/// certificates made at start and call each other without verifying them; a gateway serves
/// `https://` with its own made-up certificate. Everything is encrypted (plain connections get
/// nothing), nothing is verifiable (a client that checks the certificate stops at the
/// handshake), and the cluster works, a leader loss included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_with_auto_tls() -> Result<()> {
    let mut c = Cluster::start_internal_tls(
        "memory",
        3,
        1,
        &["--peer-auto-tls", "--auto-tls"],
        &["--storage-insecure-skip-tls-verify"],
    )?;
    let (_gw, url) = https_gateway(
        &c,
        "https",
        &["--auto-tls", "--storage-insecure-skip-tls-verify"],
    )?;
    let skip = ["--insecure-skip-tls-verify", "--insecure-transport=false"];
    retry_until("a put over auto TLS", Duration::from_secs(20), || async {
        Ok(ctl(&url, &skip, &["put", "auto", "tls"]).ok())
    })
    .await?;
    assert_eq!(
        ctl(&url, &skip, &["get", "auto", "--print-value-only"])?,
        "tls\n"
    );
    let dir = tempfile::tempdir()?;
    let ca = certs::ca(dir.path(), "ca")?;
    let verified = ctl(&url, &["--cacert", ca.cert()], &["get", "auto"]);
    assert!(
        verified.is_err(),
        "a made-up certificate verified: {verified:?}"
    );
    let plain = ctl(&url.replace("https", "http"), &[], &["get", "auto"]);
    assert!(plain.is_err(), "plain HTTP accepted on a TLS port");

    let leader = c.leader(0).await?;
    c.kill_member(leader);
    retry_until(
        "a put after the leader is gone",
        Duration::from_secs(20),
        || async { Ok(ctl(&url, &skip, &["put", "after", "loss"]).ok()) },
    )
    .await?;
    c.start_member(leader)?;
    let plain = tokio::time::timeout(Duration::from_secs(5), c.member_get(leader, "auto")).await;
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "plain HTTP served on an auto TLS storage port"
    );
    Ok(())
}

/// etcd's rule under `--client-cert-auth`: a gRPC request without a token runs as the user
/// its client certificate's common name names (a token wins; calls through the JSON gateway
/// ignore the certificate). The gateway says so to the members over its mTLS storage link,
/// and members believe only gateways whose storage certificate's CN they were told to trust.
/// 3 members, so some requests reach the leader through a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_certificate_names_the_user() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = certs::ca(dir.path(), "ca")?;
    let member = certs::issue(dir.path(), &ca, "member", "member")?;
    let gateway = certs::issue(dir.path(), &ca, "gateway", "gateway")?;
    let intruder = certs::issue(dir.path(), &ca, "intruder", "intruder")?;
    let server = certs::issue(dir.path(), &ca, "server", "server")?;
    let [root, alice, nobody] = ["root", "alice", "nobody"]
        .map(|cn| certs::issue(dir.path(), &ca, cn, cn).expect("client certificate"));
    let (m, g) = (member.clone(), gateway.clone());
    let peer_and_storage_tls = [
        "--peer-cert-file",
        m.cert(),
        "--peer-key-file",
        m.key(),
        "--peer-trusted-ca-file",
        ca.cert(),
        "--peer-client-cert-auth",
        "--cert-file",
        m.cert(),
        "--key-file",
        m.key(),
        "--trusted-ca-file",
        ca.cert(),
        "--client-cert-auth",
        "--trusted-gateway-cn",
        "gateway",
    ];
    let storage_client = |p: &Pair| {
        vec![
            "--storage-cert-file".to_string(),
            p.cert().to_string(),
            "--storage-key-file".to_string(),
            p.key().to_string(),
            "--storage-trusted-ca-file".to_string(),
            ca.cert().to_string(),
        ]
    };
    let g_args = storage_client(&g);
    let g_args: Vec<&str> = g_args.iter().map(String::as_str).collect();
    let c = Cluster::start_internal_tls("memory", 3, 0, &peer_and_storage_tls, &g_args)?;
    let https_with = |storage: &Pair| {
        let mut args = vec![
            "--cert-file".to_string(),
            server.cert().to_string(),
            "--key-file".to_string(),
            server.key().to_string(),
            "--trusted-ca-file".to_string(),
            ca.cert().to_string(),
            "--client-cert-auth".to_string(),
        ];
        args.extend(storage_client(storage));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        https_gateway(&c, "https", &args)
    };
    let (_gw, url) = https_with(&gateway)?;
    let as_cert = |p: &Pair| {
        [
            "--cacert".to_string(),
            ca.cert().to_string(),
            "--cert".to_string(),
            p.cert().to_string(),
            "--key".to_string(),
            p.key().to_string(),
        ]
    };
    let run = |url: &str, who: &Pair, cmd: &[&str]| {
        let tls = as_cert(who);
        let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
        ctl(url, &tls, cmd)
    };

    retry_until("the cluster serves", Duration::from_secs(20), || async {
        Ok(run(&url, &root, &["put", "foo", "v0"]).ok())
    })
    .await?;
    for cmd in [
        &["user", "add", "root", "--new-user-password", "rootpw"][..],
        &["user", "add", "alice", "--new-user-password", "alicepw"],
        &["role", "add", "reader"],
        &["role", "grant-permission", "reader", "read", "foo"],
        &["user", "grant-role", "alice", "reader"],
        &["auth", "enable"],
    ] {
        run(&url, &root, cmd)?;
    }
    // The root certificate alone is root: writes, and admin calls.
    run(&url, &root, &["put", "foo", "by-root-cert"])?;
    let users = run(&url, &root, &["user", "list"])?;
    ensure!(users == "alice\nroot\n", "{users:?}");
    // alice's certificate is alice: she may read foo, not write it.
    let read = run(&url, &alice, &["get", "foo", "--print-value-only"])?;
    ensure!(read == "by-root-cert\n", "{read:?}");
    let write = run(&url, &alice, &["put", "foo", "by-alice"]);
    ensure!(
        matches!(&write, Err(e) if e.to_string().contains("permission denied")),
        "{write:?}"
    );
    // A certificate naming no user gets no permission.
    let stranger = run(&url, &nobody, &["get", "foo"]);
    ensure!(
        matches!(&stranger, Err(e) if e.to_string().contains("permission denied")),
        "{stranger:?}"
    );
    // A token wins over the certificate: alice's certificate with root's password writes.
    run(
        &url,
        &alice,
        &["--user", "root:rootpw", "put", "foo", "by-root-token"],
    )?;
    // The JSON gateway ignores the certificate (as etcd's): no token, no user.
    let json = std::process::Command::new("curl")
        .args(["-s", "--cacert", ca.cert(), "--cert", root.cert()])
        .args(["--key", root.key(), &format!("{url}/v3/kv/range")])
        .args(["-X", "POST", "-d", r#"{"key":"Zm9v"}"#])
        .output()?;
    let json = String::from_utf8_lossy(&json.stdout);
    ensure!(json.contains("etcdserver: user name is empty"), "{json}");

    // A gateway whose storage certificate the members do not trust cannot speak for users:
    // its certificate users are no users.
    let (_other, other_url) = https_with(&intruder)?;
    let refused = run(&other_url, &root, &["put", "foo", "by-intruder"]);
    ensure!(
        matches!(&refused, Err(e) if e.to_string().contains("etcdserver: user name is empty")),
        "{refused:?}"
    );
    let with_token = run(
        &other_url,
        &alice,
        &[
            "--user",
            "alice:alicepw",
            "get",
            "foo",
            "--print-value-only",
        ],
    )?;
    ensure!(
        with_token == "by-root-token\n",
        "tokens still work: {with_token:?}"
    );
    let last = run(&url, &alice, &["get", "foo", "--print-value-only"])?;
    ensure!(last == "by-root-token\n", "{last:?}");
    Ok(())
}
