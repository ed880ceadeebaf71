//! In-memory index from user key to its revision history.
//!
//! Like etcd's key index, it is rebuilt from the engine at start. Each key keeps its entries in
//! revision order; a tombstone entry (version 0) ends a generation.

use super::key_range::KeyRange;
use super::revision::Revision;
use std::collections::BTreeMap;
use std::ops::Bound;

/// What the index knows about one revision of a key (enough to answer compares, filters and
/// sorts without touching the engine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub rev: Revision,
    pub create: i64,
    /// 0 marks a tombstone.
    pub version: i64,
    pub lease: i64,
}

impl IndexEntry {
    pub fn is_tombstone(&self) -> bool {
        self.version == 0
    }
}

#[derive(Default, Debug)]
pub struct KeyIndex {
    keys: BTreeMap<Vec<u8>, Vec<IndexEntry>>,
}

fn live_at(history: &[IndexEntry], at: i64) -> Option<IndexEntry> {
    let n = history.partition_point(|e| e.rev.main <= at);
    let e = *history.get(n.checked_sub(1)?)?;
    (!e.is_tombstone()).then_some(e)
}

impl KeyIndex {
    /// The live entry of `key` as of revision `at`.
    pub fn get(&self, key: &[u8], at: i64) -> Option<IndexEntry> {
        live_at(self.keys.get(key)?, at)
    }

    /// The current live entry of `key`.
    pub fn latest(&self, key: &[u8]) -> Option<IndexEntry> {
        self.get(key, i64::MAX)
    }

    /// Visits keys in `range` that are live at `at`, in key order, until `visit` returns false.
    pub fn range<'a>(
        &'a self,
        range: &KeyRange,
        at: i64,
        mut visit: impl FnMut(&'a [u8], IndexEntry) -> bool,
    ) {
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = match range {
            KeyRange::Single(k) => {
                if let Some((k, e)) = self.keys.get_key_value(k.as_slice())
                    && let Some(e) = live_at(e, at)
                {
                    visit(k, e);
                }
                return;
            }
            _ if range.is_empty() => return,
            KeyRange::From(s) => (Bound::Included(s), Bound::Unbounded),
            KeyRange::Between(s, e) => (Bound::Included(s), Bound::Excluded(e)),
        };
        for (k, history) in self.keys.range::<[u8], _>(bounds) {
            if let Some(e) = live_at(history, at)
                && !visit(k, e)
            {
                return;
            }
        }
    }

    /// Records a put of `key` at `rev` and returns the new entry.
    pub fn put(&mut self, key: &[u8], rev: Revision, lease: i64) -> IndexEntry {
        let history = self.keys.entry(key.to_vec()).or_default();
        let entry = match live_at(history, i64::MAX) {
            Some(prev) => IndexEntry {
                rev,
                create: prev.create,
                version: prev.version + 1,
                lease,
            },
            None => IndexEntry {
                rev,
                create: rev.main,
                version: 1,
                lease,
            },
        };
        history.push(entry);
        entry
    }

    /// Records a delete of a live `key` at `rev`. Returns false (and changes nothing) if the
    /// key is not live.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        let Some(history) = self.keys.get_mut(key) else {
            return false;
        };
        if live_at(history, i64::MAX).is_none() {
            return false;
        }
        history.push(IndexEntry {
            rev,
            create: 0,
            version: 0,
            lease: 0,
        });
        true
    }

    /// Appends an entry read back from the engine (entries arrive in revision order).
    pub fn restore(&mut self, key: &[u8], entry: IndexEntry) {
        self.keys.entry(key.to_vec()).or_default().push(entry);
    }

    /// Removes every entry of `key` written at main revision `main` (undo of a failed write).
    pub fn undo(&mut self, key: &[u8], main: i64) {
        if let Some(history) = self.keys.get_mut(key) {
            while history.last().is_some_and(|e| e.rev.main == main) {
                history.pop();
            }
            if history.is_empty() {
                self.keys.remove(key);
            }
        }
    }

    /// Drops history below `at`: per key, the newest entry `<= at` survives unless it is a
    /// tombstone. Returns the removed revisions with their tombstone flag.
    pub fn compact(&mut self, at: i64) -> Vec<(Revision, bool)> {
        let mut removed = Vec::new();
        self.keys.retain(|_, history| {
            let n = history.partition_point(|e| e.rev.main <= at);
            if n == 0 {
                return true;
            }
            let drop = if history[n - 1].is_tombstone() {
                n
            } else {
                n - 1
            };
            removed.extend(history.drain(..drop).map(|e| (e.rev, e.is_tombstone())));
            !history.is_empty()
        });
        removed
    }

    /// Keys whose latest revision is not a deletion (a walk over the index).
    pub fn live_keys(&self) -> usize {
        self.keys
            .values()
            .filter(|h| h.last().is_some_and(|e| !e.is_tombstone()))
            .count()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    #[test]
    fn generations_and_versions() {
        let mut ix = KeyIndex::default();
        assert_eq!(ix.put(b"a", r(2), 0).version, 1);
        let e = ix.put(b"a", r(3), 0);
        assert_eq!((e.create, e.version), (2, 2));
        assert!(ix.tombstone(b"a", r(4)));
        assert!(!ix.tombstone(b"a", r(5)));
        let e = ix.put(b"a", r(6), 7);
        assert_eq!((e.create, e.version, e.lease), (6, 1, 7));
        assert_eq!(ix.get(b"a", 3).map(|e| e.rev.main), Some(3));
        assert_eq!(ix.get(b"a", 4), None);
        assert_eq!(ix.get(b"a", 1), None);
    }

    #[test]
    fn compaction_keeps_latest_live_and_drops_tombstones() {
        let mut ix = KeyIndex::default();
        ix.put(b"a", r(2), 0);
        ix.put(b"a", r(3), 0);
        ix.put(b"b", r(4), 0);
        ix.tombstone(b"b", r(5));
        let removed = ix.compact(5);
        assert_eq!(removed.len(), 3);
        assert_eq!(ix.get(b"a", 5).map(|e| e.rev.main), Some(3));
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn undo_removes_a_whole_revision() {
        let mut ix = KeyIndex::default();
        ix.put(b"a", r(2), 0);
        ix.put(b"a", Revision::new(3, 0), 0);
        ix.undo(b"a", 3);
        assert_eq!(ix.latest(b"a").map(|e| e.rev.main), Some(2));
        ix.undo(b"a", 2);
        assert_eq!(ix.len(), 0);
    }
}
