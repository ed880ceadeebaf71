//! Starts and controls real `metastore-storaged` members and `metastore-gateway` processes:
//! kill -9, SIGSTOP/SIGCONT, SIGTERM, restart with the same data dir and addresses. Members
//! live in network namespaces when the harness has them ([`Net`]), else on loopback ports.

use crate::net::{self, Net, PEER_PORT, STORAGE_PORT};
use anyhow::{Context, Result, bail};
use metastore_internal_proto::storage::storage_client::StorageClient;
use metastore_internal_proto::storage::{MemberInfoRequest, StatusRequest};
use metastore_proto::etcdserverpb::HashKvRequest;
use metastore_tests::free_port;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Member slots a run may use (3 initial members plus members added by `member-churn`).
pub const MAX_SLOTS: usize = 6;

/// Where member slot `i` listens.
pub struct Slot {
    pub name: String,
    /// host:port of the storage service (what gateways and the harness reach).
    pub storage: String,
    /// host:port of the peer service.
    pub peer: String,
}

impl Slot {
    pub fn peer_url(&self) -> String {
        format!("http://{}", self.peer)
    }
    pub fn storage_url(&self) -> String {
        format!("http://{}", self.storage)
    }
}

/// A member's own view, from its storage port (not through a gateway).
#[derive(Clone, Debug)]
pub struct MemberStatus {
    pub id: u64,
    pub leader: u64,
    pub term: u64,
    pub revision: i64,
    pub raft_index: u64,
    pub applied: u64,
    pub db_size: i64,
}

struct Gateway {
    port: u16,
    /// Member slots in the order the gateway is given them (the first is preferred).
    endpoints: Vec<usize>,
    child: Option<Child>,
}

pub struct Cluster {
    pub engine: String,
    pub dir: PathBuf,
    bin_dir: PathBuf,
    net: Option<Arc<Net>>,
    pub slots: Vec<Slot>,
    procs: Vec<Option<Child>>,
    stopped: Vec<bool>,
    /// Slots that are members of the raft group now (started and not removed).
    pub members: Vec<usize>,
    /// `--initial-cluster` each slot was first started with (and whether it joined).
    bootstrap: Vec<Option<(String, bool)>>,
    gateways: Vec<Gateway>,
    storaged_args: Vec<String>,
    /// Environment of every storaged process (failpoints).
    storaged_env: Vec<(String, String)>,
    pub election_timeout_ms: u64,
}

fn log_file(dir: &Path, name: &str, what: &str) -> Result<(Stdio, Stdio)> {
    let path = dir.join("logs").join(format!("{name}.log"));
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    writeln!(f, "=== robustness: {what} ===")?;
    let f2 = f.try_clone()?;
    Ok((Stdio::from(f), Stdio::from(f2)))
}

fn signal(child: &Child, sig: &str) -> Result<()> {
    net::run(&["kill", sig, &child.id().to_string()])
}

impl Cluster {
    /// Starts `n` members (slots 0..n) and one gateway per entry of `gateways` (the slot it
    /// prefers). With `all_slot_endpoints`, every gateway is given all [`MAX_SLOTS`] storage
    /// endpoints (members added later are reachable without restarting gateways).
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        engine: &str,
        dir: &Path,
        bin_dir: &Path,
        net: Option<Arc<Net>>,
        n: usize,
        gateways: &[usize],
        all_slot_endpoints: bool,
        storaged_args: Vec<String>,
        storaged_env: Vec<(String, String)>,
        election_timeout_ms: u64,
    ) -> Result<Cluster> {
        std::fs::create_dir_all(dir.join("logs"))?;
        let mut slots = Vec::new();
        for i in 0..MAX_SLOTS {
            let (storage, peer) = match &net {
                Some(net) => (
                    format!("{}:{STORAGE_PORT}", net.ip(i)),
                    format!("{}:{PEER_PORT}", net.ip(i)),
                ),
                None => (
                    format!("127.0.0.1:{}", free_port()?),
                    format!("127.0.0.1:{}", free_port()?),
                ),
            };
            slots.push(Slot {
                name: format!("s{}", i + 1),
                storage,
                peer,
            });
        }
        let mut c = Cluster {
            engine: engine.to_string(),
            dir: dir.to_path_buf(),
            bin_dir: bin_dir.to_path_buf(),
            net,
            slots,
            procs: (0..MAX_SLOTS).map(|_| None).collect(),
            stopped: vec![false; MAX_SLOTS],
            members: (0..n).collect(),
            bootstrap: vec![None; MAX_SLOTS],
            gateways: Vec::new(),
            storaged_args,
            storaged_env,
            election_timeout_ms,
        };
        let initial: Vec<String> = (0..n)
            .map(|i| format!("{}={}", c.slots[i].name, c.slots[i].peer_url()))
            .collect();
        let initial = initial.join(",");
        for i in 0..n {
            c.bootstrap[i] = Some((initial.clone(), false));
            c.spawn_member(i)?;
        }
        for i in 0..n {
            c.wait_member(i).await?;
        }
        for &first in gateways {
            let count = if all_slot_endpoints { MAX_SLOTS } else { n };
            let endpoints = (0..count).map(|k| (first + k) % count).collect();
            let port = free_port()?;
            c.gateways.push(Gateway {
                port,
                endpoints,
                child: None,
            });
            let g = c.gateways.len() - 1;
            c.spawn_gateway(g).await?;
        }
        Ok(c)
    }

    pub fn net(&self) -> Option<&Net> {
        self.net.as_deref()
    }

    fn spawn_member(&mut self, i: usize) -> Result<()> {
        let slot = &self.slots[i];
        let (initial, existing) = self.bootstrap[i]
            .clone()
            .context("member slot was never configured")?;
        let bin = self.bin_dir.join("metastore-storaged");
        let mut cmd = match &self.net {
            Some(net) => {
                let ns = net.ensure_ns(i)?;
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &ns]).arg(&bin);
                cmd
            }
            None => Command::new(&bin),
        };
        cmd.args(["--name", &slot.name, "--engine", &self.engine])
            .arg("--data-dir")
            .arg(self.dir.join("data").join(&slot.name))
            .arg(format!("--listen-storage-urls={}", slot.storage_url()))
            .arg(format!("--listen-peer-urls={}", slot.peer_url()))
            .arg(format!("--initial-advertise-peer-urls={}", slot.peer_url()))
            .arg(format!("--initial-cluster={initial}"))
            .args(["--heartbeat-interval", "50"])
            .args(["--election-timeout", &self.election_timeout_ms.to_string()]);
        if existing {
            cmd.args(["--initial-cluster-state", "existing"]);
        }
        cmd.args(&self.storaged_args);
        cmd.envs(self.storaged_env.iter().map(|(k, v)| (k, v)));
        let (out, err) = log_file(&self.dir, &slot.name, "start")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        self.procs[i] = Some(child);
        self.stopped[i] = false;
        Ok(())
    }

    async fn wait_member(&mut self, i: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = self.slots[i].storage.clone();
        loop {
            let connect = tokio::net::TcpStream::connect(addr.as_str());
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), connect).await {
                return Ok(());
            }
            if let Some(child) = self.procs[i].as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.procs[i] = None;
                bail!(
                    "{} exited early with {status} (see {})",
                    self.slots[i].name,
                    self.dir.join("logs").display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on {addr} within 30 s",
                    self.slots[i].name
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// (Re)starts member slot `i` with its data dir and waits until it listens.
    pub async fn start_member(&mut self, i: usize) -> Result<()> {
        if self.procs[i].is_some() {
            return Ok(());
        }
        self.spawn_member(i)?;
        self.wait_member(i).await
    }

    /// Starts slot `i` as a new member joining the running group (after a MemberAdd).
    pub async fn join_member(&mut self, i: usize, initial_cluster: String) -> Result<()> {
        self.bootstrap[i] = Some((initial_cluster, true));
        if !self.members.contains(&i) {
            self.members.push(i);
        }
        self.start_member(i).await
    }

    /// Marks slot `i` as removed from the group and kills it.
    pub fn forget_member(&mut self, i: usize) {
        self.kill_member(i);
        self.members.retain(|&m| m != i);
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.procs[i].is_some()
    }

    pub fn is_stopped(&self, i: usize) -> bool {
        self.stopped[i]
    }

    /// SIGKILL.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut child) = self.procs[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stopped[i] = false;
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub async fn term_member(&mut self, i: usize) {
        if let Some(mut child) = self.procs[i].take() {
            let _ = signal(&child, "-TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stopped[i] = false;
    }

    /// SIGSTOP.
    pub fn pause_member(&mut self, i: usize) -> Result<()> {
        let child = self.procs[i].as_ref().context("member not running")?;
        signal(child, "-STOP")?;
        self.stopped[i] = true;
        Ok(())
    }

    /// SIGCONT.
    pub fn resume_member(&mut self, i: usize) -> Result<()> {
        if let Some(child) = self.procs[i].as_ref() {
            signal(child, "-CONT")?;
        }
        self.stopped[i] = false;
        Ok(())
    }

    pub fn gateway_count(&self) -> usize {
        self.gateways.len()
    }

    pub fn gateway_url(&self, g: usize) -> String {
        format!("http://127.0.0.1:{}", self.gateways[g].port)
    }

    pub fn gateway_urls(&self) -> Vec<String> {
        (0..self.gateways.len())
            .map(|g| self.gateway_url(g))
            .collect()
    }

    async fn spawn_gateway(&mut self, g: usize) -> Result<()> {
        let gw = &self.gateways[g];
        let endpoints: Vec<String> = gw
            .endpoints
            .iter()
            .map(|&i| self.slots[i].storage_url())
            .collect();
        let url = format!("http://127.0.0.1:{}", gw.port);
        let name = format!("g{}", g + 1);
        let (out, err) = log_file(&self.dir, &name, "start")?;
        let bin = self.bin_dir.join("metastore-gateway");
        let child = Command::new(&bin)
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--storage-endpoints={}", endpoints.join(",")))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        if let Some(net) = &self.net {
            net.note_process(child.id());
        }
        let port = gw.port;
        self.gateways[g].child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if let Some(child) = self.gateways[g].child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.gateways[g].child = None;
                bail!("gateway {name} exited early with {status}");
            }
            if Instant::now() > deadline {
                bail!("gateway {name} did not listen within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL of gateway `g`.
    pub fn kill_gateway(&mut self, g: usize) {
        if let Some(mut child) = self.gateways[g].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts gateway `g` again on the same port (no-op when running).
    pub async fn start_gateway(&mut self, g: usize) -> Result<()> {
        if self.gateways[g].child.is_some() {
            return Ok(());
        }
        self.spawn_gateway(g).await
    }

    pub fn gateway_running(&self, g: usize) -> bool {
        self.gateways[g].child.is_some()
    }

    /// Status of member slot `i`, asked on its storage port.
    pub async fn status(&self, i: usize) -> Result<MemberStatus> {
        let mut client = self.storage_client(i).await?;
        let reply = tokio::time::timeout(
            Duration::from_secs(2),
            client.status(StatusRequest::default()),
        )
        .await
        .context("status timed out")??
        .into_inner();
        let s = reply.status.context("status reply without status")?;
        let header = s.header.unwrap_or_default();
        // Status carries no store revision; MemberInfo does.
        let info = tokio::time::timeout(
            Duration::from_secs(2),
            client.member_info(MemberInfoRequest::default()),
        )
        .await
        .context("member_info timed out")??
        .into_inner();
        Ok(MemberStatus {
            id: header.member_id,
            leader: s.leader,
            term: s.raft_term,
            revision: info.header.map(|h| h.revision).unwrap_or(0),
            raft_index: s.raft_index,
            applied: s.raft_applied_index,
            db_size: s.db_size,
        })
    }

    /// HashKV of member slot `i` at `revision`: (hash, revision it answered at).
    pub async fn hash_kv(&self, i: usize, revision: i64) -> Result<(u32, i64)> {
        let mut client = self.storage_client(i).await?;
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            client.hash_kv(metastore_internal_proto::storage::HashKvAsk {
                request: Some(HashKvRequest { revision }),
                context: None,
            }),
        )
        .await
        .context("hash_kv timed out")??
        .into_inner();
        if let Some(e) = reply.error {
            bail!("hash_kv error: {e:?}");
        }
        let r = reply.response.context("hash_kv reply without response")?;
        Ok((r.hash, r.header.map(|h| h.revision).unwrap_or(0)))
    }

    async fn storage_client(&self, i: usize) -> Result<StorageClient<tonic::transport::Channel>> {
        let channel = tonic::transport::Endpoint::from_shared(self.slots[i].storage_url())?
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await?;
        Ok(StorageClient::new(channel).max_decoding_message_size(64 << 20))
    }

    /// Running, not paused members.
    pub fn live_members(&self) -> Vec<usize> {
        self.members
            .iter()
            .copied()
            .filter(|&i| self.procs[i].is_some() && !self.stopped[i])
            .collect()
    }

    /// Statuses of the live members that answer.
    pub async fn statuses(&self) -> Vec<(usize, MemberStatus)> {
        let live = self.live_members();
        let asks = live.iter().map(|&i| self.status(i));
        let answers = futures::future::join_all(asks).await;
        live.into_iter()
            .zip(answers)
            .filter_map(|(i, s)| s.ok().map(|s| (i, s)))
            .collect()
    }

    /// The slot that leads now by the members' own say: a live member that says it leads,
    /// with the highest term (other members need not agree).
    pub async fn leader(&self) -> Option<usize> {
        self.statuses()
            .await
            .into_iter()
            .filter(|(_, s)| s.id != 0 && s.id == s.leader)
            .max_by_key(|(_, s)| s.term)
            .map(|(i, _)| i)
    }

    /// Waits until some live member leads and every live member answers; the leader's slot.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let statuses = self.statuses().await;
            let live = self.live_members().len();
            let leader = statuses
                .iter()
                .filter(|(_, s)| s.id != 0 && s.id == s.leader)
                .max_by_key(|(_, s)| s.term);
            if let Some((i, l)) = leader
                && statuses.len() == live
                && statuses
                    .iter()
                    .all(|(_, s)| s.leader == l.id && s.term == l.term)
            {
                return Ok(*i);
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = statuses
                    .iter()
                    .map(|(i, s)| {
                        format!(
                            "{}: term {} leader {:x} rev {}",
                            self.slots[*i].name, s.term, s.leader, s.revision
                        )
                    })
                    .collect();
                bail!(
                    "no agreed leader within {} s (live {live}, answering: [{}])",
                    timeout.as_secs(),
                    seen.join("; ")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Member id of slot `i` (asks it).
    pub async fn member_id(&self, i: usize) -> Result<u64> {
        Ok(self.status(i).await?.id)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for g in 0..self.gateways.len() {
            self.kill_gateway(g);
        }
        for i in 0..MAX_SLOTS {
            self.kill_member(i);
        }
    }
}
