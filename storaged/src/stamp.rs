//! The response header every answer of this member carries: etcd fills the cluster id, the
//! member id and the raft term on the member serving the client; the revision comes from the
//! operation.

use crate::node::Node;
use metastore_internal_proto::storage::WatchUpstreamResponse;
use metastore_internal_proto::storage::auth_response::Result as AuthResult;
use metastore_internal_proto::storage::cluster_response::Result as ClusterResult;
use metastore_internal_proto::storage::kv_response::Result as KvResult;
use metastore_internal_proto::storage::watch_upstream_response::Kind;
use metastore_proto::etcdserverpb::ResponseHeader;

/// This member's header fields, as of when they were taken.
#[derive(Clone, Copy)]
pub struct Stamp {
    cluster_id: u64,
    member_id: u64,
    raft_term: u64,
}

impl Stamp {
    pub fn of(node: &Node) -> Self {
        Self {
            cluster_id: node.identity().cluster_id,
            member_id: node.identity().member_id,
            raft_term: node.raft_term(),
        }
    }

    /// Fills the member's fields of `header` (created when missing), keeping its revision.
    pub fn apply(self, header: &mut Option<ResponseHeader>) {
        let h = header.get_or_insert_with(Default::default);
        h.cluster_id = self.cluster_id;
        h.member_id = self.member_id;
        h.raft_term = self.raft_term;
    }

    /// A header at `revision`.
    pub fn at(self, revision: i64) -> Option<ResponseHeader> {
        let mut header = Some(ResponseHeader {
            revision,
            ..Default::default()
        });
        self.apply(&mut header);
        header
    }

    /// Stamps the header of an answer that has one (errors have none).
    pub fn answer(self, answer: &mut impl Headed) {
        if let Some(header) = answer.header() {
            self.apply(header);
        }
    }
}

/// An answer that may carry a response header.
pub trait Headed {
    fn header(&mut self) -> Option<&mut Option<ResponseHeader>>;
}

impl Headed for KvResult {
    fn header(&mut self) -> Option<&mut Option<ResponseHeader>> {
        Some(match self {
            KvResult::Range(x) => &mut x.header,
            KvResult::Put(x) => &mut x.header,
            KvResult::DeleteRange(x) => &mut x.header,
            KvResult::Txn(x) => &mut x.header,
            KvResult::Compact(x) => &mut x.header,
            KvResult::LeaseGrant(x) => &mut x.header,
            KvResult::LeaseRevoke(x) => &mut x.header,
            KvResult::LeaseTimeToLive(x) => &mut x.header,
            KvResult::LeaseLeases(x) => &mut x.header,
            KvResult::Alarm(x) => &mut x.header,
            KvResult::Downgrade(x) => &mut x.header,
            KvResult::WatchAccess(_) | KvResult::Error(_) => return None,
        })
    }
}

impl Headed for ClusterResult {
    fn header(&mut self) -> Option<&mut Option<ResponseHeader>> {
        Some(match self {
            ClusterResult::MemberList(x) => &mut x.header,
            ClusterResult::MemberAdd(x) => &mut x.header,
            ClusterResult::MemberRemove(x) => &mut x.header,
            ClusterResult::MemberUpdate(x) => &mut x.header,
            ClusterResult::MemberPromote(x) => &mut x.header,
            ClusterResult::Error(_) => return None,
        })
    }
}

impl Headed for AuthResult {
    fn header(&mut self) -> Option<&mut Option<ResponseHeader>> {
        Some(match self {
            AuthResult::Enable(x) => &mut x.header,
            AuthResult::Disable(x) => &mut x.header,
            AuthResult::Status(x) => &mut x.header,
            AuthResult::Authenticate(x) => &mut x.header,
            AuthResult::UserAdd(x) => &mut x.header,
            AuthResult::UserGet(x) => &mut x.header,
            AuthResult::UserList(x) => &mut x.header,
            AuthResult::UserDelete(x) => &mut x.header,
            AuthResult::UserChangePassword(x) => &mut x.header,
            AuthResult::UserGrantRole(x) => &mut x.header,
            AuthResult::UserRevokeRole(x) => &mut x.header,
            AuthResult::RoleAdd(x) => &mut x.header,
            AuthResult::RoleGet(x) => &mut x.header,
            AuthResult::RoleList(x) => &mut x.header,
            AuthResult::RoleDelete(x) => &mut x.header,
            AuthResult::RoleGrantPermission(x) => &mut x.header,
            AuthResult::RoleRevokePermission(x) => &mut x.header,
            AuthResult::Error(_) => return None,
        })
    }
}

impl Headed for WatchUpstreamResponse {
    fn header(&mut self) -> Option<&mut Option<ResponseHeader>> {
        Some(match &mut self.kind {
            Some(Kind::Created(x)) => &mut x.header,
            Some(Kind::Events(x)) => &mut x.header,
            Some(Kind::Progress(x)) => &mut x.header,
            Some(Kind::Compacted(x)) => &mut x.header,
            None => return None,
        })
    }
}
