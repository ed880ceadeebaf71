//! Per-client rate limits: a client over its rate gets `etcdserver: too many requests`
//! (ResourceExhausted over gRPC, 429 over HTTP) while a client from another address is not
//! throttled, and every refusal is counted in the gateway's metrics.

use anyhow::Result;
use metastore_proto::etcdserverpb::PutRequest;
use metastore_proto::etcdserverpb::kv_client::KvClient;
use metastore_tests::Cluster;
use std::net::IpAddr;

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
