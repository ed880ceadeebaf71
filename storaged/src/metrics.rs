//! Prometheus metrics under etcd's names, so etcd's dashboards and alert rules read a member
//! as they read an etcd server. Every name lives here; the raft, apply, log and engine layers
//! report through the few functions below; what a scrape reads from the member itself (leader,
//! indexes, sizes, watchers) is gathered by [`crate::scrape`] and handed in, so this module
//! imports nothing above the layers that report to it.

use crate::engine::{Engine, EngineError, EngineKind, ReadView, ScanVisitor, Table, WriteBatch};
use metastore_cli::grpc_metrics::{GrpcMetrics, GrpcMetricsLayer};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry,
    TextEncoder, exponential_buckets,
};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// An apply slower than this counts in `etcd_server_slow_apply_total` (etcd's warning).
const SLOW_APPLY: Duration = Duration::from_millis(100);
/// A read index slower than this counts in `etcd_server_slow_read_indexes_total`.
const SLOW_READ_INDEX: Duration = Duration::from_millis(500);

pub struct Metrics {
    registry: Registry,
    grpc: Arc<GrpcMetrics>,
    has_leader: IntGauge,
    is_leader: IntGauge,
    leader_changes: IntCounter,
    committed: IntGauge,
    applied: IntGauge,
    pending: IntGauge,
    failed: IntCounter,
    wal_fsync: Histogram,
    backend_commit: Histogram,
    db_size: IntGauge,
    db_in_use: IntGauge,
    keys: IntGauge,
    put: IntCounter,
    range: IntCounter,
    delete: IntCounter,
    txn: IntCounter,
    watchers: IntGauge,
    slow_watchers: IntGauge,
    peer_rtt: HistogramVec,
    peer_sent: IntCounterVec,
    peer_received: IntCounterVec,
    slow_apply: IntCounter,
    slow_read_index: IntCounter,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Only a malformed name or a duplicate registration fails, both fixed in this file.
    r.unwrap_or_else(|e| panic!("metric definition: {e}"))
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let grpc = Arc::new(must(GrpcMetrics::register(&registry, grpc_type)));
        let gauge = |name: &str, help: &str| {
            let g = must(IntGauge::new(name, help));
            must(registry.register(Box::new(g.clone())));
            g
        };
        let counter = |name: &str, help: &str| {
            let c = must(IntCounter::new(name, help));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            let c = must(IntCounterVec::new(
                prometheus::Opts::new(name, help),
                &[label],
            ));
            must(registry.register(Box::new(c.clone())));
            c
        };
        // etcd's disk histograms: 1 ms to about 8 s, doubling.
        let disk = |name: &str, help: &str| {
            let opts =
                HistogramOpts::new(name, help).buckets(must(exponential_buckets(0.001, 2.0, 14)));
            let h = must(Histogram::with_opts(opts));
            must(registry.register(Box::new(h.clone())));
            h
        };
        let peer_rtt = must(HistogramVec::new(
            HistogramOpts::new(
                "etcd_network_peer_round_trip_time_seconds",
                "Round-trip time histogram between peers",
            )
            .buckets(must(exponential_buckets(0.0001, 2.0, 16))),
            &["To"],
        ));
        must(registry.register(Box::new(peer_rtt.clone())));
        #[cfg(target_os = "linux")]
        must(registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )));
        Metrics {
            has_leader: gauge(
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            ),
            is_leader: gauge(
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            leader_changes: counter(
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            ),
            committed: gauge(
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            ),
            applied: gauge(
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            ),
            pending: gauge(
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            ),
            failed: counter(
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            wal_fsync: disk(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            ),
            backend_commit: disk(
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
            ),
            db_size: gauge(
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            db_in_use: gauge(
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            ),
            keys: gauge("etcd_debugging_mvcc_keys_total", "Total number of keys."),
            put: counter(
                "etcd_mvcc_put_total",
                "Total number of puts seen by this member.",
            ),
            range: counter(
                "etcd_mvcc_range_total",
                "Total number of ranges seen by this member.",
            ),
            delete: counter(
                "etcd_mvcc_delete_total",
                "Total number of deletes seen by this member.",
            ),
            txn: counter(
                "etcd_mvcc_txn_total",
                "Total number of txns seen by this member.",
            ),
            watchers: gauge(
                "etcd_debugging_mvcc_watcher_total",
                "Total number of watchers.",
            ),
            slow_watchers: gauge(
                "etcd_debugging_mvcc_slow_watcher_total",
                "Total number of unsynced slow watchers.",
            ),
            peer_rtt,
            peer_sent: counter_vec(
                "etcd_network_peer_sent_bytes_total",
                "The total number of bytes sent to peers.",
                "To",
            ),
            peer_received: counter_vec(
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                "From",
            ),
            slow_apply: counter(
                "etcd_server_slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk).",
            ),
            slow_read_index: counter(
                "etcd_server_slow_read_indexes_total",
                "The total number of pending read indexes not in sync with leader's or timed out read index requests.",
            ),
            registry,
            grpc,
        }
    }
}

/// The `grpc_type` of an internal method.
fn grpc_type(path: &str) -> &'static str {
    match path.rsplit('/').next() {
        Some("Watch" | "LeaseKeepAlive") => "bidi_stream",
        Some("Snapshot") => "server_stream",
        Some("InstallSnapshot") => "client_stream",
        _ => "unary",
    }
}

/// The layer that counts and times every gRPC call.
pub fn grpc_layer() -> GrpcMetricsLayer {
    GrpcMetricsLayer(METRICS.grpc.clone())
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// A proposal waits for its commit: pending until the returned guard drops.
pub fn proposal_started() -> impl Drop {
    struct Pending;
    impl Drop for Pending {
        fn drop(&mut self) {
            METRICS.pending.dec();
        }
    }
    METRICS.pending.inc();
    Pending
}

/// A proposal that was not committed (refused, timed out, leader lost).
pub fn proposal_failed() {
    METRICS.failed.inc();
}

/// One raft log fsync.
pub fn wal_fsynced(took: Duration) {
    METRICS.wal_fsync.observe(took.as_secs_f64());
}

/// One entry applied: what kind of request it carried, whether it took effect, how long.
pub fn applied(command: &crate::command::Command, ok: bool, took: Duration) {
    use crate::command::Command;
    if ok {
        match command {
            Command::Put(_) => METRICS.put.inc(),
            Command::DeleteRange(_) => METRICS.delete.inc(),
            Command::Txn(_) => METRICS.txn.inc(),
            _ => {}
        }
    }
    if took > SLOW_APPLY {
        METRICS.slow_apply.inc();
    }
}

/// A range (or read-only txn) served.
pub fn read(txn: bool) {
    if txn {
        METRICS.txn.inc();
    } else {
        METRICS.range.inc();
    }
}

/// A linearizable read's read-index round.
pub fn read_index(took: Duration, ok: bool) {
    if !ok || took > SLOW_READ_INDEX {
        METRICS.slow_read_index.inc();
    }
}

/// One raft message to peer `to` (hex id): bytes sent and received, and the round trip.
pub fn peer_call(to: u64, sent: usize, received: usize, took: Duration) {
    let to = format!("{to:x}");
    METRICS
        .peer_sent
        .with_label_values(&[&to])
        .inc_by(sent as u64);
    METRICS
        .peer_received
        .with_label_values(&[&to])
        .inc_by(received as u64);
    METRICS
        .peer_rtt
        .with_label_values(&[&to])
        .observe(took.as_secs_f64());
}

/// Raft reported a new leader.
pub fn leader_changed() {
    METRICS.leader_changes.inc();
}

/// What a scrape reads from the member itself (gathered by [`crate::scrape`]).
pub struct MemberState {
    pub has_leader: bool,
    pub is_leader: bool,
    pub committed: u64,
    pub applied: u64,
    pub db_size: u64,
    pub keys: usize,
    pub watchers: usize,
    pub slow_watchers: usize,
}

/// The text exposition of every metric, with the member's state as given.
pub fn render(state: &MemberState) -> String {
    let m = &*METRICS;
    m.has_leader.set(i64::from(state.has_leader));
    m.is_leader.set(i64::from(state.is_leader));
    m.committed.set(state.committed as i64);
    m.applied.set(state.applied as i64);
    m.db_size.set(state.db_size as i64);
    m.db_in_use.set(state.db_size as i64);
    m.keys.set(state.keys as i64);
    m.watchers.set(state.watchers as i64);
    m.slow_watchers.set(state.slow_watchers as i64);
    encode(&m.registry)
}

fn encode(registry: &Registry) -> String {
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// An engine whose batch writes are timed as etcd's backend commits.
pub struct Timed(pub Arc<dyn Engine>);

impl ReadView for Timed {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.0.get(table, key)
    }
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), EngineError> {
        self.0.scan(table, start, end, visit)
    }
}

impl Engine for Timed {
    fn kind(&self) -> EngineKind {
        self.0.kind()
    }
    fn write(&self, batch: WriteBatch) -> Result<(), EngineError> {
        let started = Instant::now();
        let out = self.0.write(batch);
        METRICS
            .backend_commit
            .observe(started.elapsed().as_secs_f64());
        out
    }
    fn with_snapshot(
        &self,
        f: &mut dyn FnMut(&dyn ReadView) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        self.0.with_snapshot(f)
    }
    fn size_bytes(&self) -> u64 {
        self.0.size_bytes()
    }
    fn defragment(&self) -> Result<(), EngineError> {
        self.0.defragment()
    }
}
