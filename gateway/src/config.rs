//! Gateway settings: flags (etcd's names where the meaning is the same), `METASTORE_*`
//! environment variables, a YAML `--config` file, then defaults.

use crate::etcd::watch::WatchLimits;
use clap::Parser;
use metastore_request::Limits;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Deserialize, Default, Debug)]
#[command(
    name = "metastore-gateway",
    version,
    about = "MetaStore gateway: the etcd v3 API"
)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Args {
    /// YAML file with any of these settings (keys are the flag names).
    #[arg(long, env = "METASTORE_CONFIG")]
    #[serde(skip)]
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
    /// Log filter (RUST_LOG wins) [default: info].
    #[arg(long, env = "METASTORE_LOG_LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Debug)]
pub struct Config {
    pub listen_client: Vec<SocketAddr>,
    pub advertise_client_urls: Vec<String>,
    pub storage_endpoints: Vec<String>,
    pub limits: Limits,
    pub watch: WatchLimits,
    pub log_level: String,
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
            log_level: self.log_level.or(file.log_level),
        }
    }

    pub fn resolve(self) -> Result<Config, String> {
        let file: Args = metastore_cli::load_yaml(self.config.as_deref())?;
        let a = self.or(file);
        let listen = a
            .listen_client_urls
            .unwrap_or_else(|| "http://127.0.0.1:2379".into());
        let listen_client = metastore_cli::parse_urls("listen-client-urls", &listen)?;
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
            watch,
            advertise_client_urls: split(&advertise),
            storage_endpoints: split(&storage),
            limits,
            log_level: a.log_level.unwrap_or_else(|| "info".into()),
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
