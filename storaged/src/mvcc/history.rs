//! Past changes read back as watch events, for watchers that start in the past or fell
//! behind. Records are stored by revision, so a revision window is one ordered engine scan.

use super::codec;
use super::error::MvccError;
use super::key_range::KeyRange;
use super::revision::Revision;
use super::store::{KvView, Store};
use metastore_proto::mvccpb::event::EventType;
use metastore_proto::mvccpb::{Event, KeyValue};

/// Events of a window of whole revisions.
#[derive(Debug, Default)]
pub struct History {
    pub events: Vec<Event>,
    /// Last revision the window covers (events up to here are complete).
    pub last: i64,
    /// Store revision when the window was read.
    pub current: i64,
}

impl Store {
    /// Events in `range` of revisions `from ..= min(from + max_revisions - 1, current)`,
    /// stopping early at a revision boundary once the events reach `max_bytes` (a window
    /// always holds at least one whole revision). Fails with `Compacted` when `from` is below
    /// the compacted revision.
    pub fn history(
        &self,
        range: &KeyRange,
        from: i64,
        max_revisions: i64,
        max_bytes: usize,
        prev_kv: bool,
    ) -> Result<History, MvccError> {
        let view = self.read();
        let current = view.visible_revision();
        if from < view.compacted_revision() {
            return Err(MvccError::Compacted);
        }
        let from = from.max(1);
        let last = current.min(from.saturating_add(max_revisions.max(1) - 1));
        let mut history = History {
            events: Vec::new(),
            last: last.max(from - 1),
            current,
        };
        if from > last {
            return Ok(history);
        }
        let start = Revision::new(from, 0).to_key(false);
        let end = Revision::new(last + 1, 0).to_key(false);
        let mut records: Vec<(Revision, bool, KeyValue)> = Vec::new();
        let mut bytes = 0usize;
        let mut cut = None;
        codec::scan_records(self.engine(), &start, Some(&end), |r| {
            let starts_revision = records.last().is_some_and(|(p, _, _)| p.main != r.rev.main);
            if starts_revision && bytes >= max_bytes {
                cut = Some(r.rev.main - 1);
                return false;
            }
            if range.contains(&r.kv.key) {
                bytes += r.size;
                records.push((r.rev, r.tombstone, r.kv));
            }
            true
        })?;
        if let Some(last) = cut {
            history.last = last;
        }
        for (rev, tomb, kv) in records {
            let prev = if prev_kv && (tomb || kv.version > 1) {
                previous(&view, &kv.key, rev.main)?
            } else {
                None
            };
            history.events.push(Event {
                r#type: if tomb {
                    EventType::Delete
                } else {
                    EventType::Put
                } as i32,
                kv: Some(kv),
                prev_kv: prev,
            });
        }
        Ok(history)
    }
}

/// The key's value just before `rev`, if history still has it.
fn previous(view: &impl KvView, key: &[u8], rev: i64) -> Result<Option<KeyValue>, MvccError> {
    match view.index().get(key, rev - 1) {
        Some(e) => view.value(e.rev).map(Some),
        None => Ok(None),
    }
}
