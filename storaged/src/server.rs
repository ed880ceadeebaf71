//! Wires the layers together: engine, store, raft, and the two listeners (storage RPC for
//! gateways; raft peer RPC plus forwarded storage calls for other members).

use crate::config::Config;
use crate::engine;
use crate::forward::Forwarder;
use crate::gateways::Gateways;
use crate::identity::Identity;
use crate::mvcc::Store;
use crate::node::{Node, NodeOptions};
use crate::raft::log_store::LogStore;
use crate::raft::network::{MAX_RAFT_MESSAGE, Network};
use crate::raft::peer_service::PeerService;
use crate::raft::state_machine::StateMachineStore;
use crate::raft::{Member, Raft};
use crate::service::StorageService;
use crate::watch::WatchHub;
use metastore_internal_proto::storage::raft_server::RaftServer;
use metastore_internal_proto::storage::storage_server::StorageServer;
use std::collections::BTreeMap;
use std::sync::Arc;
use tonic::transport::server::TcpIncoming;

use metastore_cli::rpc::MAX_INTERNAL_MESSAGE;
use metastore_cli::shutdown::CutStreamsLayer;

fn raft_config(cfg: &Config) -> Result<openraft::Config, String> {
    let config = openraft::Config {
        cluster_name: cfg.initial_cluster_token.clone(),
        heartbeat_interval: cfg.heartbeat_ms,
        election_timeout_min: cfg.election_timeout_ms,
        election_timeout_max: cfg.election_timeout_ms * 2,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_count),
        max_in_snapshot_log_to_keep: (cfg.snapshot_count / 2).min(5_000),
        // Small snapshot counts (tests, small clusters) purge in small batches too, so the log
        // really ends where the snapshot begins.
        purge_batch_size: cfg.snapshot_count.clamp(1, 1_000),
        // A member that was cut off or restarted asks before it bumps its term, so it cannot
        // depose a healthy leader when it comes back.
        enable_pre_vote: Some(true),
        // A restarted leader stands for election in a new term, never leads on in its old one.
        // Its log may have lost a tail that followers synced (the leader's own sync runs beside
        // replication, and a kill -9 loses what it had not synced); leading on in the same term
        // it would write other entries under the same log ids, which followers take as the
        // entries they hold, and the members' states part for good.
        enable_leader_restore: Some(false),
        ..Default::default()
    };
    config.validate().map_err(|e| format!("raft settings: {e}"))
}

async fn start_raft(
    cfg: &Config,
    identity: &Identity,
    store: Arc<Store>,
    log: LogStore,
    auth: Arc<crate::auth::Auth>,
) -> Result<Raft, String> {
    let fresh = log.is_empty().map_err(|e| format!("raft log: {e}"))?;
    let sm = StateMachineStore::open(store, &cfg.data_dir, auth)
        .map_err(|e| format!("state machine: {e}"))?
        .with_failpoints(identity.member_id, &identity.name);
    let raft = Raft::new(
        identity.member_id,
        Arc::new(raft_config(cfg)?),
        Network::new(identity.cluster_id),
        log,
        sm,
    )
    .await
    .map_err(|e| format!("raft: {e}"))?;
    if fresh && !cfg.join_existing {
        let members: BTreeMap<u64, Member> = identity
            .members
            .iter()
            .map(|(name, urls)| {
                (
                    crate::identity::member_id(urls, &identity.token),
                    Member {
                        name: name.clone(),
                        peer_urls: urls.clone(),
                    },
                )
            })
            .collect();
        tracing::info!(members = members.len(), "bootstrapping a new cluster");
        if let Err(e) = raft.initialize(members).await {
            // Another member's initialization may have reached us first; that is fine.
            tracing::info!(error = %e, "initialize skipped");
        }
    }
    Ok(raft)
}

pub async fn run(cfg: Config) -> Result<(), String> {
    // A stop: the leadership hand-off (up to three election timeouts), the listeners' drain
    // (the shutdown timeout), raft's own stop; beyond that the process just exits.
    let hand_off_within = std::time::Duration::from_millis(cfg.election_timeout_ms * 3);
    let signal = metastore_cli::shutdown::on_signals(
        hand_off_within + cfg.shutdown_timeout + std::time::Duration::from_secs(2),
    );
    let mut identity = Identity::new(&cfg.name, &cfg.initial_cluster, &cfg.initial_cluster_token)?;
    let addrs = |l: &[metastore_cli::Listen]| l.iter().map(|l| l.addr).collect::<Vec<_>>();
    let storage_listeners =
        metastore_cli::bind_all("listen-storage-urls", &addrs(&cfg.listen_storage)).await?;
    let peer_listeners =
        metastore_cli::bind_all("listen-peer-urls", &addrs(&cfg.listen_peer)).await?;
    // TLS: the listeners' certificates (re-read when they change), and this member's calls to
    // other members, which show its peer certificate.
    let load = |files: &metastore_cli::tls::TlsFiles, listen: &[metastore_cli::Listen]| {
        if listen.iter().any(|l| l.tls) {
            metastore_cli::tls::ServerTls::load(files.clone(), &addrs(listen)).map(Some)
        } else {
            Ok(None)
        }
    };
    let storage_tls = load(&cfg.tls, &cfg.listen_storage)?;
    let peer_tls = load(&cfg.peer_tls, &cfg.listen_peer)?;
    if cfg.peer_tls.self_signed() {
        // Members with made-up certificates cannot verify each other (as etcd's).
        metastore_cli::rpc::use_unverified_tls(metastore_cli::tls::unverified_client_config(
            None,
            &addrs(&cfg.listen_peer),
        )?);
    } else if cfg.peer_tls.has_cert() || cfg.peer_tls.trusted_ca.is_some() {
        let identity = cfg
            .peer_tls
            .cert
            .as_deref()
            .zip(cfg.peer_tls.key.as_deref());
        metastore_cli::rpc::use_client_tls(metastore_cli::tls::client_config(
            cfg.peer_tls.trusted_ca.as_deref(),
            identity,
        )?);
    }
    let metrics_listeners =
        metastore_cli::bind_all("listen-metrics-urls", &cfg.listen_metrics).await?;

    if !crate::identity::is_pinned(&cfg.data_dir) {
        if cfg.join_existing {
            identity.cluster_id = crate::bootstrap::existing_cluster_id(&identity).await?;
        } else {
            crate::bootstrap::check_not_bootstrapped(&identity).await?;
        }
    }
    let opened =
        engine::open_tuned(cfg.engine, &cfg.data_dir, &cfg.rocksdb).map_err(|e| e.to_string())?;
    crate::backup::snapshot::remove_leftovers(&cfg.data_dir);
    let identity = identity.pinned(&cfg.data_dir)?;
    let hub = Arc::new(WatchHub::new());
    let engine: Arc<dyn crate::engine::Engine> = Arc::new(crate::metrics::Timed(opened.engine));
    let store = Arc::new(
        Store::open_observed(engine, Some(hub.clone()))
            .map_err(|e| format!("cannot open store: {e}"))?,
    );
    let auth = Arc::new(crate::auth::Auth::new(cfg.auth.clone()));
    let raft = start_raft(
        &cfg,
        &identity,
        store.clone(),
        LogStore::new(opened.log).with_failpoints(identity.member_id),
        auth.clone(),
    )
    .await?;
    tracing::info!(
        name = %cfg.name,
        engine = %cfg.engine,
        data_dir = %cfg.data_dir.display(),
        member_id = format!("{:x}", identity.member_id),
        cluster_id = format!("{:x}", identity.cluster_id),
        revision = store.current_revision(),
        "storaged starting"
    );
    if cfg.quota.limit() > crate::quota::MAX_SUGGESTED_QUOTA_BYTES {
        tracing::warn!(
            quota_backend_bytes = cfg.quota.limit(),
            "the quota is above the suggested maximum of 8 GiB (as etcd warns)"
        );
    }
    let options = NodeOptions {
        lease_checkpoint: cfg.lease_checkpoint,
        election_timeout: std::time::Duration::from_millis(cfg.election_timeout_ms),
        quota: cfg.quota,
        etcd_version: cfg.etcd_version,
        auth,
    };
    let node = Arc::new(Node::new(identity, store, raft.clone(), options));
    let gateways = Arc::new(Gateways::new(node.clone(), cfg.gateway_publication_ttl));
    let forwarder = Forwarder::new(node.clone());
    if cfg.initial_corrupt_check {
        wait_for_membership(&node).await;
        crate::corruption::initial_check(&node, &forwarder).await?;
    }
    if let Some(every) = cfg.corrupt_check_interval {
        crate::corruption::spawn_periodic(node.clone(), forwarder.clone(), every);
    }
    crate::duties::spawn(node.clone(), gateways.clone(), forwarder.clone());
    if let Some(policy) = cfg.auto_compaction {
        crate::compactor::spawn(node.clone(), policy);
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(metastore_internal_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(metastore_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| format!("reflection: {e}"))?;
    crate::scrape::spawn_leader_watch(node.clone());
    for listener in metrics_listeners {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, "serving metrics");
        let (node, hub) = (node.clone(), hub.clone());
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let text = crate::scrape::render(&node, &hub);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            crate::metrics::CONTENT_TYPE,
                        )],
                        text,
                    )
                }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "metrics listener failed");
            }
        });
    }
    let service = Arc::new(StorageService::new(
        node.clone(),
        hub,
        gateways,
        forwarder,
        cfg.data_dir.clone(),
        &cfg.trusted_gateway_cns,
    ));
    let peer_service = Arc::new(service.for_peers());
    let storage_server = |service: &Arc<StorageService>| {
        StorageServer::from_arc(service.clone())
            .max_decoding_message_size(MAX_INTERNAL_MESSAGE)
            .max_encoding_message_size(usize::MAX)
    };
    let (health_reporter, health) = tonic_health::server::health_reporter();
    crate::health::spawn(node.clone(), health_reporter);
    // On SIGTERM or SIGINT a leader first hands leadership over (the listeners keep serving
    // the vote and the catch-up that needs), then the listeners stop accepting and open
    // streams (gateways' watch feeds) end with `server stopped` so gateways go elsewhere.
    let stop = metastore_cli::shutdown::Token::new();
    {
        let (node, stop, signal) = (node.clone(), stop.clone(), signal.clone());
        tokio::spawn(async move {
            signal.cancelled().await;
            crate::stopping::hand_off(&node, hand_off_within).await;
            stop.cancel();
        });
    }
    let cut = CutStreamsLayer::new(
        stop.clone(),
        tonic::Status::unavailable("etcdserver: server stopped"),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for (listener, listen) in storage_listeners.into_iter().zip(&cfg.listen_storage) {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, "serving storage RPC");
        let router = tonic::transport::Server::builder()
            .layer(crate::metrics::grpc_layer())
            .layer(metastore_cli::telemetry::ServerSpanLayer::INTERNAL)
            .layer(cut.clone())
            .add_service(storage_server(&service))
            .add_service(health.clone())
            .add_service(reflection.clone());
        let tcp = TcpIncoming::from(listener).with_nodelay(Some(true));
        let stopped = stop.clone().cancelled_owned();
        match (&storage_tls, listen.tls) {
            (Some(tls), true) => tasks.spawn(router.serve_with_incoming_shutdown(
                metastore_cli::tls::accept(tcp, tls.clone()),
                stopped,
            )),
            _ => tasks.spawn(router.serve_with_incoming_shutdown(tcp, stopped)),
        };
    }
    for (listener, listen) in peer_listeners.into_iter().zip(&cfg.listen_peer) {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, "serving raft peer RPC");
        let peer = RaftServer::new(PeerService::new(
            raft.clone(),
            node.identity().cluster_id,
            &cfg.data_dir,
        ))
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE);
        let router = tonic::transport::Server::builder()
            .layer(crate::metrics::grpc_layer())
            .layer(metastore_cli::telemetry::ServerSpanLayer::INTERNAL)
            .layer(cut.clone())
            .add_service(peer)
            .add_service(storage_server(&peer_service));
        let tcp = TcpIncoming::from(listener).with_nodelay(Some(true));
        let stopped = stop.clone().cancelled_owned();
        match (&peer_tls, listen.tls) {
            (Some(tls), true) => tasks.spawn(router.serve_with_incoming_shutdown(
                metastore_cli::tls::accept(tcp, tls.clone()),
                stopped,
            )),
            _ => tasks.spawn(router.serve_with_incoming_shutdown(tcp, stopped)),
        };
    }
    metastore_cli::shutdown::join_servers(tasks, &stop, cfg.shutdown_timeout).await?;
    let _ = raft.shutdown().await;
    tracing::info!("storaged stopped");
    Ok(())
}

/// Gives raft a moment to load the membership it stored (up to 2 s; a new member has none).
async fn wait_for_membership(node: &Node) {
    for _ in 0..100 {
        if !node.members().is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
