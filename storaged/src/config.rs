//! storaged settings: flags (etcd's names where the meaning is the same), `METASTORE_*`
//! environment variables, etcd's `ETCD_*` variables, a YAML `--config` file, then defaults.

use crate::engine::EngineKind;
use crate::quota::Quota;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Default, Debug)]
#[command(
    name = "metastore-storaged",
    version,
    about = "MetaStore storage member"
)]
pub struct Args {
    /// YAML file with any of these settings (keys are the flag names; an etcd config file's
    /// keys MetaStore has no flag for are ignored).
    #[arg(long, env = "METASTORE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Human-readable name of this member.
    #[arg(long, env = "METASTORE_NAME")]
    pub name: Option<String>,
    /// Data directory [default: data/ENGINE/NAME].
    #[arg(long, env = "METASTORE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Storage engine: memory or rocksdb [default: rocksdb].
    #[arg(long, env = "METASTORE_ENGINE")]
    pub engine: Option<String>,
    /// URLs to serve the internal storage RPC (for gateways) on [default: http://127.0.0.1:2390].
    #[arg(long, env = "METASTORE_LISTEN_STORAGE_URLS")]
    pub listen_storage_urls: Option<String>,
    /// URLs to serve raft peer traffic on [default: http://127.0.0.1:2380].
    #[arg(long, env = "METASTORE_LISTEN_PEER_URLS")]
    pub listen_peer_urls: Option<String>,
    /// This member's peer URLs as other members reach them [default: http://127.0.0.1:2380].
    #[arg(long, env = "METASTORE_INITIAL_ADVERTISE_PEER_URLS")]
    pub initial_advertise_peer_urls: Option<String>,
    /// Bootstrap membership, name=peerURL,... [default: NAME=ADVERTISED-PEER-URLS].
    #[arg(long, env = "METASTORE_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// new or existing [default: new].
    #[arg(long, env = "METASTORE_INITIAL_CLUSTER_STATE")]
    pub initial_cluster_state: Option<String>,
    /// Token mixed into member and cluster ids [default: etcd-cluster].
    #[arg(long, env = "METASTORE_INITIAL_CLUSTER_TOKEN")]
    pub initial_cluster_token: Option<String>,
    /// Applied entries between snapshots (after which the log before them is purged)
    /// [default: 10000].
    #[arg(long, env = "METASTORE_SNAPSHOT_COUNT")]
    pub snapshot_count: Option<u64>,
    /// Leader heartbeat interval in milliseconds [default: 100].
    #[arg(long, env = "METASTORE_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<u64>,
    /// Election timeout in milliseconds [default: 1000].
    #[arg(long, env = "METASTORE_ELECTION_TIMEOUT")]
    pub election_timeout: Option<u64>,
    /// Record the remaining TTL of long leases through raft, so that leader changes do not
    /// renew them for ever (etcd's flag of the same name) [default: false].
    #[arg(long, env = "METASTORE_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT", num_args = 0..=1, default_missing_value = "true")]
    pub experimental_enable_lease_checkpoint: Option<bool>,
    /// How often a lease's remaining TTL is recorded when checkpointing is on, like 5m or
    /// 30s [default: 5m].
    #[arg(long, env = "METASTORE_EXPERIMENTAL_LEASE_CHECKPOINT_INTERVAL")]
    pub experimental_lease_checkpoint_interval: Option<String>,
    /// How long a gateway's published client URLs stay listed (MemberList) after its last
    /// announcement; gateways announce every 5 s [default: 30s].
    #[arg(long, env = "METASTORE_GATEWAY_PUBLICATION_TTL")]
    pub gateway_publication_ttl: Option<String>,
    /// Bytes the store may hold before writes that add data are refused and the NOSPACE
    /// alarm is raised (etcd's flag): 0 is the default of 2 GiB, a negative value turns the
    /// quota off [default: 0].
    #[arg(
        long,
        env = "METASTORE_QUOTA_BACKEND_BYTES",
        allow_hyphen_values = true
    )]
    pub quota_backend_bytes: Option<i64>,
    /// Before serving, compare this member's history with its peers' (HashKV at the same
    /// revision) and refuse to start when they differ (etcd's flag) [default: false].
    #[arg(long, env = "METASTORE_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", num_args = 0..=1, default_missing_value = "true")]
    pub experimental_initial_corrupt_check: Option<bool>,
    /// How often the leader compares every member's history and raises the CORRUPT alarm for
    /// members that differ, like 5m or 30s; 0 turns the check off (etcd's flag) [default: 0s].
    #[arg(long, env = "METASTORE_EXPERIMENTAL_CORRUPT_CHECK_TIME")]
    pub experimental_corrupt_check_time: Option<String>,
    /// The etcd version to report (Status `version`; its X.Y.0 is the cluster version that
    /// Downgrade works from). Clients such as Kubernetes turn features on by it
    /// [default: 3.4.0].
    #[arg(long, env = "METASTORE_ETCD_VERSION")]
    pub etcd_version: Option<String>,
    /// Auth token kind: `simple` (random tokens made through raft, valid on every member,
    /// dropped on restart) or `jwt,pub-key=FILE,priv-key=FILE,sign-method=RS256,ttl=5m`
    /// (signed tokens every member with the public key accepts, etcd's options; sign methods
    /// RS*, PS*, ES256, ES384, HS*, EdDSA) [default: simple].
    #[arg(long, env = "METASTORE_AUTH_TOKEN")]
    pub auth_token: Option<String>,
    /// Seconds a simple token stays valid without being used [default: 300].
    #[arg(long, env = "METASTORE_AUTH_TOKEN_TTL")]
    pub auth_token_ttl: Option<u64>,
    /// bcrypt cost of stored passwords, 4 to 31 [default: 10].
    #[arg(long, env = "METASTORE_BCRYPT_COST")]
    pub bcrypt_cost: Option<u32>,
    /// Auto-compaction mode, periodic or revision (etcd's flag) [default: periodic].
    #[arg(long, env = "METASTORE_AUTO_COMPACTION_MODE")]
    pub auto_compaction_mode: Option<String>,
    /// History to keep: for periodic a duration (`30m`, `5m0s`) or a number of hours, for
    /// revision a number of revisions; 0 turns auto-compaction off (etcd's flag) [default: 0].
    #[arg(long, env = "METASTORE_AUTO_COMPACTION_RETENTION")]
    pub auto_compaction_retention: Option<String>,
    #[command(flatten)]
    pub tls: metastore_cli::tls::TlsArgs,
    /// Certificate for `https://` peer URLs, also shown to other members when calling them
    /// (etcd's flag).
    #[arg(long, env = "METASTORE_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Key of --peer-cert-file (etcd's flag).
    #[arg(long, env = "METASTORE_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// CA that signs the members' peer certificates (etcd's flag).
    #[arg(long, env = "METASTORE_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Refuse members without a peer certificate signed by --peer-trusted-ca-file (etcd's
    /// flag) [default: false].
    #[arg(long, env = "METASTORE_PEER_CLIENT_CERT_AUTH", num_args = 0..=1, default_missing_value = "true")]
    pub peer_client_cert_auth: Option<bool>,
    /// Without --peer-cert-file, serve `https://` peer URLs with a self-signed certificate
    /// made at each start, and call other members without verifying theirs: encrypted, not
    /// authenticated (etcd's flag) [default: false].
    #[arg(long, env = "METASTORE_PEER_AUTO_TLS", num_args = 0..=1, default_missing_value = "true")]
    pub peer_auto_tls: Option<bool>,
    /// Common names (comma-separated) of the gateways' storage client certificates: a caller
    /// on the storage port presenting one may say which user a request runs as when its
    /// client authenticated with a certificate (gateways with --client-cert-auth); needs
    /// https:// storage URLs with --client-cert-auth [default: none].
    #[arg(long, env = "METASTORE_TRUSTED_GATEWAY_CN")]
    pub trusted_gateway_cn: Option<String>,
    /// RocksDB block compression of every column family: lz4, zstd or none [default: lz4].
    #[arg(long, env = "METASTORE_ROCKSDB_COMPRESSION")]
    pub rocksdb_compression: Option<String>,
    /// RocksDB block cache shared by every column family, in bytes [default: 67108864].
    #[arg(long, env = "METASTORE_ROCKSDB_BLOCK_CACHE_BYTES")]
    pub rocksdb_block_cache_bytes: Option<usize>,
    /// RocksDB bloom filter bits per key on the data column families; 0 turns filters off
    /// [default: 10].
    #[arg(long, env = "METASTORE_ROCKSDB_BLOOM_BITS")]
    pub rocksdb_bloom_bits: Option<f64>,
    /// RocksDB memtable size of each column family, in bytes; all families together hold at
    /// most twice this [default: 67108864].
    #[arg(long, env = "METASTORE_ROCKSDB_WRITE_BUFFER_BYTES")]
    pub rocksdb_write_buffer_bytes: Option<usize>,
    /// URLs to serve Prometheus `/metrics` on, like http://127.0.0.1:2381 (etcd's flag)
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
    /// How long a stopping member (SIGTERM or SIGINT) (a leader first hands leadership to its most caught-up voter) waits for calls in flight
    /// before it closes what is still open, like 5s [default: 5s].
    #[arg(long, env = "METASTORE_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<String>,
}

/// Settings after merging and checking.
#[derive(Debug)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub engine: EngineKind,
    pub listen_storage: Vec<metastore_cli::Listen>,
    pub listen_peer: Vec<metastore_cli::Listen>,
    /// TLS of the storage listener (the gateways' side).
    pub tls: metastore_cli::tls::TlsFiles,
    /// TLS of the peer listener, and of this member's calls to other members.
    pub peer_tls: metastore_cli::tls::TlsFiles,
    /// Common names of the gateway certificates trusted to name a request's certificate user.
    pub trusted_gateway_cns: Vec<String>,
    pub initial_cluster: String,
    /// True for `--initial-cluster-state existing` (join; do not bootstrap).
    pub join_existing: bool,
    pub initial_cluster_token: String,
    pub snapshot_count: u64,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    /// Lease checkpoint interval; `None` when checkpointing is off.
    pub lease_checkpoint: Option<Duration>,
    pub gateway_publication_ttl: Duration,
    pub quota: Quota,
    pub etcd_version: crate::downgrade::Version,
    pub initial_corrupt_check: bool,
    /// The periodic corruption check's interval, when it is on.
    pub corrupt_check_interval: Option<Duration>,
    pub auth: crate::auth::AuthOptions,
    /// Auto-compaction, when on.
    pub auto_compaction: Option<crate::compactor::Policy>,
    pub listen_metrics: Vec<SocketAddr>,
    pub rocksdb: crate::engine::RocksTuning,
    /// Logs and traces.
    pub observe: metastore_cli::process::Observe,
    /// How long stopping may take once the listeners stop accepting.
    pub shutdown_timeout: Duration,
}

impl Args {
    fn or(self, file: Args) -> Args {
        Args {
            config: self.config,
            name: self.name.or(file.name),
            data_dir: self.data_dir.or(file.data_dir),
            engine: self.engine.or(file.engine),
            listen_storage_urls: self.listen_storage_urls.or(file.listen_storage_urls),
            listen_peer_urls: self.listen_peer_urls.or(file.listen_peer_urls),
            initial_advertise_peer_urls: self
                .initial_advertise_peer_urls
                .or(file.initial_advertise_peer_urls),
            initial_cluster: self.initial_cluster.or(file.initial_cluster),
            initial_cluster_state: self.initial_cluster_state.or(file.initial_cluster_state),
            initial_cluster_token: self.initial_cluster_token.or(file.initial_cluster_token),
            snapshot_count: self.snapshot_count.or(file.snapshot_count),
            heartbeat_interval: self.heartbeat_interval.or(file.heartbeat_interval),
            election_timeout: self.election_timeout.or(file.election_timeout),
            experimental_enable_lease_checkpoint: self
                .experimental_enable_lease_checkpoint
                .or(file.experimental_enable_lease_checkpoint),
            experimental_lease_checkpoint_interval: self
                .experimental_lease_checkpoint_interval
                .or(file.experimental_lease_checkpoint_interval),
            gateway_publication_ttl: self
                .gateway_publication_ttl
                .or(file.gateway_publication_ttl),
            quota_backend_bytes: self.quota_backend_bytes.or(file.quota_backend_bytes),
            etcd_version: self.etcd_version.or(file.etcd_version),
            experimental_initial_corrupt_check: self
                .experimental_initial_corrupt_check
                .or(file.experimental_initial_corrupt_check),
            experimental_corrupt_check_time: self
                .experimental_corrupt_check_time
                .or(file.experimental_corrupt_check_time),
            auth_token: self.auth_token.or(file.auth_token),
            auth_token_ttl: self.auth_token_ttl.or(file.auth_token_ttl),
            bcrypt_cost: self.bcrypt_cost.or(file.bcrypt_cost),
            auto_compaction_mode: self.auto_compaction_mode.or(file.auto_compaction_mode),
            auto_compaction_retention: self
                .auto_compaction_retention
                .or(file.auto_compaction_retention),
            listen_metrics_urls: self.listen_metrics_urls.or(file.listen_metrics_urls),
            rocksdb_compression: self.rocksdb_compression.or(file.rocksdb_compression),
            tls: self.tls.or(file.tls),
            peer_cert_file: self.peer_cert_file.or(file.peer_cert_file),
            peer_key_file: self.peer_key_file.or(file.peer_key_file),
            peer_trusted_ca_file: self.peer_trusted_ca_file.or(file.peer_trusted_ca_file),
            peer_client_cert_auth: self.peer_client_cert_auth.or(file.peer_client_cert_auth),
            peer_auto_tls: self.peer_auto_tls.or(file.peer_auto_tls),
            trusted_gateway_cn: self.trusted_gateway_cn.or(file.trusted_gateway_cn),
            rocksdb_block_cache_bytes: self
                .rocksdb_block_cache_bytes
                .or(file.rocksdb_block_cache_bytes),
            rocksdb_bloom_bits: self.rocksdb_bloom_bits.or(file.rocksdb_bloom_bits),
            rocksdb_write_buffer_bytes: self
                .rocksdb_write_buffer_bytes
                .or(file.rocksdb_write_buffer_bytes),
            log_level: self.log_level.or(file.log_level),
            log_format: self.log_format.or(file.log_format),
            otel: self.otel.or(file.otel),
            shutdown_timeout: self.shutdown_timeout.or(file.shutdown_timeout),
        }
    }

    /// Merges flags/env with the config file and applies defaults.
    pub fn resolve(self) -> Result<Config, String> {
        let file: Args = metastore_cli::load_config(self.config.as_deref())?;
        let a = self.or(file);
        let auth = auth_options(&a)?;
        let rocksdb = rocksdb_tuning(&a)?;
        let name = a.name.unwrap_or_else(|| "default".into());
        let engine: EngineKind = a.engine.as_deref().unwrap_or("rocksdb").parse()?;
        let data_dir = a
            .data_dir
            .unwrap_or_else(|| PathBuf::from("data").join(engine.as_str()).join(&name));
        let tls = a.tls.files()?;
        let peer_tls = metastore_cli::tls::TlsFiles {
            cert: a.peer_cert_file.clone(),
            key: a.peer_key_file.clone(),
            trusted_ca: a.peer_trusted_ca_file.clone(),
            client_cert_auth: a.peer_client_cert_auth.unwrap_or(false),
            auto: a.peer_auto_tls.unwrap_or(false),
        };
        peer_tls.check("peer-")?;
        let listen_storage = metastore_cli::parse_listen_urls(
            "listen-storage-urls",
            a.listen_storage_urls
                .as_deref()
                .unwrap_or("http://127.0.0.1:2390"),
        )?;
        let listen_peer = metastore_cli::parse_listen_urls(
            "listen-peer-urls",
            a.listen_peer_urls
                .as_deref()
                .unwrap_or("http://127.0.0.1:2380"),
        )?;
        if listen_storage.iter().any(|l| l.tls) && !tls.has_cert() {
            return Err(
                "https:// in --listen-storage-urls needs --cert-file and --key-file, or --auto-tls"
                    .into(),
            );
        }
        if listen_peer.iter().any(|l| l.tls) && !peer_tls.has_cert() {
            return Err(
                "https:// in --listen-peer-urls needs --peer-cert-file and --peer-key-file, or --peer-auto-tls"
                    .into(),
            );
        }
        let trusted_gateway_cns: Vec<String> = a
            .trusted_gateway_cn
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|cn| !cn.is_empty())
            .map(str::to_string)
            .collect();
        let storage_checks_certs = tls.client_cert_auth && listen_storage.iter().all(|l| l.tls);
        if !trusted_gateway_cns.is_empty() && !storage_checks_certs {
            return Err(
                "--trusted-gateway-cn needs https:// --listen-storage-urls with --client-cert-auth"
                    .into(),
            );
        }
        let advertise_peer = a
            .initial_advertise_peer_urls
            .unwrap_or_else(|| "http://127.0.0.1:2380".into());
        metastore_cli::parse_urls("initial-advertise-peer-urls", &advertise_peer)?;
        let initial_cluster = a
            .initial_cluster
            .unwrap_or_else(|| format!("{name}={advertise_peer}"));
        let join_existing = match a.initial_cluster_state.as_deref().unwrap_or("new") {
            "new" => false,
            "existing" => true,
            other => {
                return Err(format!(
                    "--initial-cluster-state {other:?}: expected new or existing"
                ));
            }
        };
        let members = crate::identity::parse_initial_cluster(&initial_cluster)?;
        if !members.contains_key(&name) {
            return Err(format!(
                "--initial-cluster {initial_cluster:?} has no member named {name:?}"
            ));
        }
        let heartbeat_ms = a.heartbeat_interval.unwrap_or(100);
        let election_timeout_ms = a.election_timeout.unwrap_or(1000);
        if heartbeat_ms == 0 || election_timeout_ms < 3 * heartbeat_ms {
            return Err(format!(
                "--election-timeout ({election_timeout_ms} ms) must be at least 3 times \
                 --heartbeat-interval ({heartbeat_ms} ms)"
            ));
        }
        let interval = match a.experimental_lease_checkpoint_interval.as_deref() {
            None => Duration::from_secs(300),
            Some(s) => metastore_cli::parse_duration(s)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    format!("--experimental-lease-checkpoint-interval {s:?}: expected a duration like 5m or 30s")
                })?,
        };
        let lease_checkpoint = a
            .experimental_enable_lease_checkpoint
            .unwrap_or(false)
            .then_some(interval);
        let gateway_publication_ttl = match a.gateway_publication_ttl.as_deref() {
            None => Duration::from_secs(30),
            Some(s) => metastore_cli::parse_duration(s)
                .filter(|d| *d > Duration::from_secs(5))
                .ok_or_else(|| {
                    format!(
                        "--gateway-publication-ttl {s:?}: expected a duration above 5s, like 30s"
                    )
                })?,
        };
        let corrupt_check_interval = match a.experimental_corrupt_check_time.as_deref() {
            None => None,
            Some(s) => {
                let every = metastore_cli::parse_duration(s).ok_or_else(|| {
                    format!("--experimental-corrupt-check-time {s:?}: expected a duration like 5m or 30s")
                })?;
                (!every.is_zero()).then_some(every)
            }
        };
        let etcd_version = match a.etcd_version.as_deref() {
            None => crate::downgrade::Version::DEFAULT,
            Some(s) => crate::downgrade::Version::parse(s)
                .ok_or_else(|| format!("--etcd-version {s:?}: expected a version like 3.4.0"))?,
        };
        let auto_compaction = crate::compactor::Policy::parse(
            a.auto_compaction_mode.as_deref(),
            a.auto_compaction_retention.as_deref(),
        )?;
        Ok(Config {
            auth,
            auto_compaction,
            etcd_version,
            initial_corrupt_check: a.experimental_initial_corrupt_check.unwrap_or(false),
            corrupt_check_interval,
            lease_checkpoint,
            gateway_publication_ttl,
            name,
            data_dir,
            engine,
            listen_storage,
            listen_peer,
            tls,
            peer_tls,
            trusted_gateway_cns,
            initial_cluster,
            join_existing,
            snapshot_count: a.snapshot_count.unwrap_or(10_000).max(1),
            heartbeat_ms,
            election_timeout_ms,
            initial_cluster_token: a
                .initial_cluster_token
                .unwrap_or_else(|| "etcd-cluster".into()),
            quota: Quota::from_flag(a.quota_backend_bytes.unwrap_or(0)),
            rocksdb,
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

fn auth_options(a: &Args) -> Result<crate::auth::AuthOptions, String> {
    let jwt = match a.auth_token.as_deref().unwrap_or("simple") {
        "simple" => None,
        "jwt" => return Err(
            "--auth-token jwt: needs its options (jwt,pub-key=...,priv-key=...,sign-method=...)"
                .into(),
        ),
        other => match other.strip_prefix("jwt,") {
            Some(options) => Some(std::sync::Arc::new(
                crate::auth::jwt::JwtKeys::parse(options)
                    .map_err(|e| format!("--auth-token jwt: {e}"))?,
            )),
            None => {
                return Err(format!(
                    "--auth-token {other:?}: expected simple or jwt,..."
                ));
            }
        },
    };
    let bcrypt_cost = a.bcrypt_cost.unwrap_or(10);
    if !(4..=31).contains(&bcrypt_cost) {
        return Err(format!("--bcrypt-cost {bcrypt_cost}: expected 4 to 31"));
    }
    let ttl = a.auth_token_ttl.unwrap_or(300);
    if ttl == 0 {
        return Err("--auth-token-ttl 0: expected a number of seconds above 0".into());
    }
    Ok(crate::auth::AuthOptions {
        bcrypt_cost,
        token_ttl: Duration::from_secs(ttl),
        jwt,
    })
}

fn rocksdb_tuning(a: &Args) -> Result<crate::engine::RocksTuning, String> {
    let defaults = crate::engine::RocksTuning::default();
    let tuning = crate::engine::RocksTuning {
        compression: a
            .rocksdb_compression
            .clone()
            .unwrap_or(defaults.compression),
        block_cache_bytes: a
            .rocksdb_block_cache_bytes
            .unwrap_or(defaults.block_cache_bytes),
        bloom_bits_per_key: a.rocksdb_bloom_bits.unwrap_or(defaults.bloom_bits_per_key),
        write_buffer_bytes: a
            .rocksdb_write_buffer_bytes
            .unwrap_or(defaults.write_buffer_bytes),
    };
    crate::engine::RocksTuning::compression_type(&tuning.compression)?;
    if !(0.0..=64.0).contains(&tuning.bloom_bits_per_key) {
        return Err("--rocksdb-bloom-bits must be between 0 and 64".into());
    }
    if tuning.write_buffer_bytes < 1 << 20 {
        return Err("--rocksdb-write-buffer-bytes must be at least 1048576".into());
    }
    Ok(tuning)
}
