//! What etcd's Lock and Election services share: one owner key per lease under `name/`,
//! claimed with one Txn, and a wait (with watches) until every key under `name/` created
//! before it is gone. Every step is an ordinary KV call or watch through [`Upstream`], so the
//! keys are plain etcd keys any client can read and watch; nothing is held beyond a request.

use crate::error::Error;
use crate::upstream::{Upstream, UpstreamWatch};
use metastore_internal_proto::storage::kv_request::Op;
use metastore_internal_proto::storage::watch_upstream_response::Kind;
use metastore_internal_proto::storage::{WatchEvents, WatchStart};
use metastore_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use metastore_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use metastore_proto::etcdserverpb::request_op::Request as RequestKind;
use metastore_proto::etcdserverpb::response_op::Response as ResponseKind;
use metastore_proto::etcdserverpb::{
    Compare, LeaseGrantRequest, PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseHeader,
    TxnRequest, TxnResponse,
};
use metastore_proto::mvccpb::KeyValue;
use metastore_proto::mvccpb::event::EventType;
use std::time::Duration;
use tonic::{Response, Status};

/// TTL of the lease granted for a Lock or Campaign that names none (etcd's session default).
/// It is never kept alive, so such an ownership ends within this time.
pub const SESSION_TTL: i64 = 60;

/// Pause before looking again when a watch ended without telling anything.
const LOST_WATCH_PAUSE: Duration = Duration::from_millis(50);

/// The answer of a Lock or Election call, errors as etcd sends them from these services
/// ([`Error::to_status_via_client`]).
pub fn answer<T>(r: Result<T, Error>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(|e| e.to_status_via_client())
}

/// `name/`: every owner key of `name` starts with it.
pub fn prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// The owner key of `lease` under `name`: `name/` and the lease id in lowercase hex.
pub fn owner_key(name: &[u8], lease: i64) -> Vec<u8> {
    let mut k = prefix(name);
    k.extend_from_slice(format!("{lease:x}").as_bytes());
    k
}

/// The end of the range of every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// `lease`, or when it is 0 a new lease of [`SESSION_TTL`] seconds that nobody keeps alive.
pub async fn lease_or_grant(up: &Upstream, lease: i64) -> Result<i64, Error> {
    if lease != 0 {
        return Ok(lease);
    }
    let grant = LeaseGrantRequest {
        ttl: SESSION_TTL,
        id: 0,
    };
    let granted = expect_result!(up.kv(Op::LeaseGrant(grant)).await?, LeaseGrant)?;
    Ok(granted.id)
}

/// A linearizable range over the keys of `prefix`: the one created first (`oldest`) or last,
/// only among keys created at or before `max_create_revision` when it is not 0.
fn by_creation(prefix: &[u8], oldest: bool, max_create_revision: i64) -> RangeRequest {
    let order = if oldest {
        SortOrder::Ascend
    } else {
        SortOrder::Descend
    };
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision,
        ..Default::default()
    }
}

async fn range(up: &Upstream, r: RangeRequest) -> Result<RangeResponse, Error> {
    expect_result!(up.kv(Op::Range(r)).await?, Range)
}

/// The first key created under `name/` and the header of the read; `None` when there is none.
pub async fn oldest(
    up: &Upstream,
    name: &[u8],
) -> Result<(ResponseHeader, Option<KeyValue>), Error> {
    let r = range(up, by_creation(&prefix(name), true, 0)).await?;
    Ok((r.header.unwrap_or_default(), r.kvs.into_iter().next()))
}

/// A linearizable read of `key`: the header of the read and the key, when it exists.
pub async fn get(up: &Upstream, key: &[u8]) -> Result<(ResponseHeader, Option<KeyValue>), Error> {
    let r = range(
        up,
        RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        },
    )
    .await?;
    Ok((r.header.unwrap_or_default(), r.kvs.into_iter().next()))
}

pub async fn txn(up: &Upstream, t: TxnRequest) -> Result<TxnResponse, Error> {
    expect_result!(up.kv(Op::Txn(t)).await?, Txn)
}

/// `create_revision(key) == revision`.
pub fn created_at(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
        ..Default::default()
    }
}

fn op(request: RequestKind) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

/// The outcome of [`claim`].
pub struct Claim {
    pub key: Vec<u8>,
    /// The claim's revision: when the key was created.
    pub revision: i64,
    /// The value the key held before this claim, when it already existed.
    pub existing: Option<Vec<u8>>,
    /// The first key created under `name/` after the claim.
    pub oldest: Option<KeyValue>,
    pub header: ResponseHeader,
}

/// One Txn: create the owner key of `lease` with `value` unless it exists, and read the
/// oldest key under `name/`.
pub async fn claim(up: &Upstream, name: &[u8], lease: i64, value: &[u8]) -> Result<Claim, Error> {
    let key = owner_key(name, lease);
    let oldest = op(RequestKind::RequestRange(by_creation(
        &prefix(name),
        true,
        0,
    )));
    let put = PutRequest {
        key: key.clone(),
        value: value.to_vec(),
        lease,
        ..Default::default()
    };
    let get = RangeRequest {
        key: key.clone(),
        ..Default::default()
    };
    let t = TxnRequest {
        compare: vec![created_at(&key, 0)],
        success: vec![op(RequestKind::RequestPut(put)), oldest.clone()],
        failure: vec![op(RequestKind::RequestRange(get)), oldest],
    };
    let r = txn(up, t).await?;
    let header = r.header.unwrap_or_default();
    let mut ranges = r.responses.into_iter().filter_map(|o| match o.response {
        Some(ResponseKind::ResponseRange(r)) => Some(r),
        _ => None,
    });
    let (revision, existing) = if r.succeeded {
        (header.revision, None)
    } else {
        let mine = ranges.next().and_then(|r| r.kvs.into_iter().next());
        let mine = mine.ok_or_else(|| Error::Internal("owner key vanished in its txn".into()))?;
        (mine.create_revision, Some(mine.value))
    };
    let oldest = ranges.next().and_then(|r| r.kvs.into_iter().next());
    Ok(Claim {
        key,
        revision,
        existing,
        oldest,
        header,
    })
}

/// Waits until no key under `prefix` created at or before `max_create_revision` is left;
/// returns the header of the read that found none.
pub async fn wait_deletes(
    up: &Upstream,
    prefix: &[u8],
    max_create_revision: i64,
) -> Result<ResponseHeader, Error> {
    loop {
        let r = range(up, by_creation(prefix, false, max_create_revision)).await?;
        let header = r.header.unwrap_or_default();
        match r.kvs.first() {
            None => return Ok(header),
            Some(kv) => wait_delete(up, &kv.key, header.revision).await?,
        }
    }
}

/// Waits until `key` is deleted at or after `from`, or the watch ends without saying
/// (compacted, member lost): the caller looks again either way.
async fn wait_delete(up: &Upstream, key: &[u8], from: i64) -> Result<(), Error> {
    let start = WatchStart {
        key: key.to_vec(),
        start_revision: from,
        ..Default::default()
    };
    let (mut watch, _) = up.open_watch(start).await?;
    while let Some(e) = next_events(&mut watch).await {
        if e.events
            .iter()
            .any(|ev| ev.r#type == EventType::Delete as i32)
        {
            break;
        }
    }
    Ok(())
}

/// The next events of `watch`; `None` once it ended or its revisions were compacted (after
/// a short pause when it just ended), so the caller reads the keys again.
pub async fn next_events(watch: &mut UpstreamWatch) -> Option<WatchEvents> {
    loop {
        match watch.message().await {
            Ok(Some(m)) => match m.kind {
                Some(Kind::Events(e)) => return Some(e),
                Some(Kind::Compacted(_)) => return None,
                _ => {}
            },
            Ok(None) | Err(_) => {
                tokio::time::sleep(LOST_WATCH_PAUSE).await;
                return None;
            }
        }
    }
}

/// Deletes `key` in the background if dropped armed: a Lock or Campaign whose caller went
/// away while it waited gives its claim up, as etcd does.
pub struct GiveUpOnDrop {
    armed: Option<(Upstream, TxnRequest)>,
}

impl GiveUpOnDrop {
    /// Deletes `key` if it still holds the claim made at `revision`.
    pub fn new(up: &Upstream, key: &[u8], revision: i64) -> Self {
        Self {
            armed: Some((up.clone(), resign_txn(key, revision))),
        }
    }

    pub fn disarm(mut self) {
        self.armed = None;
    }
}

impl Drop for GiveUpOnDrop {
    fn drop(&mut self) {
        if let Some((up, t)) = self.armed.take() {
            crate::caller::spawn(async move {
                if let Err(e) = txn(&up, t).await {
                    tracing::debug!(error = %e, "giving up an abandoned claim failed");
                }
            });
        }
    }
}

/// Deletes `key` if it was created at `revision` (the claim is still the same one).
pub fn resign_txn(key: &[u8], revision: i64) -> TxnRequest {
    let delete = metastore_proto::etcdserverpb::DeleteRangeRequest {
        key: key.to_vec(),
        ..Default::default()
    };
    TxnRequest {
        compare: vec![created_at(key, revision)],
        success: vec![op(RequestKind::RequestDeleteRange(delete))],
        failure: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }
}
