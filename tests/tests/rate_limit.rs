//! Per-client rate limits: a client over its rate gets `etcdserver: too many requests`
//! (ResourceExhausted over gRPC, 429 over HTTP) while a client from another address is not
//! throttled, and every refusal is counted in the gateway's metrics. `--max-connections`:
//! a connection over the limit is closed, and a place comes back when a connection closes.

use anyhow::Result;
use metastore_proto::etcdserverpb::PutRequest;
use metastore_proto::etcdserverpb::kv_client::KvClient;
use metastore_tests::{Cluster, retry_until};
use std::net::IpAddr;
use std::time::Duration;

async fn kv_from(endpoint: &str, local: IpAddr) -> Result<KvClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())?
        .local_address(Some(local))
        .connect()
        .await?;
    Ok(KvClient::new(channel))
}

fn put(key: &str) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    }
}

fn http_from(local: IpAddr) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder().local_address(local).build()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_is_throttled_and_others_are_not() -> Result<()> {
    let c = Cluster::start_with(
        "memory",
        1,
        1,
        &[],
        &["--rate-limit-per-client", "20", "--rate-limit-burst", "20"],
    )?;
    let endpoint = c.gateway(0);
    let (a, b, scraper): (IpAddr, IpAddr, IpAddr) = (
        [127, 0, 0, 1].into(),
        [127, 0, 0, 2].into(),
        [127, 0, 0, 3].into(),
    );
    let mut greedy = kv_from(&endpoint, a).await?;
    let (mut ok, mut throttled) = (0, 0);
    for i in 0..100 {
        match greedy.put(put(&format!("a/{i}"))).await {
            Ok(_) => ok += 1,
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
                assert_eq!(s.message(), "etcdserver: too many requests");
                throttled += 1;
            }
        }
    }
    assert!(
        throttled > 0,
        "100 puts at once from one client: none throttled"
    );
    assert!(ok >= 20, "the burst is admitted: {ok}");

    // Another client is served at once.
    let mut polite = kv_from(&endpoint, b).await?;
    for i in 0..10 {
        polite.put(put(&format!("b/{i}"))).await?;
    }

    // The greedy client's HTTP requests share its bucket: 429 with etcd's JSON error.
    let http = http_from(a)?;
    let mut answer = None;
    for _ in 0..50 {
        let r = http
            .post(format!("{endpoint}/v3/kv/range"))
            .body(r#"{"key":"YQ=="}"#)
            .send()
            .await?;
        if r.status() == 429 {
            answer = Some(r.text().await?);
            break;
        }
    }
    let body = answer.expect("HTTP requests over the rate get 429");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(v["error"], "etcdserver: too many requests");
    assert_eq!(v["code"], 8);

    // Every refusal is counted.
    let text = http_from(scraper)?
        .get(format!("{endpoint}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let counted: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("metastore_gateway_rate_limited_total "))
        .expect("rate limit counter")
        .parse()?;
    assert!(
        counted >= (throttled + 1) as f64,
        "counted {counted}, refused at least {}",
        throttled + 1
    );
    Ok(())
}

/// A KV client on its own connection that has answered a range.
async fn connected(endpoint: &str) -> Result<KvClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await?;
    let mut kv = KvClient::new(channel);
    kv.range(metastore_proto::etcdserverpb::RangeRequest {
        key: b"k".to_vec(),
        ..Default::default()
    })
    .await?;
    Ok(kv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed() -> Result<()> {
    let c = Cluster::start_with("memory", 1, 1, &[], &["--max-connections", "2"])?;
    c.leader(0).await?;
    let endpoint = c.gateway(0);
    // The start-up checks' connections close on their own: wait for both places.
    let first = retry_until("a first connection", Duration::from_secs(10), || async {
        Ok(connected(&endpoint).await.ok())
    })
    .await?;
    let second = retry_until("a second connection", Duration::from_secs(10), || async {
        Ok(connected(&endpoint).await.ok())
    })
    .await?;
    for _ in 0..3 {
        assert!(
            connected(&endpoint).await.is_err(),
            "a third connection is served with two open and --max-connections 2"
        );
    }
    // The open connections keep working.
    let (mut first, mut second) = (first, second);
    first.put(put("first")).await?;
    second.put(put("second")).await?;
    drop(first);
    let third = retry_until(
        "a connection once one closed",
        Duration::from_secs(10),
        || async { Ok(connected(&endpoint).await.ok()) },
    )
    .await?;
    drop((second, third));
    let text = retry_until("a scrape", Duration::from_secs(10), || async {
        match reqwest::get(format!("{endpoint}/metrics")).await {
            Ok(r) => Ok(Some(r.text().await?)),
            Err(_) => Ok(None),
        }
    })
    .await?;
    let refused: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("metastore_gateway_connections_refused_total "))
        .expect("connections refused counter")
        .parse()?;
    assert!(refused >= 3.0, "refused {refused}, at least 3 were");
    Ok(())
}
