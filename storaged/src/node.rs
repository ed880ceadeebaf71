//! The node: where requests meet the raft group.
//!
//! Writes are proposed to raft and answered once applied on this member. Linearizable reads
//! confirm leadership with a quorum (read index) and wait for the state machine to catch up;
//! serializable reads are served from local state on any member. Work that must run on the
//! leader (writes, linearizable reads, lease bookkeeping) fails here with
//! [`NodeError::NotLeader`] on a follower; the service forwards it.

use crate::alarms::Alarms;
use crate::auth::{Auth, AuthError};
use crate::command::{Command, Proposal};
use crate::downgrade::{self, Decision, Version};
use crate::identity::Identity;
use crate::lessor::{Lessor, MIN_LEASE_TTL};
use crate::mvcc::{self, MvccError, Store};
use crate::quota::Quota;
use crate::raft::{Member, Raft, TypeConfig};
use crate::state_machine::Applied;
use metastore_internal_proto::storage::{AuthInfo, RequestContext};
use metastore_proto::etcdserverpb::{
    AlarmMember, AlarmType, DowngradeRequest, DowngradeResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseLeasesResponse, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, RangeRequest, RangeResponse, ResponseHeader,
    TxnRequest, TxnResponse,
};
use openraft::ReadPolicy;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tracing::Instrument;

/// How long a member waits to apply the entry that made a simple token it is shown.
const TOKEN_APPLY_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    #[error("request task failed: {0}")]
    Task(String),
    /// This member does not lead; the leader, when known.
    #[error("not the leader")]
    NotLeader(Option<(u64, Member)>),
    #[error("raft: {0}")]
    Raft(String),
    /// A write was proposed but its fate is unknown: its entry was discarded by a leader change
    /// (another leader may still commit it), or raft stopped while it waited. Never retried.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// This member is a learner, which serves only serializable ranges (as in etcd).
    #[error("rpc not supported for learner")]
    Learner,
}

impl<E: std::fmt::Debug + std::fmt::Display> From<RaftError<TypeConfig, E>> for NodeError
where
    E: openraft::TryAsRef<openraft::errors::ForwardToLeader<TypeConfig>>,
{
    fn from(e: RaftError<TypeConfig, E>) -> Self {
        match e.forward_to_leader() {
            Some(f) => NodeError::NotLeader(f.leader_id.zip(f.leader_node.clone())),
            None => NodeError::Raft(e.to_string()),
        }
    }
}

/// Sorts a failed proposal by what certainly happened: refused before its entry was appended
/// (not leader: safe to send elsewhere), or appended and then lost track of (unknown).
fn write_error(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> NodeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            NodeError::NotLeader(f.leader_id.zip(f.leader_node))
        }
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(f)) => {
            NodeError::OutcomeUnknown(format!("log entry discarded by a leader change ({f})"))
        }
        RaftError::APIError(other) => NodeError::Raft(other.to_string()),
        RaftError::Fatal(f) => NodeError::OutcomeUnknown(f.to_string()),
    }
}

/// Settings of a node beyond its identity.
pub struct NodeOptions {
    /// The lease checkpoint interval when lease checkpointing is on.
    pub lease_checkpoint: Option<Duration>,
    /// The raft election timeout (leases are extended by it when leadership begins).
    pub election_timeout: Duration,
    /// The backend quota writes are checked against before they are proposed.
    pub quota: Quota,
    /// The etcd version this member reports (Status, cluster version for Downgrade).
    pub etcd_version: Version,
    /// The auth layer the state machine applies to.
    pub auth: Arc<Auth>,
}

pub struct Node {
    identity: Identity,
    store: Arc<Store>,
    raft: Raft,
    lessor: Lessor,
    /// The raft term the lessor's deadlines belong to (0: none yet).
    lessor_term: AtomicU64,
    /// Added to every lease's TTL when leadership begins (etcd: the election timeout), so a
    /// lease renewed on the old leader just before it failed is not expired early.
    lease_extension: Duration,
    /// Low 48 bits of the next server-allocated lease id (start time, then a counter).
    next_lease_id: AtomicU64,
    /// Set once an entry proposed by this process has committed. A member restarted as the
    /// leader (openraft restores a committed vote) only knows a possibly stale commit index,
    /// so it must commit an entry of its own before its read index can be trusted.
    read_ready: AtomicBool,
    quota: Quota,
    etcd_version: Version,
    auth: Arc<Auth>,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

impl Node {
    pub fn new(identity: Identity, store: Arc<Store>, raft: Raft, options: NodeOptions) -> Self {
        Self {
            identity,
            store,
            raft,
            lessor: Lessor::new(options.lease_checkpoint),
            lessor_term: AtomicU64::new(0),
            lease_extension: options.election_timeout,
            next_lease_id: AtomicU64::new(lease_id_start()),
            read_ready: AtomicBool::new(false),
            quota: options.quota,
            etcd_version: options.etcd_version,
            auth: options.auth,
        }
    }

    pub fn auth(&self) -> &Arc<Auth> {
        &self.auth
    }

    /// Who a request runs as: its token's user (see [`Auth::identify`]), else the user its
    /// client's certificate names (see [`Auth::certified`]; the service has checked that the
    /// caller may say so), else nobody. A simple token made by an entry this member has not
    /// applied yet is waited for, briefly.
    pub async fn identify(&self, ctx: &RequestContext) -> Result<AuthInfo, NodeError> {
        let token = ctx.token.as_str();
        if token.is_empty() && !ctx.cert_user.is_empty() {
            return Ok(self.auth.certified(&ctx.cert_user));
        }
        let deadline = tokio::time::Instant::now() + TOKEN_APPLY_WAIT;
        loop {
            match self.auth.identify(token) {
                Err(AuthError::InvalidToken)
                    if crate::auth::tokens::index_of(token)
                        .is_some_and(|i| i > self.store.applied_index())
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                other => return other.map_err(|e| NodeError::Mvcc(e.into())),
            }
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Every member of the membership this member knows (id and peer URLs), in id order.
    pub fn members(&self) -> Vec<(u64, Member)> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        membership.nodes().map(|(id, m)| (*id, m.clone())).collect()
    }

    pub fn raft_term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    /// The current leader (id and member), if one is known.
    pub fn leader(&self) -> Option<(u64, Member)> {
        let m = self.raft.metrics().borrow_watched().clone();
        let id = m.current_leader?;
        let member = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, member))
    }

    /// Waits up to `timeout` for a leader to be known.
    pub async fn wait_leader(&self, timeout: std::time::Duration) -> Option<(u64, Member)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Proposes `proposal` and waits until it is applied here. A write that would take the
    /// store past the quota is refused instead, and this member raises the NOSPACE alarm.
    pub async fn write(&self, proposal: impl Into<Proposal>) -> Result<Applied, NodeError> {
        let proposal = proposal.into();
        // Checked by the leader, which proposes (a follower's proposal is refused and sent on).
        if self.raft.is_leader()
            && !self
                .quota
                .admits(self.store.engine().size_bytes(), &proposal.command)
        {
            self.raise_nospace().await;
            return Err(MvccError::NoSpace.into());
        }
        self.propose(proposal).await
    }

    async fn propose(&self, proposal: Proposal) -> Result<Applied, NodeError> {
        let pending = crate::metrics::proposal_started();
        let (span, _traced) = crate::traces::propose(proposal.origin);
        let resp = self
            .raft
            .client_write(proposal)
            .instrument(span)
            .await
            .map_err(|e| {
                crate::metrics::proposal_failed();
                write_error(e)
            })?;
        drop(pending);
        self.read_ready.store(true, Ordering::Release);
        Ok(resp.data.0?)
    }

    /// Records (through raft) that this member ran out of space, as etcd does when its quota
    /// refuses a write. Failing to record it only delays capped mode: the write is refused
    /// either way.
    async fn raise_nospace(&self) {
        let alarm = crate::alarms::raise(self.identity.member_id, AlarmType::Nospace);
        if let Err(e) = self.propose(alarm.into()).await {
            tracing::warn!(error = %e, "raising the NOSPACE alarm failed");
        }
    }

    /// The quota writes are checked against.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// The etcd version this member reports.
    pub fn etcd_version(&self) -> Version {
        self.etcd_version
    }

    /// etcd's Downgrade against the enabled target as of a linearizable read.
    pub async fn downgrade(&self, r: DowngradeRequest) -> Result<DowngradeResponse, NodeError> {
        self.linearize().await?;
        let store = self.store.clone();
        let enabled = blocking(move || Ok(downgrade::enabled(&store)?)).await?;
        let cluster = self.etcd_version.cluster();
        let change = match downgrade::decide(r.action, &r.version, cluster, enabled.as_deref())? {
            Decision::Valid => None,
            Decision::Enable(target) => Some(Some(target.to_string())),
            Decision::Cancel => Some(None),
        };
        if let Some(target) = change {
            self.write(Command::Downgrade(target)).await?;
        }
        Ok(DowngradeResponse {
            header: header(self.store.current_revision()),
            version: cluster.to_string(),
        })
    }

    /// Confirms with a quorum that this member leads and that everything committed before now
    /// is applied locally.
    pub async fn linearize(&self) -> Result<(), NodeError> {
        let started = std::time::Instant::now();
        let out = self
            .confirm(ReadPolicy::ReadIndex)
            .instrument(crate::traces::read_index())
            .await;
        crate::metrics::read_index(started.elapsed(), out.is_ok());
        out
    }

    /// Like [`Node::linearize`], trusting the leader lease (a quorum acknowledged this
    /// leadership less than an election timeout ago, so no other leader can exist yet) instead
    /// of a round trip. A leader that was paused or cut off finds its lease expired and
    /// refuses: it must not renew leases another leader may be expiring.
    async fn confirm(&self, policy: ReadPolicy) -> Result<(), NodeError> {
        if !self.read_ready.load(Ordering::Acquire) {
            self.raft.write_blank().await?;
            self.read_ready.store(true, Ordering::Release);
        }
        self.raft.ensure_linearizable(policy).await?;
        Ok(())
    }

    /// True when this member is in the membership without a vote. A member that has not seen
    /// the membership yet (just started, or joining) is not refused anything: it forwards to the
    /// leader like any member.
    pub fn is_learner(&self) -> bool {
        let id = self.identity.member_id;
        let metrics = self.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        membership.get_node(&id).is_some() && !membership.voter_ids().any(|v| v == id)
    }

    pub fn require_leader(&self) -> Result<(), NodeError> {
        if self.raft.is_leader() {
            Ok(())
        } else {
            Err(NodeError::NotLeader(self.leader()))
        }
    }

    /// Before a serializable read: waits until this member has caught up with what the caller
    /// was already told of (`seen`), so a client's reads never go back in time when they move
    /// between members, its own writes included. A member that stays behind for
    /// [`CATCH_UP_WAIT`] answers no leader (nothing happened; the gateway asks another).
    pub async fn catch_up(&self, seen: Seen) -> Result<(), NodeError> {
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        while self.store.current_revision() < seen.revision
            || self.store.applied_index() < seen.applied_index
        {
            if tokio::time::Instant::now() >= deadline {
                return Err(NodeError::NotLeader(None));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// The active alarms of type `alarm` (every alarm for NONE), as of a linearizable read.
    pub async fn alarms(&self, alarm: i32) -> Result<Vec<AlarmMember>, NodeError> {
        self.linearize().await?;
        let store = self.store.clone();
        blocking(move || Ok(Alarms::load(&store)?.list(alarm))).await
    }

    /// Waits until this member may serve a read: until the leader confirms a read index and
    /// it is applied here (linearizable), or until this member has caught up with `seen`
    /// (serializable). Callers check the reader's permissions after this, so a read is checked
    /// against the auth store as of the same point it reads (etcd checks after its read index
    /// too).
    pub async fn ready_to_read(&self, serializable: bool, seen: Seen) -> Result<(), NodeError> {
        if serializable {
            self.catch_up(seen).await
        } else {
            self.linearize().await
        }
    }

    /// A range of the store as it is now (after [`Node::ready_to_read`]).
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, NodeError> {
        let store = self.store.clone();
        crate::metrics::read(false);
        blocking(move || Ok(store.range(&req)?)).await
    }

    /// A txn whose ops are all reads, on the store as it is now (after
    /// [`Node::ready_to_read`]); served without a log entry.
    pub async fn read_txn(&self, req: TxnRequest) -> Result<TxnResponse, NodeError> {
        let store = self.store.clone();
        crate::metrics::read(true);
        blocking(move || Ok(mvcc::txn_read_only(&store, &req)?)).await
    }

    /// Grants a lease: the id (client-chosen or allocated here) and the TTL (raised to the
    /// minimum) are fixed before the entry is proposed, so every member applies the same.
    pub async fn lease_grant(
        &self,
        req: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, NodeError> {
        self.require_leader()?;
        let ttl = req.ttl.max(MIN_LEASE_TTL);
        let id = if req.id != 0 {
            req.id
        } else {
            self.new_lease_id()
        };
        let Applied::Lease { revision } = self.write(Command::LeaseGrant { id, ttl }).await? else {
            return Err(NodeError::Task("unexpected lease grant result".into()));
        };
        self.lessor.start(id, ttl, ttl, self.raft_term());
        Ok(LeaseGrantResponse {
            header: header(revision),
            id,
            ttl,
            error: String::new(),
        })
    }

    pub async fn lease_revoke(
        &self,
        id: i64,
        who: Option<AuthInfo>,
    ) -> Result<LeaseRevokeResponse, NodeError> {
        let revoke = Proposal {
            origin: None,
            auth: who,
            command: Command::LeaseRevoke { id },
        };
        let Applied::Lease { revision } = self.write(revoke).await? else {
            return Err(NodeError::Task("unexpected lease revoke result".into()));
        };
        self.lessor.forget(id);
        Ok(LeaseRevokeResponse {
            header: header(revision),
        })
    }

    /// Renews leases on the leader: for each id its TTL, or 0 when the lease does not exist
    /// or has expired, as etcd answers a keep-alive.
    pub async fn lease_renew(&self, ids: &[i64]) -> Result<Vec<i64>, NodeError> {
        self.require_leader()?;
        self.confirm(ReadPolicy::LeaseRead).await?;
        let granted = self.store.lease_ttls(ids);
        let term = self.raft_term();
        Ok(ids
            .iter()
            .zip(granted)
            .map(|(&id, lease)| {
                lease
                    .and_then(|(ttl, remaining)| self.lessor.renew(id, ttl, remaining > 0, term))
                    .unwrap_or(0)
            })
            .collect())
    }

    pub async fn lease_time_to_live(
        &self,
        req: &LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, NodeError> {
        self.require_leader()?;
        self.confirm(ReadPolicy::LeaseRead).await?;
        let revision = self.store.current_revision();
        Ok(match self.store.lease(req.id) {
            Some(record) => LeaseTimeToLiveResponse {
                header: header(revision),
                id: req.id,
                // Not tracked yet (leadership is new): what the lease will be given.
                ttl: self
                    .lessor
                    .remaining(req.id)
                    .unwrap_or_else(|| self.lessor.starting_ttl(record.ttl, record.remaining)),
                granted_ttl: record.ttl,
                keys: if req.keys {
                    record.keys.into_iter().collect()
                } else {
                    Vec::new()
                },
            },
            None => LeaseTimeToLiveResponse {
                header: header(revision),
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        })
    }

    pub async fn lease_leases(&self) -> Result<LeaseLeasesResponse, NodeError> {
        self.require_leader()?;
        self.confirm(ReadPolicy::LeaseRead).await?;
        let revision = self.store.current_revision();
        let mut ids: Vec<i64> = self.store.leases().into_iter().map(|l| l.0).collect();
        ids.sort_unstable();
        Ok(LeaseLeasesResponse {
            header: header(revision),
            leases: ids.into_iter().map(|id| LeaseStatus { id }).collect(),
        })
    }

    /// The lessor's periodic upkeep; only the leader (`leading`) acts. It revokes every lease
    /// whose deadline passed and records due lease checkpoints. A member that just became
    /// leader instead gives every lease a fresh TTL (or, with checkpointing, its checkpointed
    /// remaining TTL), as etcd's lessor does on promotion (deadlines are not replicated), and
    /// answers `false`, as it does when not leading: leadership is not settled yet.
    pub async fn tick_leases(&self, leading: bool) -> bool {
        if !leading {
            self.lessor_term.store(0, Ordering::Relaxed);
            return false;
        }
        // Every new term of leadership starts the clocks again, even one regained between two
        // ticks: another leader may have renewed leases meanwhile.
        let term = self.raft_term();
        if self.lessor_term.swap(term, Ordering::Relaxed) != term {
            self.lessor
                .promote(term, self.lease_extension, self.store.leases());
            return false;
        }
        for id in self.lessor.expired() {
            match self.lease_revoke(id, None).await {
                Ok(_) | Err(NodeError::Mvcc(MvccError::LeaseNotFound)) => self.lessor.forget(id),
                Err(e) => tracing::warn!(lease = id, error = %e, "lease expiry failed"),
            }
        }
        let due = self.lessor.due_checkpoints();
        for batch in due.chunks(MAX_CHECKPOINT_BATCH) {
            if let Err(e) = self.write(Command::LeaseCheckpoint(batch.to_vec())).await {
                tracing::warn!(error = %e, "lease checkpoint failed; retried next interval");
            }
            for &(id, remaining) in batch {
                self.lessor.schedule_next(id, remaining);
            }
        }
        true
    }

    /// A positive id no other grant gets: 15 bits of the member id, then a counter that
    /// starts at the member's start time in milliseconds (shifted left 8 bits), as etcd's
    /// id generator does; ids still in use are skipped.
    fn new_lease_id(&self) -> i64 {
        loop {
            let suffix = self.next_lease_id.fetch_add(1, Ordering::Relaxed) & LEASE_ID_SUFFIX;
            let prefix = (self.identity.member_id & 0x7fff) << 48;
            let id = (prefix | suffix) as i64;
            if id != 0 && !self.store.lease_exists(id) {
                return id;
            }
        }
    }
}

const LEASE_ID_SUFFIX: u64 = (1 << 48) - 1;
/// What a caller was already told of: the newest store revision and raft log index any answer
/// it received carried. Changes that create no revision (a compaction, a lease grant) move only
/// the index.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    pub revision: i64,
    pub applied_index: u64,
}

impl Seen {
    pub fn of(ctx: &metastore_internal_proto::storage::RequestContext) -> Self {
        Self {
            revision: ctx.min_revision,
            applied_index: ctx.min_applied_index,
        }
    }
}

/// How long a serializable read waits for this member to apply what its caller already saw.
const CATCH_UP_WAIT: Duration = Duration::from_secs(1);
/// Most lease checkpoints in one log entry (etcd's batch size).
const MAX_CHECKPOINT_BATCH: usize = 1000;

fn lease_id_start() -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    (ms << 8) & LEASE_ID_SUFFIX
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::Task(e.to_string()))?
}
