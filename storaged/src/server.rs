//! Wires the layers together and serves the storage RPC.

use crate::config::Config;
use crate::engine;
use crate::identity::Identity;
use crate::mvcc::Store;
use crate::node::Node;
use crate::service::StorageService;
use crate::watch::WatchHub;
use metastore_internal_proto::storage::storage_server::StorageServer;
use std::sync::Arc;
use tonic::transport::server::TcpIncoming;

/// Largest internal message: an etcd request at the gateway's limit plus envelope slack.
const MAX_INTERNAL_MESSAGE: usize = 64 * 1024 * 1024;

pub async fn run(cfg: Config) -> Result<(), String> {
    let identity = Identity::new(&cfg.name, &cfg.initial_cluster, &cfg.initial_cluster_token)?;
    let listeners = metastore_cli::bind_all("listen-storage-urls", &cfg.listen_storage).await?;
    let engine = engine::open(cfg.engine, &cfg.data_dir).map_err(|e| e.to_string())?;
    let hub = Arc::new(WatchHub::new());
    let store = Store::open_observed(engine, Some(hub.clone()))
        .map_err(|e| format!("cannot open store: {e}"))?;
    tracing::info!(
        name = %cfg.name,
        engine = %cfg.engine,
        data_dir = %cfg.data_dir.display(),
        member_id = format!("{:x}", identity.member_id),
        cluster_id = format!("{:x}", identity.cluster_id),
        revision = store.current_revision(),
        "storaged starting"
    );
    let node = Arc::new(Node::new(identity, Arc::new(store)));
    // The only member expires leases; with raft this moves to whichever member leads.
    let expiring = node.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tick.tick().await;
            expiring.expire_leases().await;
        }
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(metastore_internal_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(metastore_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| format!("reflection: {e}"))?;
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, "serving storage RPC");
        let svc = StorageServer::new(StorageService::new(node.clone(), hub.clone()))
            .max_decoding_message_size(MAX_INTERNAL_MESSAGE)
            .max_encoding_message_size(usize::MAX);
        let router = tonic::transport::Server::builder()
            .add_service(svc)
            .add_service(reflection.clone());
        tasks.spawn(router.serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown_signal(),
        ));
    }
    while let Some(res) = tasks.join_next().await {
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("storage server failed: {e}")),
            Err(e) => return Err(format!("storage server task failed: {e}")),
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
