//! The lessor: lease deadlines, kept in memory by the member that expires leases (the raft
//! leader). Deadlines are not replicated: after
//! a restart every lease gets its full TTL again, as etcd gives after a leader change.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// etcd's minimum TTL with default timings: ceil(1.5 x election timeout of 1 s).
pub const MIN_LEASE_TTL: i64 = 2;

#[derive(Default)]
pub struct Lessor {
    deadlines: Mutex<HashMap<i64, (i64, Instant)>>,
}

fn after(ttl: i64) -> Instant {
    Instant::now() + Duration::from_secs(ttl.max(0) as u64)
}

impl Lessor {
    /// Starts (or restarts) the clock of lease `id` at its full TTL.
    pub fn start(&self, id: i64, ttl: i64) {
        self.deadlines.lock().insert(id, (ttl, after(ttl)));
    }

    pub fn forget(&self, id: i64) {
        self.deadlines.lock().remove(&id);
    }

    /// Renews lease `id` of granted TTL `ttl`: its clock restarts at the full TTL. A lease
    /// whose deadline passed stays expired (its revocation is on the way): `None`. A lease not
    /// tracked yet (leadership is new) starts afresh.
    pub fn renew(&self, id: i64, ttl: i64) -> Option<i64> {
        let mut d = self.deadlines.lock();
        match d.get_mut(&id) {
            Some((_, deadline)) if *deadline <= Instant::now() => None,
            Some((granted, deadline)) => {
                *deadline = after(*granted);
                Some(*granted)
            }
            None => {
                d.insert(id, (ttl, after(ttl)));
                Some(ttl)
            }
        }
    }

    /// Whole seconds left (rounded down), `None` when unknown.
    pub fn remaining(&self, id: i64) -> Option<i64> {
        let d = self.deadlines.lock();
        let (_, deadline) = d.get(&id)?;
        Some(deadline.saturating_duration_since(Instant::now()).as_secs() as i64)
    }

    /// Leases whose deadline has passed.
    pub fn expired(&self) -> Vec<i64> {
        let now = Instant::now();
        let mut ids: Vec<(Instant, i64)> = self
            .deadlines
            .lock()
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(id, (_, deadline))| (*deadline, *id))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// Lease ids, soonest deadline first.
    pub fn by_deadline(&self) -> Vec<i64> {
        let mut ids: Vec<(Instant, i64)> = self
            .deadlines
            .lock()
            .iter()
            .map(|(id, (_, deadline))| (*deadline, *id))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renew_and_expire() {
        let l = Lessor::default();
        l.start(1, 100);
        l.start(2, 0);
        assert_eq!(l.renew(1, 100), Some(100));
        assert_eq!(l.renew(2, 0), None, "expired leases are not renewed");
        assert_eq!(l.renew(3, 7), Some(7), "untracked leases start afresh");
        assert_eq!(l.expired(), vec![2]);
        l.forget(3);
        assert!(l.remaining(1).is_some_and(|r| r >= 99));
        l.forget(2);
        assert!(l.expired().is_empty());
        assert_eq!(l.by_deadline(), vec![1]);
    }
}
