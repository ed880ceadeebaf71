//! The gateway's circuit breaker: a storaged member that hangs (SIGSTOP) costs a few requests
//! a timeout, then is tried after the others, so reads it would have served go elsewhere; when
//! it answers again its breaker closes.

use anyhow::{Context, Result};
use etcd_client::GetOptions;
use metastore_tests::{Cluster, retry_until};
use std::process::Command;
use std::time::Duration;

fn signal(c: &Cluster, i: usize, sig: &str) -> Result<()> {
    let pid = c.procs[i].as_ref().context("member running")?.0.id();
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?
        .success();
    anyhow::ensure!(ok, "kill {sig} {pid}");
    Ok(())
}

async fn breaker_gauge(c: &Cluster, i: usize) -> Result<f64> {
    let text = reqwest::get(format!("{}/metrics", c.gateway(0)))
        .await?
        .text()
        .await?;
    let member = format!("member=\"http://127.0.0.1:{}\"", c.members[i].storage_port);
    text.lines()
        .find(|l| l.starts_with("metastore_gateway_breaker_open{") && l.contains(&member))
        .and_then(|l| l.rsplit(' ').next())
        .context("breaker gauge")?
        .parse()
        .context("gauge value")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_member_is_tried_last() -> Result<()> {
    let mut c = Cluster::start("memory", 3, 1, &[])?;
    let mut client = c.client(0).await?;
    client.put("k", "v", None).await?;
    let leader = c.leader(0).await?;
    let hung = (leader + 1) % 3;
    signal(&c, hung, "-STOP")?;
    // Serializable reads are spread over every member: without a breaker about one in three
    // would wait out the request timeout on the hung member.
    let opts = || Some(GetOptions::new().with_serializable());
    let mut failed = 0;
    for _ in 0..30 {
        match tokio::time::timeout(Duration::from_secs(15), client.get("k", opts())).await {
            Ok(Ok(r)) => assert_eq!(r.kvs()[0].value(), b"v"),
            _ => failed += 1,
        }
    }
    assert!(
        failed <= 3,
        "{failed} of 30 reads failed: the hung member was not passed over"
    );
    assert_eq!(breaker_gauge(&c, hung).await?, 1.0);
    signal(&c, hung, "-CONT")?;
    // Half-open after the cool-down: the member is tried in its turn again, answers, and its
    // breaker closes.
    retry_until("the breaker closes", Duration::from_secs(30), || {
        let (c, mut client) = (&c, client.clone());
        async move {
            client.get("k", opts()).await?;
            Ok((breaker_gauge(c, hung).await? == 0.0).then_some(()))
        }
    })
    .await?;
    c.kill_member(hung);
    Ok(())
}
