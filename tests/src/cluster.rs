//! A storaged raft group of N members with gateways in front, for multi-member tests.

use crate::{Proc, binary, free_port, wait_port};
use anyhow::{Context, Result, bail};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct MemberSpec {
    pub name: String,
    pub storage_port: u16,
    pub peer_port: u16,
    /// Where the member serves Prometheus `/metrics`.
    pub metrics_port: u16,
}

/// `n` storaged members (names s1..sN) and gateways, each gateway preferring a member.
pub struct Cluster {
    pub engine: String,
    pub dir: tempfile::TempDir,
    pub members: Vec<MemberSpec>,
    pub procs: Vec<Option<Proc>>,
    pub gateway_ports: Vec<u16>,
    /// Gateway processes, with the member each one prefers.
    gateways: Vec<(Option<Proc>, usize)>,
    /// Extra storaged flags (for example a small `--snapshot-count`).
    pub storaged_args: Vec<String>,
    /// Extra gateway flags.
    pub gateway_args: Vec<String>,
    /// Environment variables of every member process (failpoints).
    pub member_env: Vec<(String, String)>,
    /// When set, members started from now on log to `<dir>/<name>.log` (appending) instead of
    /// the test's stderr, so a test can look for what a member did.
    pub member_logs: bool,
    /// `http` or `https`: the scheme of the members' peer and storage URLs (the gateways'
    /// client URLs stay `http`).
    pub internal_scheme: &'static str,
}

impl Cluster {
    /// Starts `n` members and `gateways` gateways; gateway `g` prefers member `g % n`.
    pub fn start(engine: &str, n: usize, gateways: usize, storaged_args: &[&str]) -> Result<Self> {
        Self::start_with(engine, n, gateways, storaged_args, &[])
    }

    /// Like [`Cluster::start`], each member logging to its own file ([`Cluster::member_log`]).
    pub fn start_logged(
        engine: &str,
        n: usize,
        gateways: usize,
        storaged_args: &[&str],
    ) -> Result<Self> {
        Self::start_configured(engine, n, gateways, storaged_args, &[], |c| {
            c.member_logs = true
        })
    }

    /// Like [`Cluster::start_with`], the members' peer and storage URLs `https://` (the flags
    /// with the certificates go in `storaged_args` and `gateway_args`).
    pub fn start_internal_tls(
        engine: &str,
        n: usize,
        gateways: usize,
        storaged_args: &[&str],
        gateway_args: &[&str],
    ) -> Result<Self> {
        Self::start_configured(engine, n, gateways, storaged_args, gateway_args, |c| {
            c.internal_scheme = "https"
        })
    }

    /// `n` members and `gateways` gateways with these flags, after `configure` set the rest.
    fn start_configured(
        engine: &str,
        n: usize,
        gateways: usize,
        storaged_args: &[&str],
        gateway_args: &[&str],
        configure: impl FnOnce(&mut Cluster),
    ) -> Result<Self> {
        let mut c = Self::unstarted(engine, n)?;
        c.storaged_args = storaged_args.iter().map(|s| s.to_string()).collect();
        c.gateway_args = gateway_args.iter().map(|s| s.to_string()).collect();
        configure(&mut c);
        c.launch(gateways)?;
        Ok(c)
    }

    /// Like [`Cluster::start`], with extra gateway flags.
    pub fn start_with(
        engine: &str,
        n: usize,
        gateways: usize,
        storaged_args: &[&str],
        gateway_args: &[&str],
    ) -> Result<Self> {
        Self::start_env(engine, n, gateways, storaged_args, gateway_args, &[])
    }

    /// Like [`Cluster::start_with`], with environment variables for every member (failpoints).
    pub fn start_env(
        engine: &str,
        n: usize,
        gateways: usize,
        storaged_args: &[&str],
        gateway_args: &[&str],
        member_env: &[(&str, &str)],
    ) -> Result<Self> {
        Self::start_configured(engine, n, gateways, storaged_args, gateway_args, |c| {
            c.member_env = member_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        })
    }

    /// `n` members on `engine` whose data dirs are first restored from `snapshot` with
    /// `metastore-ctl snapshot restore` (each with the new cluster's members), and gateways.
    pub fn restored_from(
        engine: &str,
        n: usize,
        gateways: usize,
        snapshot: &std::path::Path,
    ) -> Result<Self> {
        let mut c = Self::unstarted(engine, n)?;
        for m in &c.members {
            let out = Command::new(binary("metastore-ctl")?)
                .args(["snapshot", "restore"])
                .arg(snapshot)
                .arg("--data-dir")
                .arg(c.dir.path().join(&m.name))
                .args(["--name", &m.name, "--engine", engine])
                .arg(format!("--initial-cluster={}", c.initial_cluster()))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{}",
                    m.peer_port
                ))
                .output()?;
            if !out.status.success() {
                bail!(
                    "metastore-ctl snapshot restore: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        c.launch(gateways)?;
        Ok(c)
    }

    /// Members with ports and a data dir, nothing started.
    fn unstarted(engine: &str, n: usize) -> Result<Self> {
        let mut members = Vec::new();
        for i in 0..n {
            members.push(MemberSpec {
                name: format!("s{}", i + 1),
                storage_port: free_port()?,
                peer_port: free_port()?,
                metrics_port: free_port()?,
            });
        }
        Ok(Cluster {
            engine: engine.to_string(),
            dir: tempfile::tempdir()?,
            members,
            procs: (0..n).map(|_| None).collect(),
            gateway_ports: Vec::new(),
            gateways: Vec::new(),
            storaged_args: Vec::new(),
            gateway_args: Vec::new(),
            member_env: Vec::new(),
            internal_scheme: "http",
            member_logs: false,
        })
    }

    /// Starts every member, waits until each listens, then starts the gateways.
    fn launch(&mut self, gateways: usize) -> Result<()> {
        let n = self.members.len();
        let c = self;
        for i in 0..n {
            c.spawn_member(i)?;
        }
        for i in 0..n {
            c.wait_member(i)?;
        }
        for g in 0..gateways {
            c.start_gateway(g % n)?;
        }
        Ok(())
    }

    pub fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "{}={}://127.0.0.1:{}",
                    m.name, self.internal_scheme, m.peer_port
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Where member `i` logs when [`Cluster::member_logs`] is set.
    pub fn member_log(&self, i: usize) -> std::path::PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    /// The value of `key` in member `i`'s own store (a serializable read on its storage
    /// port, no gateway): what that member holds, not what the cluster answers.
    pub async fn member_get(&self, i: usize, key: &str) -> Result<Option<Vec<u8>>> {
        use metastore_internal_proto::storage::KvRequest;
        use metastore_internal_proto::storage::kv_request::Op;
        use metastore_internal_proto::storage::kv_response::Result as KvResult;
        use metastore_internal_proto::storage::storage_client::StorageClient;
        let url = format!("http://127.0.0.1:{}", self.members[i].storage_port);
        let mut client = StorageClient::connect(url).await?;
        let reply = client
            .kv(KvRequest {
                context: None,
                op: Some(Op::Range(metastore_proto::etcdserverpb::RangeRequest {
                    key: key.as_bytes().to_vec(),
                    serializable: true,
                    ..Default::default()
                })),
            })
            .await?
            .into_inner();
        match reply.result {
            Some(KvResult::Range(r)) => Ok(r.kvs.first().map(|kv| kv.value.clone())),
            other => bail!("member {i}: range answered {other:?}"),
        }
    }

    /// Member `i`'s HashKV at `revision` (hash and compact revision), asked on its storage port.
    pub async fn member_hash_kv(&self, i: usize, revision: i64) -> Result<(u32, i64)> {
        use metastore_internal_proto::storage::storage_client::StorageClient;
        use metastore_proto::etcdserverpb::HashKvRequest;
        let url = format!("http://127.0.0.1:{}", self.members[i].storage_port);
        let mut client = StorageClient::connect(url).await?;
        let reply = client
            .hash_kv(metastore_internal_proto::storage::HashKvAsk {
                request: Some(HashKvRequest { revision }),
                context: None,
            })
            .await?
            .into_inner();
        match reply.response {
            Some(r) => Ok((r.hash, r.compact_revision)),
            None => bail!("member {i}: HashKV failed: {:?}", reply.error),
        }
    }

    /// Defragments member `i` (on its storage port) and answers its size after.
    pub async fn defragment_member(&self, i: usize) -> Result<i64> {
        use metastore_internal_proto::storage::storage_client::StorageClient;
        use metastore_internal_proto::storage::{DefragmentAsk, StatusRequest};
        let url = format!("http://127.0.0.1:{}", self.members[i].storage_port);
        let mut client = StorageClient::connect(url).await?;
        let reply = client
            .defragment(DefragmentAsk::default())
            .await?
            .into_inner();
        if let Some(e) = reply.error {
            bail!("member {i}: defragment failed: {e:?}");
        }
        let status = client.status(StatusRequest {}).await?.into_inner();
        Ok(status.status.map_or(0, |s| s.db_size))
    }

    /// Whether member `i` has member `id` recorded as having run (asked on its storage port).
    pub async fn member_knows_started(&self, i: usize, id: u64) -> Result<bool> {
        use metastore_internal_proto::storage::MemberInfoRequest;
        use metastore_internal_proto::storage::storage_client::StorageClient;
        let url = format!("http://127.0.0.1:{}", self.members[i].storage_port);
        let mut client = StorageClient::connect(url).await?;
        let reply = client
            .member_info(MemberInfoRequest { about_member: id })
            .await?
            .into_inner();
        Ok(reply.about_member_started)
    }

    fn spawn_member(&mut self, i: usize) -> Result<()> {
        let stderr = if self.member_logs {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.member_log(i))?;
            Stdio::from(f)
        } else {
            Stdio::inherit()
        };
        let m = &self.members[i];
        let child = Command::new(binary("metastore-storaged")?)
            .args(["--name", &m.name, "--engine", &self.engine])
            .arg("--data-dir")
            .arg(self.dir.path().join(&m.name))
            .arg(format!(
                "--listen-storage-urls={}://127.0.0.1:{}",
                self.internal_scheme, m.storage_port
            ))
            .arg(format!(
                "--listen-metrics-urls=http://127.0.0.1:{}",
                m.metrics_port
            ))
            .arg(format!(
                "--listen-peer-urls={}://127.0.0.1:{}",
                self.internal_scheme, m.peer_port
            ))
            .arg(format!(
                "--initial-advertise-peer-urls={}://127.0.0.1:{}",
                self.internal_scheme, m.peer_port
            ))
            .arg(format!("--initial-cluster={}", self.initial_cluster()))
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(&self.storaged_args)
            .envs(self.member_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("spawn storaged")?;
        self.procs[i] = Some(Proc(child));
        Ok(())
    }

    fn wait_member(&mut self, i: usize) -> Result<()> {
        let port = self.members[i].storage_port;
        let proc = self.procs[i].as_mut().context("member not running")?;
        wait_port(port, &mut proc.0, "storaged")
    }

    /// (Re)starts member `i` with its data dir.
    pub fn start_member(&mut self, i: usize) -> Result<()> {
        self.spawn_member(i)?;
        self.wait_member(i)
    }

    /// SIGKILL member `i`.
    pub fn kill_member(&mut self, i: usize) {
        self.procs[i] = None;
    }

    /// SIGTERMs member `i` and waits up to `within` for it to exit (see [`Proc::terminate`]).
    pub fn terminate_member(
        &mut self,
        i: usize,
        within: Duration,
    ) -> Result<(Duration, std::process::ExitStatus)> {
        let mut proc = self.procs[i].take().context("member not running")?;
        proc.terminate(within)
    }

    /// SIGTERMs gateway `g` and waits up to `within` for it to exit.
    pub fn terminate_gateway(
        &mut self,
        g: usize,
        within: Duration,
    ) -> Result<(Duration, std::process::ExitStatus)> {
        let mut proc = self.gateways[g].0.take().context("gateway not running")?;
        proc.terminate(within)
    }

    /// Starts a gateway whose storage endpoints begin with member `first`.
    pub fn start_gateway(&mut self, first: usize) -> Result<u16> {
        let port = free_port()?;
        let child = self.spawn_gateway(first, port)?;
        self.gateways.push((Some(child), first));
        self.gateway_ports.push(port);
        Ok(port)
    }

    /// SIGKILLs gateway `g`.
    pub fn kill_gateway(&mut self, g: usize) {
        self.gateways[g].0 = None;
    }

    /// SIGKILLs gateway `g` and starts it again on the same address.
    pub fn restart_gateway(&mut self, g: usize) -> Result<()> {
        self.gateways[g].0 = None;
        let child = self.spawn_gateway(self.gateways[g].1, self.gateway_ports[g])?;
        self.gateways[g].0 = Some(child);
        Ok(())
    }

    fn spawn_gateway(&self, first: usize, port: u16) -> Result<Proc> {
        let n = self.members.len();
        let endpoints: Vec<String> = (0..n)
            .map(|k| {
                format!(
                    "{}://127.0.0.1:{}",
                    self.internal_scheme,
                    self.members[(first + k) % n].storage_port
                )
            })
            .collect();
        let url = format!("http://127.0.0.1:{port}");
        let mut child = Command::new(binary("metastore-gateway")?)
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--storage-endpoints={}", endpoints.join(",")))
            .args(&self.gateway_args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn gateway")?;
        wait_port(port, &mut child, "gateway")?;
        Ok(Proc(child))
    }

    pub fn gateway(&self, g: usize) -> String {
        format!("http://127.0.0.1:{}", self.gateway_ports[g])
    }

    pub async fn client(&self, g: usize) -> Result<etcd_client::Client> {
        Ok(etcd_client::Client::connect([self.gateway(g)], None).await?)
    }

    /// Index of the member that leads, as seen through gateway `g`, waiting up to 20 s.
    pub async fn leader(&self, g: usize) -> Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = self.client(g).await
                && let Ok(status) = c.status().await
                && status.leader() != 0
                && let Ok(list) = c.member_list().await
                && let Some(m) = list.members().iter().find(|m| m.id() == status.leader())
                && let Some(i) = self.members.iter().position(|s| s.name == m.name())
                && self.procs[i].is_some()
            {
                return Ok(i);
            }
            if Instant::now() > deadline {
                bail!("no leader within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Cluster {
    /// Starts a new member `name` on `peer_port` that joins the running cluster
    /// (`--initial-cluster-state existing`, after a MemberAdd); returns its index.
    pub fn add_member(&mut self, name: &str, peer_port: u16) -> Result<usize> {
        self.members.push(MemberSpec {
            name: name.to_string(),
            storage_port: free_port()?,
            peer_port,
            metrics_port: free_port()?,
        });
        self.procs.push(None);
        let i = self.members.len() - 1;
        self.storaged_args.extend([
            "--initial-cluster-state".to_string(),
            "existing".to_string(),
        ]);
        let started = self.start_member(i);
        let len = self.storaged_args.len();
        self.storaged_args.truncate(len - 2);
        started.map(|()| i)
    }
}
