//! Listeners and service registration.

use crate::caller::TokenLayer;
use crate::config::Config;
use crate::error::Error;
use crate::etcd::auth::AuthService;
use crate::etcd::cluster::ClusterService;
use crate::etcd::election::ElectionService;
use crate::etcd::kv::KvService;
use crate::etcd::lease::LeaseService;
use crate::etcd::lock::LockService;
use crate::etcd::maintenance::MaintenanceService;
use crate::etcd::watch::WatchService;
use crate::http::front_door;
use crate::keepalive::KeepAliveHub;
use crate::listen::connections::ConnectionLimit;
use crate::upstream::Upstream;
use metastore_cli::shutdown::CutStreamsLayer;
use metastore_proto::etcdserverpb::auth_server::AuthServer;
use metastore_proto::etcdserverpb::cluster_server::ClusterServer;
use metastore_proto::etcdserverpb::kv_server::KvServer;
use metastore_proto::etcdserverpb::lease_server::LeaseServer;
use metastore_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use metastore_proto::etcdserverpb::watch_server::WatchServer;
use metastore_proto::v3electionpb::election_server::ElectionServer;
use metastore_proto::v3lockpb::lock_server::LockServer;
use tonic::transport::server::TcpIncoming;

/// What a stop may take beyond the shutdown timeout before the process just exits.
const STOP_SLACK: std::time::Duration = std::time::Duration::from_secs(2);

/// How often a gateway re-announces its client URLs to the cluster.
const PUBLISH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// etcd's gRPC receive limit: `--max-request-bytes` plus 512 KiB of slack.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

pub async fn run(cfg: Config) -> Result<(), String> {
    // The connections' drain is bounded by the shutdown timeout; the whole stop by a little
    // more.
    let stop = metastore_cli::shutdown::on_signals(cfg.shutdown_timeout + STOP_SLACK);
    let addrs: Vec<std::net::SocketAddr> = cfg.listen_client.iter().map(|l| l.addr).collect();
    let listeners = metastore_cli::bind_all("listen-client-urls", &addrs).await?;
    // TLS towards clients (certificate files re-read when they change) and towards storaged.
    let server_tls = if cfg.listen_client.iter().any(|l| l.tls) {
        Some(metastore_cli::tls::ServerTls::load(
            cfg.tls.clone(),
            &addrs,
        )?)
    } else {
        None
    };
    let identity = cfg
        .storage_identity
        .as_ref()
        .map(|(c, k)| (c.as_path(), k.as_path()));
    if cfg.storage_skip_verify {
        metastore_cli::rpc::use_unverified_tls(metastore_cli::tls::unverified_client_config(
            identity, &addrs,
        )?);
    } else if cfg.storage_ca.is_some() || cfg.storage_identity.is_some() {
        metastore_cli::rpc::use_client_tls(metastore_cli::tls::client_config(
            cfg.storage_ca.as_deref(),
            identity,
        )?);
    }
    for listener in metastore_cli::bind_all("listen-metrics-urls", &cfg.listen_metrics).await? {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, "serving metrics");
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, crate::metrics::route::<()>()).await {
                tracing::warn!(error = %e, "metrics listener failed");
            }
        });
    }
    let upstream = Upstream::new(&cfg.storage_endpoints)?;
    upstream.spawn_recovery();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(metastore_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| format!("reflection: {e}"))?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    let recv_limit = cfg.limits.max_request_bytes + GRPC_OVERHEAD_BYTES;
    // A JSON body carries the request's bytes as base64 (4/3) with field names around them.
    let http_body_limit = recv_limit * 2;
    let kv_service = std::sync::Arc::new(KvService::new(upstream.clone(), cfg.limits));
    let watch_service = std::sync::Arc::new(WatchService::new(upstream.clone(), cfg.watch));
    let lease_service = std::sync::Arc::new(LeaseService::new(
        upstream.clone(),
        KeepAliveHub::spawn(upstream.clone()),
    ));
    let cluster_service = std::sync::Arc::new(ClusterService::new(
        upstream.clone(),
        cfg.advertise_client_urls.clone(),
    ));
    let maintenance_service = std::sync::Arc::new(MaintenanceService::new(upstream.clone()));
    let lock_service = std::sync::Arc::new(LockService::new(upstream.clone()));
    let election_service = std::sync::Arc::new(ElectionService::new(upstream.clone()));
    let auth_service = std::sync::Arc::new(AuthService::new(upstream.clone()));
    // Announce this gateway's client URLs under its preferred member (again after a
    // failover, or if the first attempts find no leader); unchanged announcements cost no
    // log entry.
    let publisher = upstream.clone();
    let advertised = cfg.advertise_client_urls.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PUBLISH_INTERVAL);
        loop {
            tick.tick().await;
            if let Err(e) = publisher.publish(&advertised).await {
                tracing::debug!(error = %e, "publishing client URLs failed; will retry");
            }
        }
    });
    let rate_limit = crate::limits::RateLimitLayer::new(cfg.rate_limits);
    let connections = ConnectionLimit::new(cfg.max_connections);
    let mut tasks = tokio::task::JoinSet::new();
    for (listener, listen) in listeners.into_iter().zip(&cfg.listen_client) {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(%addr, storage = ?cfg.storage_endpoints, advertise = ?cfg.advertise_client_urls, "serving etcd clients");
        let kv = KvServer::from_arc(kv_service.clone())
            .max_decoding_message_size(recv_limit)
            .max_encoding_message_size(usize::MAX);
        let watch = WatchServer::from_arc(watch_service.clone())
            .max_decoding_message_size(recv_limit)
            .max_encoding_message_size(usize::MAX);
        let grpc = tonic::service::Routes::new(kv)
            .add_service(watch)
            .add_service(LeaseServer::from_arc(lease_service.clone()))
            .add_service(ClusterServer::from_arc(cluster_service.clone()))
            .add_service(MaintenanceServer::from_arc(maintenance_service.clone()))
            .add_service(LockServer::from_arc(lock_service.clone()))
            .add_service(ElectionServer::from_arc(election_service.clone()))
            .add_service(AuthServer::from_arc(auth_service.clone()))
            .add_service(health.clone())
            .add_service(reflection.clone())
            .into_axum_router();
        if tasks.is_empty() {
            crate::http::health::spawn_grpc_health(
                crate::http::local::Local::new(grpc.clone()),
                health_reporter.clone(),
            );
        }
        // One listener for everything, as etcd: gRPC (HTTP/2) by its paths, the HTTP routes
        // over HTTP/1.1 or h2c.
        let router = tonic::transport::Server::builder()
            .accept_http1(true)
            .max_concurrent_streams(cfg.max_concurrent_streams)
            .http2_keepalive_interval(Some(cfg.keepalive_interval))
            .http2_keepalive_timeout(Some(cfg.keepalive_timeout))
            .layer(crate::metrics::grpc_layer())
            .layer(metastore_cli::telemetry::ServerSpanLayer::CLIENTS)
            .layer(CutStreamsLayer::new(stop.clone(), Error::Stopped.into()))
            .layer(rate_limit.clone())
            .layer(TokenLayer {
                cert_users: cfg.tls.client_cert_auth,
            })
            .add_routes(front_door(grpc, http_body_limit).into());
        let tcp = TcpIncoming::from(listener).with_nodelay(Some(true));
        let stopped = stop.clone().cancelled_owned();
        // TLS is terminated before the authority fix, which reads the HTTP/2 bytes.
        match (&server_tls, listen.tls) {
            (Some(tls), true) => {
                let incoming = connections.serve(metastore_cli::tls::accept(tcp, tls.clone()));
                tasks.spawn(router.serve_with_incoming_shutdown(incoming, stopped));
            }
            _ => {
                let incoming = connections.serve(tcp);
                tasks.spawn(router.serve_with_incoming_shutdown(incoming, stopped));
            }
        }
    }
    // On SIGTERM or SIGINT the listeners stop accepting, streams end with `server stopped`
    // (clients reconnect elsewhere) and unary calls in flight finish; what is still open after
    // the shutdown timeout is dropped.
    metastore_cli::shutdown::join_servers(tasks, &stop, cfg.shutdown_timeout).await?;
    tracing::info!("gateway stopped");
    Ok(())
}
