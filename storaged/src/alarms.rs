//! etcd's alarms: which member raised which alarm (NOSPACE, CORRUPT). They are replicated
//! through raft (`Command::Alarm`) and kept as metadata records beside the data, so they
//! survive restarts and travel in snapshots. While one is active the state machine refuses
//! the writes etcd refuses: NOSPACE everything that adds data (Put, a Txn with a Put, a lease
//! grant), CORRUPT every write.

use crate::command::Command;
use crate::mvcc::{MvccError, Store};
use metastore_proto::etcdserverpb::alarm_request::AlarmAction;
use metastore_proto::etcdserverpb::request_op::Request;
use metastore_proto::etcdserverpb::{AlarmMember, AlarmRequest, AlarmType, TxnRequest};
use std::collections::BTreeSet;

/// Where alarm records live among the store's metadata.
pub const PREFIX: &[u8] = b"alarm/";

/// `alarm/`, the alarm type (4 bytes) and the member id (8 bytes), big-endian: records list
/// by type, then member.
pub fn key(m: &AlarmMember) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(&m.alarm.to_be_bytes());
    k.extend_from_slice(&m.member_id.to_be_bytes());
    k
}

/// The alarm a metadata record stands for.
pub fn member_of(key: &[u8]) -> Option<AlarmMember> {
    let rest = key.strip_prefix(PREFIX)?;
    let (alarm, member) = rest.split_at_checked(4)?;
    Some(AlarmMember {
        alarm: i32::from_be_bytes(alarm.try_into().ok()?),
        member_id: u64::from_be_bytes(member.try_into().ok()?),
    })
}

/// The command that raises `alarm` for `member_id` (the quota's NOSPACE, a corruption
/// check's CORRUPT).
pub fn raise(member_id: u64, alarm: AlarmType) -> Command {
    Command::Alarm(AlarmRequest {
        action: AlarmAction::Activate as i32,
        member_id,
        alarm: alarm as i32,
    })
}

/// The active alarms, ordered by type then member.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Alarms {
    active: BTreeSet<(i32, u64)>,
}

/// What applying an alarm command changes in the store's metadata.
pub enum Change {
    Put(Vec<u8>),
    Delete(Vec<u8>),
}

impl Alarms {
    pub fn load(store: &Store) -> Result<Self, MvccError> {
        let active = store
            .meta_with_prefix(PREFIX)?
            .iter()
            .filter_map(|(k, _)| member_of(k))
            .map(|m| (m.alarm, m.member_id))
            .collect();
        Ok(Self { active })
    }

    /// The alarms of type `alarm`, or every alarm for NONE (etcd's GET).
    pub fn list(&self, alarm: i32) -> Vec<AlarmMember> {
        self.active
            .iter()
            .filter(|(t, _)| alarm == AlarmType::None as i32 || *t == alarm)
            .map(|&(alarm, member_id)| AlarmMember { member_id, alarm })
            .collect()
    }

    fn has(&self, alarm: AlarmType) -> bool {
        self.active.iter().any(|(t, _)| *t == alarm as i32)
    }

    /// Applies ACTIVATE or DEACTIVATE: the alarms the answer lists (the one raised, also when
    /// it was already raised; the one cleared, when it was raised) and the metadata change.
    /// Type NONE and other actions change nothing.
    pub fn apply(&mut self, r: &AlarmRequest) -> (Vec<AlarmMember>, Option<Change>) {
        let m = AlarmMember {
            member_id: r.member_id,
            alarm: r.alarm,
        };
        let entry = (r.alarm, r.member_id);
        if r.alarm == AlarmType::None as i32 {
            return (Vec::new(), None);
        }
        if r.action == AlarmAction::Activate as i32 {
            let change = self.active.insert(entry).then(|| Change::Put(key(&m)));
            (vec![m], change)
        } else if r.action == AlarmAction::Deactivate as i32 && self.active.remove(&entry) {
            (vec![m], Some(Change::Delete(key(&m))))
        } else {
            (Vec::new(), None)
        }
    }

    /// The refusal an active alarm gives `cmd`, decided before anything changes.
    pub fn refusal(&self, cmd: &Command) -> Option<MvccError> {
        let client_write = matches!(
            cmd,
            Command::Put(_)
                | Command::DeleteRange(_)
                | Command::Txn(_)
                | Command::Compact(_)
                | Command::LeaseGrant { .. }
                | Command::LeaseRevoke { .. }
        );
        if client_write && self.has(AlarmType::Corrupt) {
            return Some(MvccError::CorruptAlarm);
        }
        let grows = match cmd {
            Command::Put(_) | Command::LeaseGrant { .. } => true,
            Command::Txn(t) => txn_puts(t),
            _ => false,
        };
        (grows && self.has(AlarmType::Nospace)).then_some(MvccError::NoSpace)
    }
}

/// Whether either branch of `t` (nested txns included) holds a Put.
fn txn_puts(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(Request::RequestPut(_)) => true,
            Some(Request::RequestTxn(inner)) => txn_puts(inner),
            _ => false,
        })
}

/// etcd's text form of an alarm in Status `errors` (protobuf compact text).
pub fn status_text(m: &AlarmMember) -> String {
    let name = AlarmType::try_from(m.alarm)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| m.alarm.to_string());
    format!("memberID:{} alarm:{} ", m.member_id, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use metastore_proto::etcdserverpb::{PutRequest, RequestOp};

    fn req(action: AlarmAction, alarm: AlarmType, member_id: u64) -> AlarmRequest {
        AlarmRequest {
            action: action as i32,
            member_id,
            alarm: alarm as i32,
        }
    }

    #[test]
    fn raise_list_clear() {
        let mut a = Alarms::default();
        let (listed, change) = a.apply(&req(AlarmAction::Activate, AlarmType::Nospace, 7));
        assert_eq!(listed.len(), 1);
        assert!(matches!(change, Some(Change::Put(_))));
        // Raised again: listed, nothing to store.
        let (listed, change) = a.apply(&req(AlarmAction::Activate, AlarmType::Nospace, 7));
        assert_eq!((listed.len(), change.is_none()), (1, true));
        a.apply(&req(AlarmAction::Activate, AlarmType::Corrupt, 3));
        assert_eq!(a.list(AlarmType::None as i32).len(), 2);
        assert_eq!(a.list(AlarmType::Corrupt as i32)[0].member_id, 3);
        // Member 0 is not a wildcard.
        let (listed, change) = a.apply(&req(AlarmAction::Deactivate, AlarmType::Nospace, 0));
        assert_eq!((listed.len(), change.is_none()), (0, true));
        let (listed, change) = a.apply(&req(AlarmAction::Deactivate, AlarmType::Nospace, 7));
        assert_eq!(listed.len(), 1);
        assert!(matches!(change, Some(Change::Delete(k)) if member_of(&k) == Some(listed[0])));
        // NONE changes nothing.
        let (listed, change) = a.apply(&req(AlarmAction::Activate, AlarmType::None, 1));
        assert_eq!((listed.len(), change.is_none()), (0, true));
    }

    #[test]
    fn capped_and_corrupt_modes_refuse_what_etcd_refuses() {
        let put = Command::Put(PutRequest::default());
        let nested_put = Command::Txn(TxnRequest {
            failure: vec![RequestOp {
                request: Some(Request::RequestTxn(TxnRequest {
                    success: vec![RequestOp {
                        request: Some(Request::RequestPut(PutRequest::default())),
                    }],
                    ..Default::default()
                })),
            }],
            ..Default::default()
        });
        let delete = Command::DeleteRange(Default::default());
        let mut a = Alarms::default();
        assert!(a.refusal(&put).is_none());
        a.apply(&req(AlarmAction::Activate, AlarmType::Nospace, 1));
        assert!(matches!(a.refusal(&put), Some(MvccError::NoSpace)));
        assert!(matches!(a.refusal(&nested_put), Some(MvccError::NoSpace)));
        assert!(matches!(
            a.refusal(&Command::LeaseGrant { id: 1, ttl: 5 }),
            Some(MvccError::NoSpace)
        ));
        assert!(a.refusal(&delete).is_none());
        assert!(a.refusal(&Command::Compact(Default::default())).is_none());
        a.apply(&req(AlarmAction::Activate, AlarmType::Corrupt, 1));
        assert!(matches!(a.refusal(&delete), Some(MvccError::CorruptAlarm)));
        assert!(
            a.refusal(&Command::MemberStarted { member_id: 1 })
                .is_none()
        );
    }

    #[test]
    fn status_text_is_etcds() {
        let m = AlarmMember {
            member_id: 7383792418829112008,
            alarm: AlarmType::Nospace as i32,
        };
        assert_eq!(
            status_text(&m),
            "memberID:7383792418829112008 alarm:NOSPACE "
        );
    }
}
