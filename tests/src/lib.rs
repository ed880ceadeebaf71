//! The one harness every black-box test uses: start real `metastore-storaged` and
//! `metastore-gateway` processes (already built; tests never build) or a real `etcd`, on free
//! loopback ports, and stop them when the test ends.

use anyhow::{Context, Result, bail};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod certs;
pub mod cluster;
pub mod corpus;
pub mod deployment;
pub mod watching;

pub use cluster::Cluster;
pub use deployment::{Case, Deployment, Topology, retry_until};
pub use metastore_proto::etcdserverpb::kv_client::KvClient;
pub use metastore_proto::etcdserverpb::watch_client::WatchClient;

/// Both engines, for tests that are about several members by nature (raft, failover) and
/// so take engines only; every other test runs over [`Case::ALL`] through [`matrix!`].
pub const ENGINES: [&str; 2] = ["memory", "rocksdb"];

/// Directory with the built binaries: the test executable lives in `<target>/<profile>/deps`.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("METASTORE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

pub fn binary(name: &str) -> Result<PathBuf> {
    let path = bin_dir().join(name);
    if !path.exists() {
        bail!(
            "{} not found: build the binaries first (cargo build --workspace)",
            path.display()
        );
    }
    Ok(path)
}

/// A port nobody listens on right now, never handed out twice by this process. Ports come
/// from below Linux's ephemeral range (32768 and up), so neither an outgoing connection nor a
/// port-0 bind elsewhere takes one while a stopped member waits to be restarted on it (the
/// OS's port 0 could give a freed port to a test running in parallel).
pub fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port below the ephemeral range")
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_port(port: u16, child: &mut Child, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{what} did not listen on port {port} within 30 s")
}

/// A process killed (SIGKILL) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Sends SIGTERM and waits up to `within` for the process to exit; the time it took and
    /// its exit status. A process still running at the deadline is an error (and is killed).
    pub fn terminate(&mut self, within: Duration) -> Result<(Duration, std::process::ExitStatus)> {
        let started = Instant::now();
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status()?;
        anyhow::ensure!(sent.success(), "kill -TERM {pid} failed");
        loop {
            if let Some(status) = self.0.try_wait()? {
                return Ok((started.elapsed(), status));
            }
            if started.elapsed() > within {
                let _ = self.0.kill();
                anyhow::bail!("process {pid} still running {within:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A gRPC channel to `endpoint`, retried until it connects (up to 20 s).
pub async fn channel(endpoint: &str) -> Result<tonic::transport::Channel> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match tonic::transport::Endpoint::from_shared(endpoint.to_string())?
            .connect()
            .await
        {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub async fn connect_kv(endpoint: &str) -> Result<KvClient<tonic::transport::Channel>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match KvClient::connect(endpoint.to_string()).await {
            Ok(c) => return Ok(c.max_decoding_message_size(64 << 20)),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A real etcd (Debian's `etcd` binary) on free ports, data in a temp dir.
pub struct Etcd {
    pub dir: tempfile::TempDir,
    pub client_port: u16,
    _proc: Proc,
}

impl Etcd {
    pub fn start() -> Result<Self> {
        Self::launch(|_, _| Ok(()))
    }

    /// A real etcd whose data is `snapshot` restored with `etcdctl snapshot restore` (the
    /// documented way to bring an etcd snapshot file back).
    pub fn restored_from(snapshot: &Path) -> Result<Self> {
        let snapshot = snapshot.to_str().context("snapshot path")?;
        Self::launch(|data_dir, peer| {
            let data_dir = data_dir.to_str().context("data dir")?;
            etcdctl(&[
                "snapshot",
                "restore",
                snapshot,
                "--data-dir",
                data_dir,
                "--name",
                "diff",
                &format!("--initial-cluster=diff={peer}"),
                &format!("--initial-advertise-peer-urls={peer}"),
            ])
            .map(drop)
        })
    }

    /// Starts etcd after `prepare` (given the data dir and the peer URL) made its data dir.
    /// An etcd that exits right after it started listening (another process took one of its
    /// ports first) is started again on other ports.
    fn launch(prepare: impl Fn(&Path, &str) -> Result<()>) -> Result<Self> {
        let mut last = None;
        for _ in 0..3 {
            match Self::launch_once(&prepare) {
                Ok(etcd) => return Ok(etcd),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
    }

    fn launch_once(prepare: &impl Fn(&Path, &str) -> Result<()>) -> Result<Self> {
        let bin = which("etcd")
            .context("the differential tests need a real etcd: apt-get install -y etcd-server")?;
        let dir = tempfile::tempdir()?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let data_dir = dir.path().join("etcd");
        prepare(&data_dir, &peer)?;
        let mut child = Command::new(bin)
            .args(["--name", "diff"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .arg(format!("--initial-cluster=diff={peer}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("etcd.log"))?)
            .spawn()
            .context("spawn etcd")?;
        wait_port(client_port, &mut child, "etcd")?;
        // Listening is not enough: the port may be another process's. etcd must still run.
        std::thread::sleep(Duration::from_millis(100));
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(dir.path().join("etcd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            bail!("etcd exited with {status} after it started: {tail:?}");
        }
        Ok(Self {
            dir,
            client_port,
            _proc: Proc(child),
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
}

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A channel receiver as a gRPC request stream (for bidirectional calls in tests).
pub struct RequestStream<T>(pub tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for RequestStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// A request stream that yields `items`, then ends.
pub fn stream_of<T>(items: Vec<T>) -> RequestStream<T> {
    let (tx, rx) = tokio::sync::mpsc::channel(items.len().max(1));
    for item in items {
        let _ = tx.try_send(item);
    }
    RequestStream(rx)
}

/// Asserts that `got` holds the same answers as `reference` (a real etcd's), step by step.
pub fn assert_same_answers<T: PartialEq + std::fmt::Debug>(
    case: impl std::fmt::Display,
    reference: &[T],
    got: &[T],
) {
    for (i, (want, got)) in reference.iter().zip(got).enumerate() {
        assert_eq!(got, want, "{case}: step {i} differs");
    }
    assert_eq!(got.len(), reference.len(), "{case}: number of steps");
}

/// Code and message of a failed `etcd-client` call (what etcd clients match on).
pub fn grpc_status(e: &etcd_client::Error) -> (tonic::Code, String) {
    match e {
        etcd_client::Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => (tonic::Code::Unknown, other.to_string()),
    }
}

/// Runs `etcdctl` (API 3) with `args`; its stdout, or an error with its stderr.
pub fn etcdctl(args: &[&str]) -> Result<String> {
    let bin = which("etcdctl").context("apt-get install -y etcd-client")?;
    let out = Command::new(bin)
        .env("ETCDCTL_API", "3")
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every key (with its revisions, version and lease) at `revision` (0: now) and the header's
/// revision, or the error, as text: what two stores holding the same data answer alike.
pub async fn range_all(endpoint: &str, revision: i64) -> Result<String> {
    let mut kv = connect_kv(endpoint).await?;
    let r = kv
        .range(metastore_proto::etcdserverpb::RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision,
            ..Default::default()
        })
        .await;
    Ok(match r {
        Ok(r) => {
            let r = r.into_inner();
            let rev = r.header.map_or(0, |h| h.revision);
            format!("revision {rev}, {} keys: {:?}", r.count, r.kvs)
        }
        Err(s) => format!("error {:?}: {}", s.code(), s.message()),
    })
}
