//! Prometheus `/metrics` under etcd's names: scraped from every storaged member
//! (`--listen-metrics-urls`) and from the gateway's client port around a known workload; every
//! name etcd's dashboards use is there, the text parses, and the counters move by exactly what
//! the workload did.

use anyhow::{Context, Result};
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use metastore_tests::Cluster;
use std::collections::HashMap;

/// The names a storaged member exposes (etcd's, for etcd's Grafana dashboard and alerts).
const MEMBER: &[&str] = &[
    "etcd_server_has_leader",
    "etcd_server_is_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_failed_total",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_debugging_mvcc_keys_total",
    "etcd_mvcc_put_total",
    "etcd_mvcc_range_total",
    "etcd_mvcc_delete_total",
    "etcd_mvcc_txn_total",
    "etcd_debugging_mvcc_watcher_total",
    "etcd_debugging_mvcc_slow_watcher_total",
    "etcd_network_peer_round_trip_time_seconds",
    "etcd_network_peer_sent_bytes_total",
    "etcd_network_peer_received_bytes_total",
    "etcd_server_slow_apply_total",
    "etcd_server_slow_read_indexes_total",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_handling_seconds",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
];

/// The names a gateway exposes.
const GATEWAY: &[&str] = &[
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_handling_seconds",
    "metastore_gateway_upstream_seconds",
    "metastore_gateway_upstream_retries_total",
    "metastore_gateway_watch_feeds",
    "metastore_gateway_keepalive_batch_size",
    "process_resident_memory_bytes",
];

/// One scrape, parsed: every sample by its name and sorted labels.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    async fn of(url: &str) -> Result<Scrape> {
        let resp = reqwest::get(url).await?;
        let kind = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(
            kind.starts_with("text/plain; version=0.0.4"),
            "{url}: {kind}"
        );
        let text = resp.text().await?;
        let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .with_context(|| format!("{url}: not the Prometheus text format"))?;
        let mut out = HashMap::new();
        for s in parsed.samples {
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(h) => {
                    h.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => 0.0,
            };
            out.insert(format!("{}{{{}}}", s.metric, labels.join(",")), value);
        }
        Ok(Scrape(out))
    }

    fn has(&self, name: &str) -> bool {
        self.0
            .keys()
            .any(|k| k.split('{').next() == Some(name) || k.starts_with(&format!("{name}_")))
    }

    /// The value of `name` with exactly `labels` (sorted `k=v`), 0 when absent.
    fn get(&self, name: &str, labels: &[&str]) -> f64 {
        let mut labels: Vec<&str> = labels.to_vec();
        labels.sort();
        self.0
            .get(&format!("{name}{{{}}}", labels.join(",")))
            .copied()
            .unwrap_or(0.0)
    }
}

fn put_handled(s: &Scrape) -> f64 {
    s.get(
        "grpc_server_handled_total",
        &[
            "grpc_code=OK",
            "grpc_method=Put",
            "grpc_service=etcdserverpb.KV",
            "grpc_type=unary",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_etcds_names_and_count_the_workload() -> Result<()> {
    for engine in ["memory", "rocksdb"] {
        let c = Cluster::start(engine, 3, 1, &[])?;
        let leader = c.leader(0).await?;
        let member_url =
            |i: usize| format!("http://127.0.0.1:{}/metrics", c.members[i].metrics_port);
        let gateway_url = format!("{}/metrics", c.gateway(0));
        let mut client = c.client(0).await?;
        client.put("warm", "up", None).await?;

        let before = Scrape::of(&member_url(leader)).await?;
        let gw_before = Scrape::of(&gateway_url).await?;
        const PUTS: usize = 40;
        for i in 0..PUTS {
            client.put(format!("m/{i:03}"), "v", None).await?;
        }
        for _ in 0..7 {
            client
                .get("m/", Some(GetOptions::new().with_prefix()))
                .await?;
        }
        for i in 0..3 {
            client.delete(format!("m/{i:03}"), None).await?;
        }
        let txn = Txn::new()
            .when([Compare::value("warm", CompareOp::Equal, "up")])
            .and_then([TxnOp::put("t", "1", None)]);
        client.txn(txn).await?;
        let _watch = client.watch("m/", None).await?;

        let after = Scrape::of(&member_url(leader)).await?;
        let gw_after = Scrape::of(&gateway_url).await?;
        for name in MEMBER {
            assert!(after.has(name), "{engine}: member metrics lack {name}");
        }
        for name in GATEWAY {
            assert!(gw_after.has(name), "{engine}: gateway metrics lack {name}");
        }
        let delta = |name: &str| after.get(name, &[]) - before.get(name, &[]);
        assert_eq!(delta("etcd_mvcc_put_total"), PUTS as f64, "{engine}");
        assert_eq!(delta("etcd_mvcc_delete_total"), 3.0, "{engine}");
        assert_eq!(delta("etcd_mvcc_txn_total"), 1.0, "{engine}");
        assert_eq!(delta("etcd_mvcc_range_total"), 7.0, "{engine}");
        assert_eq!(
            after.get("etcd_debugging_mvcc_keys_total", &[]),
            (1 + PUTS - 3 + 1) as f64
        );
        assert_eq!(after.get("etcd_server_is_leader", &[]), 1.0, "{engine}");
        assert_eq!(after.get("etcd_server_has_leader", &[]), 1.0, "{engine}");
        assert!(after.get("etcd_server_leader_changes_seen_total", &[]) >= 1.0);
        assert!(
            delta("etcd_server_proposals_applied_total") >= (PUTS + 4) as f64,
            "{engine}"
        );
        assert_eq!(
            put_handled(&gw_after) - put_handled(&gw_before),
            PUTS as f64,
            "{engine}: gateway grpc_server_handled_total for Put"
        );
        // Every member: a follower knows the leader and is not it; peer traffic is counted
        // on the leader towards each follower.
        let puts = after.get("etcd_mvcc_put_total", &[]);
        let mut watchers = 0.0;
        for i in 0..3 {
            let url = member_url(i);
            // A follower may apply the last puts a moment later.
            let s = metastore_tests::retry_until(
                "every member applies every put",
                std::time::Duration::from_secs(10),
                || {
                    let url = url.clone();
                    async move {
                        let s = Scrape::of(&url).await?;
                        Ok((s.get("etcd_mvcc_put_total", &[]) == puts).then_some(s))
                    }
                },
            )
            .await?;
            assert_eq!(s.get("etcd_server_has_leader", &[]), 1.0, "{engine} s{i}");
            assert_eq!(
                s.get("etcd_server_is_leader", &[]),
                if i == leader { 1.0 } else { 0.0 },
                "{engine} s{i}"
            );
            watchers += s.get("etcd_debugging_mvcc_watcher_total", &[]);
        }
        // The gateway's feed for the client's watch is on one of the members.
        assert!(watchers >= 1.0, "{engine}: no member counts the watch");
        assert!(
            after
                .0
                .keys()
                .filter(|k| k.starts_with("etcd_network_peer_sent_bytes_total{"))
                .count()
                >= 2,
            "{engine}: the leader counts bytes to both followers"
        );
    }
    Ok(())
}
