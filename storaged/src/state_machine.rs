//! The state machine: applies write commands in log order to the MVCC store.
//!
//! Each command is applied in one engine batch together with its log index, so after a crash
//! the store knows exactly which entries it holds: no entry is applied twice or lost. A command
//! that fails validation (say, a compacted revision) still consumes its index and changes
//! nothing else, as a committed raft entry would.

use crate::mvcc::KvView as _;
use crate::mvcc::{MvccError, Store};
use metastore_internal_proto::storage::{GatewayInfo, RaftCommand};
use metastore_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, TxnRequest, TxnResponse,
};
use metastore_proto::etcdserverpb::{
    LeaseCheckpoint, LeaseCheckpointRequest, LeaseGrantRequest, LeaseRevokeRequest,
};
use prost::Message;
use std::sync::Arc;

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
        }
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
        };
        RaftCommand {
            command: Some(command),
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
            None => return Err("empty raft command".to_string()),
        })
    }
}

/// Log entries carry commands as their protobuf encoding.
impl serde::Serialize for Command {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.to_proto().encode_to_vec())
    }
}

impl<'de> serde::Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let bytes: Vec<u8> = serde_bytes_vec(d)?;
        let msg = RaftCommand::decode(bytes.as_slice()).map_err(D::Error::custom)?;
        Command::from_proto(msg).map_err(D::Error::custom)
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

#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    /// Lease changes report the store revision after them.
    Lease {
        revision: i64,
    },
    /// Cluster metadata was recorded (no revision is taken).
    Recorded,
}

pub struct StateMachine {
    store: Arc<Store>,
}

impl StateMachine {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// Index of the last applied entry (0 when none).
    pub fn applied_index(&self) -> u64 {
        self.store.applied_index()
    }

    /// Applies entry `index`. Returns the domain outcome of the command; an `Err` from the
    /// outer result means the engine failed and nothing was applied.
    pub fn apply(
        &self,
        index: u64,
        cmd: &Command,
    ) -> Result<Result<Applied, MvccError>, MvccError> {
        self.apply_marked(index, None, cmd)
    }

    /// Like [`StateMachine::apply`], storing the raft layer's applied state in the same batch.
    pub fn apply_marked(
        &self,
        index: u64,
        raft_state: Option<Vec<u8>>,
        cmd: &Command,
    ) -> Result<Result<Applied, MvccError>, MvccError> {
        self.store.write_marked(index, raft_state, |w| {
            let outcome = match cmd {
                Command::Put(r) => w.apply_put(r).map(Applied::Put),
                Command::DeleteRange(r) => w.apply_delete_range(r).map(Applied::DeleteRange),
                Command::Txn(r) => w.apply_txn(r).map(Applied::Txn),
                Command::Compact(r) => w.apply_compact(r).map(Applied::Compact),
                Command::LeaseGrant { id, ttl } => {
                    w.grant_lease(*id, *ttl).map(|()| Applied::Lease {
                        revision: w.visible_revision(),
                    })
                }
                Command::LeaseRevoke { id } => w.revoke_lease(*id).map(|()| Applied::Lease {
                    revision: w.visible_revision(),
                }),
                Command::LeaseCheckpoint(c) => {
                    for &(id, remaining) in c {
                        w.checkpoint_lease(id, remaining);
                    }
                    Ok(Applied::Lease {
                        revision: w.visible_revision(),
                    })
                }
                Command::PublishGateway {
                    member_id,
                    client_urls,
                } => {
                    let (key, value) = crate::gateways::record(*member_id, client_urls);
                    w.put_meta(key, value);
                    Ok(Applied::Recorded)
                }
                Command::WithdrawGateway { client_urls } => {
                    w.delete_meta(crate::gateways::record(0, client_urls).0);
                    Ok(Applied::Recorded)
                }
            };
            match outcome {
                Err(e @ MvccError::Engine(_)) => Err(e),
                Err(e) if w.changed() => Err(e),
                other => Ok(other),
            }
        })
    }
}
