//! Cluster membership (etcd's Cluster API) and per-member status, on top of raft membership.
//!
//! Member ids for added members are derived from their peer URLs and the cluster token, as
//! at bootstrap, so a member started with `--initial-cluster-state existing` knows its own id.
//! Responses leave their header to the service's stamp (no revision: etcd leaves it 0).

use crate::forward::{LEADER_WAIT, Leader, Redirect};
use crate::identity;
use crate::node::{Node, NodeError};
use crate::raft::Member as RaftMember;
use metastore_proto::etcdserverpb::{
    DowngradeInfo, Member, MemberAddRequest, MemberAddResponse, MemberListResponse,
    MemberPromoteResponse, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
    StatusResponse,
};
use openraft::ChangeMembers;
use openraft::async_runtime::WatchReceiver;
use std::collections::{BTreeMap, BTreeSet};

/// Membership errors with etcd's meaning; the gateway owns their text.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("member not found")]
    NotFound,
    #[error("peer URL exists")]
    PeerUrlExists,
    #[error("member exists")]
    Exists,
    #[error("member is not a learner")]
    NotLearner,
    #[error("learner not ready")]
    LearnerNotReady,
    #[error("too many learners")]
    TooManyLearners,
    #[error("not enough started members")]
    NotEnoughStarted,
    #[error("unhealthy cluster")]
    Unhealthy,
    #[error("{0:x} is not a voting member")]
    BadTransferee(u64),
    #[error("leader transfer did not complete")]
    TransferTimeout,
    /// Raft stopped while asked to transfer leadership.
    #[error("{0}")]
    Stopped(String),
    #[error(transparent)]
    Node(#[from] NodeError),
}

impl Redirect for MembershipError {
    fn redirect(self) -> Result<Leader, Self> {
        match self {
            MembershipError::Node(NodeError::NotLeader(leader)) => Ok(leader),
            other => Err(other),
        }
    }
}

/// Proposes a membership change through raft (on the leader) and waits until it applies.
async fn apply_change(
    node: &Node,
    change: ChangeMembers<u64, RaftMember>,
    retain: bool,
) -> Result<(), MembershipError> {
    node.raft()
        .change_membership(change, retain)
        .await
        .map_err(NodeError::from)?;
    Ok(())
}

/// Every member in id order (as etcd lists them).
pub fn members(node: &Node) -> Vec<Member> {
    let mut gateways = crate::gateways::by_member(node);
    let metrics = node.raft().metrics().borrow_watched().clone();
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let mut out: Vec<Member> = membership
        .nodes()
        .map(|(id, m)| Member {
            id: *id,
            name: m.name.clone(),
            peer_ur_ls: m.peer_urls.clone(),
            client_ur_ls: gateways.remove(id).unwrap_or_default(),
            is_learner: !voters.contains(id),
        })
        .collect();
    out.sort_by_key(|m| m.id);
    out
}

/// Every member as a snapshot records it (id, peer URLs, learner or not).
pub fn member_records(node: &Node) -> Vec<crate::backup::etcd_db::MemberRecord> {
    members(node)
        .into_iter()
        .map(|m| crate::backup::etcd_db::MemberRecord {
            id: m.id,
            peer_urls: m.peer_ur_ls,
            is_learner: m.is_learner,
        })
        .collect()
}

pub fn member_list(node: &Node) -> MemberListResponse {
    MemberListResponse {
        header: None,
        members: members(node),
    }
}

fn find_url_owner(node: &Node, urls: &[String]) -> Option<u64> {
    members(node)
        .into_iter()
        .find(|m| m.peer_ur_ls.iter().any(|u| urls.contains(u)))
        .map(|m| m.id)
}

pub async fn member_add(
    node: &Node,
    req: MemberAddRequest,
) -> Result<MemberAddResponse, MembershipError> {
    if find_url_owner(node, &req.peer_ur_ls).is_some() {
        return Err(MembershipError::PeerUrlExists);
    }
    let id = identity::member_id(&req.peer_ur_ls, &node.identity().token);
    let current = members(node);
    if current.iter().any(|m| m.id == id) {
        return Err(MembershipError::Exists);
    }
    if req.is_learner && current.iter().filter(|m| m.is_learner).count() >= MAX_LEARNERS {
        return Err(MembershipError::TooManyLearners);
    }
    if !req.is_learner {
        check_reconfiguration(node, Change::Add)?;
    }
    let member = RaftMember {
        name: String::new(),
        peer_urls: req.peer_ur_ls.clone(),
    };
    node.raft()
        .add_learner(id, member, false)
        .await
        .map_err(NodeError::from)?;
    if !req.is_learner {
        apply_change(
            node,
            ChangeMembers::AddVoterIds(BTreeSet::from([id])),
            false,
        )
        .await?;
    }
    let all = members(node);
    Ok(MemberAddResponse {
        header: None,
        member: all.iter().find(|m| m.id == id).cloned(),
        members: all,
    })
}

pub async fn member_remove(node: &Node, id: u64) -> Result<MemberRemoveResponse, MembershipError> {
    let current = members(node);
    let Some(m) = current.iter().find(|m| m.id == id) else {
        return Err(MembershipError::NotFound);
    };
    let change = if m.is_learner {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    } else {
        check_reconfiguration(node, Change::Remove(id))?;
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    };
    apply_change(node, change, false).await?;
    Ok(MemberRemoveResponse {
        header: None,
        members: members(node),
    })
}

pub async fn member_update(
    node: &Node,
    req: MemberUpdateRequest,
) -> Result<MemberUpdateResponse, MembershipError> {
    let current = members(node);
    let Some(m) = current.iter().find(|m| m.id == req.id) else {
        return Err(MembershipError::NotFound);
    };
    if find_url_owner(node, &req.peer_ur_ls).is_some_and(|owner| owner != req.id) {
        return Err(MembershipError::PeerUrlExists);
    }
    let updated = RaftMember {
        name: m.name.clone(),
        peer_urls: req.peer_ur_ls.clone(),
    };
    apply_change(
        node,
        ChangeMembers::SetNodes(BTreeMap::from([(req.id, updated)])),
        true,
    )
    .await?;
    Ok(MemberUpdateResponse {
        header: None,
        members: members(node),
    })
}

/// How recently the leader must have heard from a voter for it to count as connected
/// (etcd's health interval for `--strict-reconfig-check`).
const HEALTH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The voters (other than this leader) it has heard from within the health interval.
fn connected_voters(node: &Node) -> BTreeSet<u64> {
    use openraft::Instant as _;
    let metrics = node.raft().metrics().borrow_watched().clone();
    let me = node.identity().member_id;
    let mut out: BTreeSet<u64> = metrics
        .heartbeat
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, at)| at.as_ref().is_some_and(|t| t.elapsed() < HEALTH_INTERVAL))
        .map(|(id, _)| id)
        .collect();
    out.insert(me);
    out
}

/// etcd's strict reconfiguration check: after the change a quorum of the voters must be
/// started members (they have published a name), and the leader must be connected to the
/// voters (all of them to add one, a quorum of the rest to remove one).
#[derive(Clone, Copy, PartialEq)]
enum Change {
    /// A new, not yet started voter.
    Add,
    /// A started learner becomes a voter (it counts as started; no connectivity check).
    Promote,
    Remove(u64),
}

fn check_reconfiguration(node: &Node, change: Change) -> Result<(), MembershipError> {
    let all = members(node);
    let mut voters: Vec<&Member> = all.iter().filter(|m| !m.is_learner).collect();
    if let Change::Remove(r) = change {
        voters.retain(|m| m.id != r);
    }
    let adds_voter = matches!(change, Change::Add | Change::Promote);
    let size = voters.len() + usize::from(adds_voter);
    let started = voters.iter().filter(|m| !m.name.is_empty()).count()
        + usize::from(change == Change::Promote);
    // etcd lets a 1-member cluster add a second voter (to restore a cluster from one member).
    let one_to_two = change == Change::Add && size == 2 && started == 1;
    if started < size / 2 + 1 && !one_to_two {
        return Err(MembershipError::NotEnoughStarted);
    }
    let connected = connected_voters(node);
    let reachable = voters.iter().filter(|m| connected.contains(&m.id)).count();
    let healthy = match change {
        Change::Add => reachable == voters.len(),
        Change::Promote => true,
        Change::Remove(_) => reachable > voters.len() / 2,
    };
    if healthy {
        Ok(())
    } else {
        Err(MembershipError::Unhealthy)
    }
}

/// Learners allowed at once (etcd 3.4/3.5 allow one).
const MAX_LEARNERS: usize = 1;

/// Whether member `id` is recorded (in this member's replicated state) as having run.
pub fn has_started(node: &Node, id: u64) -> bool {
    matches!(
        node.store()
            .meta_with_prefix(&crate::publication::started_key(id)),
        Ok(records) if !records.is_empty()
    )
}

/// Records member `id`'s name once it has started (it is empty after MemberAdd), and that it
/// has run.
pub async fn publish_name(
    node: &Node,
    id: u64,
    name: String,
) -> Result<MemberUpdateResponse, MembershipError> {
    let metrics = node.raft().metrics().borrow_watched().clone();
    let Some(current) = metrics
        .membership_config
        .membership()
        .get_node(&id)
        .cloned()
    else {
        return Err(MembershipError::NotFound);
    };
    if current.name != name {
        let updated = RaftMember { name, ..current };
        apply_change(
            node,
            ChangeMembers::SetNodes(BTreeMap::from([(id, updated)])),
            true,
        )
        .await?;
    }
    if !has_started(node, id) {
        node.write(crate::command::Command::MemberStarted { member_id: id })
            .await?;
    }
    Ok(MemberUpdateResponse {
        header: None,
        members: members(node),
    })
}

/// etcd promotes a learner only when its matched index is at least 90% of the leader's.
fn ready_for_promotion(matched: u64, leader_last: u64) -> bool {
    matched.saturating_mul(10) >= leader_last.saturating_mul(9)
}

pub async fn member_promote(
    node: &Node,
    id: u64,
) -> Result<MemberPromoteResponse, MembershipError> {
    let current = members(node);
    let Some(m) = current.iter().find(|m| m.id == id) else {
        return Err(MembershipError::NotFound);
    };
    if !m.is_learner {
        return Err(MembershipError::NotLearner);
    }
    let metrics = node.raft().metrics().borrow_watched().clone();
    let last = metrics.last_log_index.unwrap_or(0);
    let matched = metrics
        .replication
        .as_ref()
        .and_then(|r| r.get(&id).cloned().flatten())
        .map(|log_id| log_id.index());
    if !matched.is_some_and(|m| ready_for_promotion(m, last)) {
        return Err(MembershipError::LearnerNotReady);
    }
    check_reconfiguration(node, Change::Promote)?;
    apply_change(
        node,
        ChangeMembers::AddVoterIds(BTreeSet::from([id])),
        false,
    )
    .await?;
    Ok(MemberPromoteResponse {
        header: None,
        members: members(node),
    })
}

/// Maintenance.Status facts of this member.
pub fn status(node: &Node) -> StatusResponse {
    let metrics = node.raft().metrics().borrow_watched().clone();
    let is_learner = node.is_learner();
    let size = node.store().engine().size_bytes() as i64;
    StatusResponse {
        header: None,
        version: node.etcd_version().to_string(),
        db_size: size,
        leader: metrics.current_leader.unwrap_or(0),
        raft_index: metrics.last_log_index.unwrap_or(0),
        raft_term: metrics.current_term,
        raft_applied_index: metrics.last_applied.map(|l| l.index()).unwrap_or(0),
        errors: alarm_texts(node),
        db_size_in_use: size,
        is_learner,
        db_size_quota: node.quota().limit() as i64,
        downgrade_info: Some(downgrade_info(node)),
        ..Default::default()
    }
}

/// Status `downgradeInfo` (etcd 3.6): the enabled downgrade target, if any.
fn downgrade_info(node: &Node) -> DowngradeInfo {
    match crate::downgrade::enabled(node.store()) {
        Ok(Some(target)) => DowngradeInfo {
            enabled: true,
            target_version: target,
        },
        _ => DowngradeInfo::default(),
    }
}

/// Status `errors`: every active alarm in etcd's text form.
fn alarm_texts(node: &Node) -> Vec<String> {
    match crate::alarms::Alarms::load(node.store()) {
        Ok(a) => a.list(0).iter().map(crate::alarms::status_text).collect(),
        Err(e) => vec![format!("reading alarms: {e}")],
    }
}

/// Moves leadership to voter `target` (on the leader) and waits until it leads.
pub async fn move_leader(node: &Node, target: u64) -> Result<(), MembershipError> {
    node.require_leader()?;
    if !node.raft().voter_ids().any(|v| v == target) {
        return Err(MembershipError::BadTransferee(target));
    }
    if target == node.identity().member_id {
        return Ok(());
    }
    node.raft()
        .trigger()
        .transfer_leader(target)
        .await
        .map_err(|e| MembershipError::Stopped(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    while node.leader().map(|(id, _)| id) != Some(target) {
        if tokio::time::Instant::now() >= deadline {
            return Err(MembershipError::TransferTimeout);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}
