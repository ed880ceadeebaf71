//! What a raft log entry carries: a [`Proposal`] (a [`Command`] and, for client requests,
//! where it came from), and its wire form (the internal protobuf `RaftCommand`).

use metastore_internal_proto::storage::auth_change::Change as AuthChange;
use metastore_internal_proto::storage::{AuthInfo, GatewayInfo, RaftCommand, RequestOrigin};
use metastore_proto::etcdserverpb::downgrade_request::DowngradeAction;
use metastore_proto::etcdserverpb::{
    AlarmRequest, CompactionRequest, DeleteRangeRequest, DowngradeRequest, PutRequest, TxnRequest,
};
use metastore_proto::etcdserverpb::{
    LeaseCheckpoint, LeaseCheckpointRequest, LeaseGrantRequest, LeaseRevokeRequest,
};
use prost::Message;

/// A write as it would be carried by a log entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    /// Lease id and TTL are decided before the entry is proposed.
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    /// Remaining TTLs (lease id, seconds; 0 clears) recorded by the leader's lessor.
    LeaseCheckpoint(Vec<(i64, i64)>),
    /// A gateway's client URLs and the member it prefers.
    PublishGateway {
        member_id: u64,
        client_urls: Vec<String>,
    },
    /// The publication of a gateway that stopped announcing itself is removed.
    WithdrawGateway {
        client_urls: Vec<String>,
    },
    /// A member has run as part of the cluster (recorded once; see [`crate::bootstrap`]).
    MemberStarted {
        member_id: u64,
    },
    /// An alarm raised or cleared (see [`crate::alarms`]).
    Alarm(AlarmRequest),
    /// A downgrade enabled (`Some` target, as X.Y.0) or cancelled (see [`crate::downgrade`]).
    Downgrade(Option<String>),
    /// A change of the auth store (see [`crate::auth`]); passwords arrive hashed.
    Auth(AuthChange),
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Put(r) => write!(f, "put {:?}", String::from_utf8_lossy(&r.key)),
            Command::DeleteRange(r) => {
                write!(f, "delete-range {:?}", String::from_utf8_lossy(&r.key))
            }
            Command::Txn(r) => write!(
                f,
                "txn ({} compares, {}/{} ops)",
                r.compare.len(),
                r.success.len(),
                r.failure.len()
            ),
            Command::Compact(r) => write!(f, "compact {}", r.revision),
            Command::LeaseGrant { id, ttl } => write!(f, "lease-grant {id:x} ttl {ttl}"),
            Command::LeaseRevoke { id } => write!(f, "lease-revoke {id:x}"),
            Command::LeaseCheckpoint(c) => write!(f, "lease-checkpoint ({} leases)", c.len()),
            Command::PublishGateway {
                member_id,
                client_urls,
            } => write!(f, "gateway {client_urls:?} prefers {member_id:x}"),
            Command::WithdrawGateway { client_urls } => write!(f, "gateway {client_urls:?} gone"),
            Command::MemberStarted { member_id } => write!(f, "member {member_id:x} started"),
            Command::Alarm(a) => write!(
                f,
                "alarm action {} type {} member {:x}",
                a.action, a.alarm, a.member_id
            ),
            Command::Downgrade(Some(v)) => write!(f, "downgrade to {v} enabled"),
            Command::Downgrade(None) => write!(f, "downgrade cancelled"),
            Command::Auth(c) => write!(f, "auth {}", auth_change_name(c)),
        }
    }
}

fn auth_change_name(c: &AuthChange) -> &'static str {
    match c {
        AuthChange::Enable(_) => "enable",
        AuthChange::Disable(_) => "disable",
        AuthChange::UserAdd(_) => "user-add",
        AuthChange::UserDelete(_) => "user-delete",
        AuthChange::UserChangePassword(_) => "user-change-password",
        AuthChange::UserGrantRole(_) => "user-grant-role",
        AuthChange::UserRevokeRole(_) => "user-revoke-role",
        AuthChange::RoleAdd(_) => "role-add",
        AuthChange::RoleDelete(_) => "role-delete",
        AuthChange::RoleGrantPermission(_) => "role-grant-permission",
        AuthChange::RoleRevokePermission(_) => "role-revoke-permission",
        AuthChange::Token(_) => "token",
    }
}

/// Which client request a proposal carries: the gateway process and its request id. The
/// state machine applies a given origin once, however often it is proposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub gateway: u64,
    pub request: u64,
}

/// One log entry's payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    /// Set for client requests (when the caller named itself); internal duties carry none.
    pub origin: Option<Origin>,
    /// Set for client requests: who asks, checked when the entry is applied. `None` for the
    /// members' own entries.
    pub auth: Option<AuthInfo>,
    pub command: Command,
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.origin {
            Some(o) => write!(
                f,
                "{} (request {:x}/{})",
                self.command, o.gateway, o.request
            ),
            None => write!(f, "{}", self.command),
        }
    }
}

impl From<Command> for Proposal {
    fn from(command: Command) -> Self {
        Proposal {
            origin: None,
            auth: None,
            command,
        }
    }
}

impl Proposal {
    /// Roughly how many bytes the proposal takes in a log entry (for batching by size).
    pub fn encoded_len(&self) -> usize {
        16 + match &self.command {
            Command::Put(r) => r.encoded_len(),
            Command::DeleteRange(r) => r.encoded_len(),
            Command::Txn(r) => r.encoded_len(),
            Command::Compact(r) => r.encoded_len(),
            Command::LeaseCheckpoint(c) => 20 * c.len(),
            Command::PublishGateway { client_urls, .. }
            | Command::WithdrawGateway { client_urls } => {
                client_urls.iter().map(|u| u.len() + 2).sum::<usize>() + 12
            }
            Command::LeaseGrant { .. }
            | Command::LeaseRevoke { .. }
            | Command::MemberStarted { .. }
            | Command::Alarm(_) => 24,
            Command::Downgrade(v) => 8 + v.as_ref().map_or(0, String::len),
            Command::Auth(_) => self.command.to_proto().encoded_len(),
        } + self.auth.as_ref().map_or(0, |a| a.user.len() + 12)
    }

    pub fn to_proto(&self) -> RaftCommand {
        let mut msg = self.command.to_proto();
        msg.origin = self.origin.map(|o| RequestOrigin {
            gateway_id: o.gateway,
            request_id: o.request,
        });
        msg.auth = self.auth.clone();
        msg
    }

    pub fn from_proto(mut msg: RaftCommand) -> Result<Self, String> {
        let origin = msg.origin.take().map(|o| Origin {
            gateway: o.gateway_id,
            request: o.request_id,
        });
        Ok(Proposal {
            origin,
            auth: msg.auth.take(),
            command: Command::from_proto(msg)?,
        })
    }
}

impl Command {
    /// The command as its wire message, for the raft log.
    pub fn to_proto(&self) -> RaftCommand {
        use metastore_internal_proto::storage::raft_command::Command as C;
        let command = match self {
            Command::Put(r) => C::Put(r.clone()),
            Command::DeleteRange(r) => C::DeleteRange(r.clone()),
            Command::Txn(r) => C::Txn(r.clone()),
            Command::Compact(r) => C::Compact(*r),
            Command::LeaseGrant { id, ttl } => {
                C::LeaseGrant(LeaseGrantRequest { id: *id, ttl: *ttl })
            }
            Command::LeaseRevoke { id } => C::LeaseRevoke(LeaseRevokeRequest { id: *id }),
            Command::LeaseCheckpoint(c) => C::LeaseCheckpoint(LeaseCheckpointRequest {
                checkpoints: c
                    .iter()
                    .map(|&(id, remaining_ttl)| LeaseCheckpoint { id, remaining_ttl })
                    .collect(),
            }),
            Command::PublishGateway {
                member_id,
                client_urls,
            } => C::Gateway(GatewayInfo {
                member_id: *member_id,
                client_urls: client_urls.clone(),
            }),
            Command::WithdrawGateway { client_urls } => C::GatewayWithdrawn(GatewayInfo {
                member_id: 0,
                client_urls: client_urls.clone(),
            }),
            Command::MemberStarted { member_id } => C::MemberStarted(*member_id),
            Command::Alarm(a) => C::Alarm(*a),
            Command::Downgrade(target) => C::Downgrade(DowngradeRequest {
                action: if target.is_some() {
                    DowngradeAction::Enable
                } else {
                    DowngradeAction::Cancel
                } as i32,
                version: target.clone().unwrap_or_default(),
            }),
            Command::Auth(c) => C::AuthChange(metastore_internal_proto::storage::AuthChange {
                change: Some(c.clone()),
            }),
        };
        RaftCommand {
            command: Some(command),
            auth: None,
            origin: None,
        }
    }

    pub fn from_proto(msg: RaftCommand) -> Result<Self, String> {
        use metastore_internal_proto::storage::raft_command::Command as C;
        Ok(match msg.command {
            Some(C::Put(r)) => Command::Put(r),
            Some(C::DeleteRange(r)) => Command::DeleteRange(r),
            Some(C::Txn(r)) => Command::Txn(r),
            Some(C::Compact(r)) => Command::Compact(r),
            Some(C::LeaseGrant(r)) => Command::LeaseGrant {
                id: r.id,
                ttl: r.ttl,
            },
            Some(C::LeaseRevoke(r)) => Command::LeaseRevoke { id: r.id },
            Some(C::LeaseCheckpoint(r)) => Command::LeaseCheckpoint(
                r.checkpoints
                    .iter()
                    .map(|c| (c.id, c.remaining_ttl))
                    .collect(),
            ),
            Some(C::Gateway(g)) => Command::PublishGateway {
                member_id: g.member_id,
                client_urls: g.client_urls,
            },
            Some(C::GatewayWithdrawn(g)) => Command::WithdrawGateway {
                client_urls: g.client_urls,
            },
            Some(C::MemberStarted(member_id)) => Command::MemberStarted { member_id },
            Some(C::Alarm(a)) => Command::Alarm(a),
            Some(C::Downgrade(d)) => Command::Downgrade(
                (d.action == DowngradeAction::Enable as i32).then_some(d.version),
            ),
            Some(C::AuthChange(c)) => {
                Command::Auth(c.change.ok_or_else(|| "empty auth change".to_string())?)
            }
            None => return Err("empty raft command".to_string()),
        })
    }
}

/// Log entries carry proposals as their protobuf encoding.
impl serde::Serialize for Proposal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.to_proto().encode_to_vec())
    }
}

impl<'de> serde::Deserialize<'de> for Proposal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let bytes: Vec<u8> = serde_bytes_vec(d)?;
        let msg = RaftCommand::decode(bytes.as_slice()).map_err(D::Error::custom)?;
        Proposal::from_proto(msg).map_err(D::Error::custom)
    }
}

/// Reads a byte string written by `serialize_bytes` (formats differ in how they carry it).
fn serde_bytes_vec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = a.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    d.deserialize_bytes(V)
}
