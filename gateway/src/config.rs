//! Gateway settings: flags (etcd's names where the meaning is the same), `METASTORE_*`
//! environment variables, etcd's `ETCD_*` variables, a YAML `--config` file, then defaults.

use crate::etcd::watch::WatchLimits;
use clap::Parser;
use metastore_request::Limits;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Default, Debug)]
#[command(
    name = "metastore-gateway",
    version,
    about = "MetaStore gateway: the etcd v3 API"
)]
pub struct Args {
    /// YAML file with any of these settings (keys are the flag names; an etcd config file's
    /// keys MetaStore has no flag for are ignored).
    #[arg(long, env = "METASTORE_CONFIG")]
    pub config: Option<PathBuf>,
    /// URLs to serve etcd clients on [default: http://127.0.0.1:2379].
    #[arg(long, env = "METASTORE_LISTEN_CLIENT_URLS")]
    pub listen_client_urls: Option<String>,
    /// URLs clients should use to reach this gateway [default: the listen URLs].
    #[arg(long, env = "METASTORE_ADVERTISE_CLIENT_URLS")]
    pub advertise_client_urls: Option<String>,
    /// storaged members' storage URLs [default: http://127.0.0.1:2390].
    #[arg(long, env = "METASTORE_STORAGE_ENDPOINTS")]
    pub storage_endpoints: Option<String>,
    /// Largest write request accepted, in bytes [default: 1572864].
    #[arg(long, env = "METASTORE_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Most operations in one txn [default: 128].
    #[arg(long, env = "METASTORE_MAX_TXN_OPS")]
    pub max_txn_ops: Option<usize>,
    /// Most watchers on one client stream [default: 50000].
    #[arg(long, env = "METASTORE_MAX_WATCHERS_PER_STREAM")]
    pub max_watchers_per_stream: Option<usize>,
    /// Most watchers on this gateway [default: 200000].
    #[arg(long, env = "METASTORE_MAX_WATCHERS")]
    pub max_watchers: Option<usize>,
    /// Idle interval before a progress_notify watcher gets a progress response, e.g. 10m,
    /// 30s, 500ms [default: 10m; at least 100ms].
    #[arg(long, env = "METASTORE_WATCH_PROGRESS_NOTIFY_INTERVAL")]
    pub watch_progress_notify_interval: Option<String>,
    #[command(flatten)]
    pub tls: metastore_cli::tls::TlsArgs,
    /// The gateway's own certificate towards `https://` storage endpoints.
    #[arg(long, env = "METASTORE_STORAGE_CERT_FILE")]
    pub storage_cert_file: Option<PathBuf>,
    /// Key of --storage-cert-file.
    #[arg(long, env = "METASTORE_STORAGE_KEY_FILE")]
    pub storage_key_file: Option<PathBuf>,
    /// CA that signs the storaged members' certificates.
    #[arg(long, env = "METASTORE_STORAGE_TRUSTED_CA_FILE")]
    pub storage_trusted_ca_file: Option<PathBuf>,
    /// Do not verify the storaged members' certificates (for members started with
    /// --auto-tls; the link is encrypted but not authenticated) [default: false].
    #[arg(long, env = "METASTORE_STORAGE_INSECURE_SKIP_TLS_VERIFY", num_args = 0..=1, default_missing_value = "true")]
    pub storage_insecure_skip_tls_verify: Option<bool>,
    /// Most concurrent streams (calls) on one client connection (etcd's flag) [default: no
    /// limit].
    #[arg(long, env = "METASTORE_MAX_CONCURRENT_STREAMS")]
    pub max_concurrent_streams: Option<u32>,
    /// Most client connections open at once over all client URLs; one more is closed as
    /// soon as it is accepted; 0 = no limit [default: 0].
    #[arg(long, env = "METASTORE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// How long a client connection may stay silent before the gateway pings it (etcd's flag),
    /// like 2h or 30s [default: 2h].
    #[arg(long, env = "METASTORE_GRPC_KEEPALIVE_INTERVAL")]
    pub grpc_keepalive_interval: Option<String>,
    /// How long the gateway waits for a ping's answer before it closes the connection (etcd's
    /// flag) [default: 20s].
    #[arg(long, env = "METASTORE_GRPC_KEEPALIVE_TIMEOUT")]
    pub grpc_keepalive_timeout: Option<String>,
    /// Requests per second the whole gateway accepts (a token bucket; streams count when they
    /// open); over it, requests get `etcdserver: too many requests` (ResourceExhausted, HTTP
    /// 429); 0 = no limit [default: 0].
    #[arg(long, env = "METASTORE_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// Requests per second each client address may send; 0 = no limit [default: 0].
    #[arg(long, env = "METASTORE_RATE_LIMIT_PER_CLIENT")]
    pub rate_limit_per_client: Option<u32>,
    /// Requests a client (and the gateway) may send at once before the rate applies
    /// [default: the rate].
    #[arg(long, env = "METASTORE_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,
    /// More URLs to serve Prometheus `/metrics` on, besides the client URLs (etcd's flag)
    /// [default: none].
    #[arg(long, env = "METASTORE_LISTEN_METRICS_URLS")]
    pub listen_metrics_urls: Option<String>,
    /// Log filter (RUST_LOG wins) [default: info].
    #[arg(long, env = "METASTORE_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format: text, or json with etcd's zap fields (level, ts, caller, msg) [default: text].
    #[arg(long, env = "METASTORE_LOG_FORMAT")]
    pub log_format: Option<String>,
    #[command(flatten)]
    pub otel: metastore_cli::telemetry::OtelArgs,
    /// How long a stopping gateway (SIGTERM or SIGINT) waits for calls in flight
    /// before it closes what is still open, like 5s [default: 5s].
    #[arg(long, env = "METASTORE_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<String>,
}

#[derive(Debug)]
pub struct Config {
    pub listen_client: Vec<metastore_cli::Listen>,
    pub tls: metastore_cli::tls::TlsFiles,
    /// Towards `https://` storage endpoints: the CA, and the gateway's certificate and key.
    pub storage_ca: Option<PathBuf>,
    pub storage_identity: Option<(PathBuf, PathBuf)>,
    /// Towards `https://` storage endpoints: encrypt without verifying the members.
    pub storage_skip_verify: bool,
    pub advertise_client_urls: Vec<String>,
    pub storage_endpoints: Vec<String>,
    pub limits: Limits,
    pub watch: WatchLimits,
    pub listen_metrics: Vec<SocketAddr>,
    pub rate_limits: crate::limits::RateLimits,
    pub max_concurrent_streams: Option<u32>,
    pub max_connections: Option<usize>,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Logs and traces.
    pub observe: metastore_cli::process::Observe,
    /// How long stopping may take once the listeners stop accepting.
    pub shutdown_timeout: Duration,
}

impl Args {
    fn or(self, file: Args) -> Args {
        Args {
            config: self.config,
            listen_client_urls: self.listen_client_urls.or(file.listen_client_urls),
            advertise_client_urls: self.advertise_client_urls.or(file.advertise_client_urls),
            storage_endpoints: self.storage_endpoints.or(file.storage_endpoints),
            max_request_bytes: self.max_request_bytes.or(file.max_request_bytes),
            max_txn_ops: self.max_txn_ops.or(file.max_txn_ops),
            max_watchers_per_stream: self
                .max_watchers_per_stream
                .or(file.max_watchers_per_stream),
            max_watchers: self.max_watchers.or(file.max_watchers),
            watch_progress_notify_interval: self
                .watch_progress_notify_interval
                .or(file.watch_progress_notify_interval),
            listen_metrics_urls: self.listen_metrics_urls.or(file.listen_metrics_urls),
            rate_limit: self.rate_limit.or(file.rate_limit),
            tls: self.tls.or(file.tls),
            storage_cert_file: self.storage_cert_file.or(file.storage_cert_file),
            storage_key_file: self.storage_key_file.or(file.storage_key_file),
            storage_trusted_ca_file: self
                .storage_trusted_ca_file
                .or(file.storage_trusted_ca_file),
            storage_insecure_skip_tls_verify: self
                .storage_insecure_skip_tls_verify
                .or(file.storage_insecure_skip_tls_verify),
            max_concurrent_streams: self.max_concurrent_streams.or(file.max_concurrent_streams),
            max_connections: self.max_connections.or(file.max_connections),
            grpc_keepalive_interval: self
                .grpc_keepalive_interval
                .or(file.grpc_keepalive_interval),
            grpc_keepalive_timeout: self.grpc_keepalive_timeout.or(file.grpc_keepalive_timeout),
            rate_limit_per_client: self.rate_limit_per_client.or(file.rate_limit_per_client),
            rate_limit_burst: self.rate_limit_burst.or(file.rate_limit_burst),
            log_level: self.log_level.or(file.log_level),
            log_format: self.log_format.or(file.log_format),
            otel: self.otel.or(file.otel),
            shutdown_timeout: self.shutdown_timeout.or(file.shutdown_timeout),
        }
    }

    pub fn resolve(self) -> Result<Config, String> {
        let file: Args = metastore_cli::load_config(self.config.as_deref())?;
        let a = self.or(file);
        let listen = a
            .listen_client_urls
            .unwrap_or_else(|| "http://127.0.0.1:2379".into());
        let listen_client = metastore_cli::parse_listen_urls("listen-client-urls", &listen)?;
        let tls = a.tls.files()?;
        if listen_client.iter().any(|l| l.tls) && !tls.has_cert() {
            return Err(
                "https:// in --listen-client-urls needs --cert-file and --key-file, or --auto-tls"
                    .into(),
            );
        }
        if a.storage_cert_file.is_some() != a.storage_key_file.is_some() {
            return Err("--storage-cert-file and --storage-key-file go together".into());
        }
        let advertise = a.advertise_client_urls.unwrap_or(listen);
        metastore_cli::parse_urls("advertise-client-urls", &advertise)?;
        let storage = a
            .storage_endpoints
            .unwrap_or_else(|| "http://127.0.0.1:2390".into());
        metastore_cli::parse_urls("storage-endpoints", &storage)?;
        let defaults = Limits::default();
        let limits = Limits {
            max_txn_ops: a.max_txn_ops.unwrap_or(defaults.max_txn_ops),
            max_request_bytes: a.max_request_bytes.unwrap_or(defaults.max_request_bytes),
        };
        if limits.max_txn_ops == 0 {
            return Err("--max-txn-ops must be at least 1".into());
        }
        let progress_interval = match a.watch_progress_notify_interval.as_deref() {
            None => Duration::from_secs(600),
            Some(s) => metastore_cli::parse_duration(s).ok_or_else(|| {
                format!("--watch-progress-notify-interval {s:?}: expected a duration like 10m, 30s or 500ms")
            })?,
        }
        .max(Duration::from_millis(100));
        let watch = WatchLimits {
            per_stream: a.max_watchers_per_stream.unwrap_or(50_000),
            per_gateway: a.max_watchers.unwrap_or(200_000),
            progress_interval,
            // etcd's gRPC receive limit: --max-request-bytes plus 512 KiB.
            fragment_bytes: limits.max_request_bytes + 512 * 1024,
        };
        Ok(Config {
            listen_client,
            tls,
            storage_ca: a.storage_trusted_ca_file.clone(),
            storage_identity: a.storage_cert_file.clone().zip(a.storage_key_file.clone()),
            storage_skip_verify: a.storage_insecure_skip_tls_verify.unwrap_or(false),
            watch,
            advertise_client_urls: split(&advertise),
            storage_endpoints: split(&storage),
            limits,
            max_concurrent_streams: a.max_concurrent_streams,
            max_connections: a.max_connections,
            keepalive_interval: duration_flag(
                "grpc-keepalive-interval",
                a.grpc_keepalive_interval.as_deref(),
                Duration::from_secs(7200),
            )?,
            keepalive_timeout: duration_flag(
                "grpc-keepalive-timeout",
                a.grpc_keepalive_timeout.as_deref(),
                Duration::from_secs(20),
            )?,
            rate_limits: crate::limits::RateLimits {
                per_client: a.rate_limit_per_client.and_then(std::num::NonZeroU32::new),
                global: a.rate_limit.and_then(std::num::NonZeroU32::new),
                burst: a.rate_limit_burst.and_then(std::num::NonZeroU32::new),
            },
            listen_metrics: match a.listen_metrics_urls.as_deref() {
                None | Some("") => Vec::new(),
                Some(urls) => metastore_cli::parse_urls("listen-metrics-urls", urls)?,
            },
            observe: metastore_cli::process::Observe {
                log_level: a.log_level.clone().unwrap_or_else(|| "info".into()),
                log_format: a.log_format.as_deref().unwrap_or("text").parse()?,
                otel: a.otel.settings()?,
            },
            shutdown_timeout: match a.shutdown_timeout.as_deref() {
                None => Duration::from_secs(5),
                Some(s) => metastore_cli::parse_duration(s).ok_or_else(|| {
                    format!("--shutdown-timeout {s:?}: expected a duration like 5s or 500ms")
                })?,
            },
        })
    }
}

fn split(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect()
}

/// A duration flag's value, or `default` when unset.
fn duration_flag(flag: &str, value: Option<&str>, default: Duration) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(s) => metastore_cli::parse_duration(s)
            .ok_or_else(|| format!("--{flag} {s:?}: expected a duration like 2h, 30s or 500ms")),
    }
}
