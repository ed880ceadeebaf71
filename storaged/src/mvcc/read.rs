//! Range, with etcd's order of operations: collect the live keys at the revision, count them,
//! apply the min/max revision filters, sort, then cut at `limit`.

use super::error::MvccError;
use super::key_index::IndexEntry;
use super::key_range::KeyRange;
use super::store::KvView;
use metastore_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use metastore_proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use metastore_proto::mvccpb::KeyValue;
use std::cmp::Ordering;

/// Checks that `rev` (0 = latest) can be read in `view` and resolves it.
pub(super) fn read_revision(view: &impl KvView, rev: i64) -> Result<i64, MvccError> {
    let current = view.visible_revision();
    if rev <= 0 {
        return Ok(current);
    }
    if rev > current {
        return Err(MvccError::FutureRev);
    }
    if rev < view.compacted_revision() {
        return Err(MvccError::Compacted);
    }
    Ok(rev)
}

pub(super) fn range(view: &impl KvView, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
    let rev = read_revision(view, req.revision)?;
    let sort_order = SortOrder::try_from(req.sort_order)
        .map_err(|_| MvccError::InvalidRequest("invalid sort option".into()))?;
    let sort_target = SortTarget::try_from(req.sort_target)
        .map_err(|_| MvccError::InvalidRequest("invalid sort option".into()))?;

    let range = KeyRange::new(&req.key, &req.range_end);
    let mut hits: Vec<(&[u8], IndexEntry)> = Vec::new();
    view.index().range(&range, rev, |k, e| {
        hits.push((k, e));
        true
    });
    let header = Some(ResponseHeader {
        revision: view.visible_revision(),
        ..Default::default()
    });
    let count = hits.len() as i64;
    if req.count_only {
        return Ok(RangeResponse {
            header,
            kvs: Vec::new(),
            more: false,
            count,
        });
    }

    if req.min_mod_revision != 0 {
        hits.retain(|(_, e)| e.rev.main >= req.min_mod_revision);
    }
    if req.max_mod_revision != 0 {
        hits.retain(|(_, e)| e.rev.main <= req.max_mod_revision);
    }
    if req.min_create_revision != 0 {
        hits.retain(|(_, e)| e.create >= req.min_create_revision);
    }
    if req.max_create_revision != 0 {
        hits.retain(|(_, e)| e.create <= req.max_create_revision);
    }

    let order = match (sort_order, sort_target) {
        (SortOrder::None, SortTarget::Key) => SortOrder::None,
        (SortOrder::None, _) => SortOrder::Ascend,
        (o, _) => o,
    };

    let limit = usize::try_from(req.limit).unwrap_or(0);
    let mut kvs: Vec<KeyValue>;
    if sort_target == SortTarget::Value && order != SortOrder::None {
        kvs = hits
            .iter()
            .map(|(_, e)| view.value(e.rev))
            .collect::<Result<_, _>>()?;
        kvs.sort_by(|a, b| directed(order, a.value.cmp(&b.value)));
    } else {
        if order != SortOrder::None {
            let field = |e: &IndexEntry, k: &[u8]| -> (i64, Vec<u8>) {
                match sort_target {
                    SortTarget::Key => (0, k.to_vec()),
                    SortTarget::Version => (e.version, Vec::new()),
                    SortTarget::Create => (e.create, Vec::new()),
                    SortTarget::Mod => (e.rev.main, Vec::new()),
                    SortTarget::Value => (0, Vec::new()),
                }
            };
            hits.sort_by(|(ka, a), (kb, b)| directed(order, field(a, ka).cmp(&field(b, kb))));
        }
        let take = if limit > 0 {
            hits.len().min(limit)
        } else {
            hits.len()
        };
        kvs = hits[..take]
            .iter()
            .map(|(_, e)| view.value(e.rev))
            .collect::<Result<_, _>>()?;
        if limit > 0 && hits.len() > limit {
            return Ok(finish(header, kvs, true, count, req.keys_only));
        }
    }
    let more = limit > 0 && kvs.len() > limit;
    if more {
        kvs.truncate(limit);
    }
    Ok(finish(header, kvs, more, count, req.keys_only))
}

fn directed(order: SortOrder, o: Ordering) -> Ordering {
    if order == SortOrder::Descend {
        o.reverse()
    } else {
        o
    }
}

fn finish(
    header: Option<ResponseHeader>,
    mut kvs: Vec<KeyValue>,
    more: bool,
    count: i64,
    keys_only: bool,
) -> RangeResponse {
    if keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    RangeResponse {
        header,
        kvs,
        more,
        count,
    }
}
