//! The lessor: lease deadlines, kept in memory by the member that expires leases (the raft
//! leader). Deadlines are not replicated: a new leader gives every lease its full TTL again,
//! as etcd does, or, with checkpointing on, the remaining TTL of the lease's last checkpoint.
//!
//! Checkpointing (etcd's `--experimental-enable-lease-checkpoint`): every checkpoint interval
//! the leader records through raft how much TTL a long lease has left, so that leader changes
//! do not renew it for ever; a renewal clears the recorded value again.

use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// etcd's minimum TTL with default timings: ceil(1.5 x election timeout of 1 s).
pub const MIN_LEASE_TTL: i64 = 2;

/// One lease's clock.
struct Clock {
    /// Granted TTL in seconds.
    ttl: i64,
    deadline: Instant,
    /// When the remaining TTL is next recorded (checkpointing only).
    checkpoint_at: Option<Instant>,
    /// The raft term of this member's leadership in which the clock was last started or
    /// renewed: a promotion in that same term leaves it alone (it is already fresh).
    term: u64,
}

#[derive(Default)]
pub struct Lessor {
    clocks: Mutex<HashMap<i64, Clock>>,
    /// Checkpoint interval; `None` when checkpointing is off.
    checkpoint: Option<Duration>,
    /// Leases renewed while a checkpointed remaining TTL was recorded: to be cleared.
    to_clear: Mutex<BTreeSet<i64>>,
}

fn after(secs: i64) -> Instant {
    Instant::now() + Duration::from_secs(secs.max(0) as u64)
}

impl Lessor {
    pub fn new(checkpoint: Option<Duration>) -> Self {
        Self {
            checkpoint,
            ..Self::default()
        }
    }

    fn checkpointing(&self) -> bool {
        self.checkpoint.is_some()
    }

    /// The TTL a lease of granted `ttl` starts with under a new leader: its checkpointed
    /// `remaining` TTL when checkpointing is on and one was recorded, else the full TTL.
    pub fn starting_ttl(&self, ttl: i64, remaining: i64) -> i64 {
        if remaining > 0 && self.checkpointing() {
            remaining
        } else {
            ttl
        }
    }

    /// When a lease with `remaining` seconds left should next be checkpointed: only leases
    /// that outlive the interval are.
    fn next_checkpoint(&self, remaining: i64) -> Option<Instant> {
        let interval = self.checkpoint?;
        (remaining > interval.as_secs() as i64).then(|| Instant::now() + interval)
    }

    /// Starts (or restarts) the clock of lease `id` of granted TTL `ttl` with `remaining`
    /// seconds left (a fresh grant: the full TTL), in leadership term `term`.
    pub fn start(&self, id: i64, ttl: i64, remaining: i64, term: u64) {
        let clock = self.clock(ttl, remaining, Duration::ZERO, term);
        self.clocks.lock().insert(id, clock);
    }

    fn clock(&self, ttl: i64, remaining: i64, extend: Duration, term: u64) -> Clock {
        Clock {
            ttl,
            deadline: after(remaining) + extend,
            checkpoint_at: self.next_checkpoint(remaining),
            term,
        }
    }

    /// Leadership began in `term`: every lease of `leases` (id, granted TTL, checkpointed
    /// remaining TTL) starts again with its starting TTL plus `extend`, as etcd's lessor
    /// promotion does, except leases whose clock was already started or renewed in this very
    /// term (granted or kept alive through this leader before it noticed its leadership):
    /// they keep their deadline, or a lease granted just after an election would live longer
    /// than its TTL.
    pub fn promote(
        &self,
        term: u64,
        extend: Duration,
        leases: impl IntoIterator<Item = (i64, i64, i64)>,
    ) {
        let mut clocks = self.clocks.lock();
        for (id, ttl, remaining) in leases {
            if clocks.get(&id).is_some_and(|c| c.term == term) {
                continue;
            }
            let clock = self.clock(ttl, self.starting_ttl(ttl, remaining), extend, term);
            clocks.insert(id, clock);
        }
    }

    pub fn forget(&self, id: i64) {
        self.clocks.lock().remove(&id);
        self.to_clear.lock().remove(&id);
    }

    /// Renews lease `id` of granted TTL `ttl`: its clock restarts at the full TTL. A lease
    /// whose deadline passed stays expired (its revocation is on the way): `None`. A lease not
    /// tracked yet (leadership is new) starts afresh. `checkpointed` tells that a remaining TTL
    /// is recorded for the lease; it is cleared on the next tick. `term`: the leadership term
    /// the renewal happens in.
    pub fn renew(&self, id: i64, ttl: i64, checkpointed: bool, term: u64) -> Option<i64> {
        let renewed = {
            let mut clocks = self.clocks.lock();
            match clocks.get_mut(&id) {
                Some(c) if c.deadline <= Instant::now() => None,
                Some(c) => {
                    c.deadline = after(c.ttl);
                    c.term = term;
                    Some(c.ttl)
                }
                None => {
                    clocks.insert(id, self.clock(ttl, ttl, Duration::ZERO, term));
                    Some(ttl)
                }
            }
        };
        if renewed.is_some() && checkpointed && self.checkpointing() {
            self.to_clear.lock().insert(id);
        }
        renewed
    }

    /// Whole seconds left (rounded down), `None` when unknown.
    pub fn remaining(&self, id: i64) -> Option<i64> {
        let clocks = self.clocks.lock();
        let c = clocks.get(&id)?;
        Some(
            c.deadline
                .saturating_duration_since(Instant::now())
                .as_secs() as i64,
        )
    }

    /// Leases whose deadline has passed, soonest first.
    pub fn expired(&self) -> Vec<i64> {
        let now = Instant::now();
        let mut ids: Vec<(Instant, i64)> = self
            .clocks
            .lock()
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(id, c)| (c.deadline, *id))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// Checkpoints to record now, as (lease id, remaining seconds rounded up; 0 clears):
    /// leases whose checkpoint is due and that have lost some TTL, then renewed leases whose
    /// recorded value must be cleared. Due leases are unscheduled until [`Self::schedule_next`].
    pub fn due_checkpoints(&self) -> Vec<(i64, i64)> {
        if !self.checkpointing() {
            return Vec::new();
        }
        let now = Instant::now();
        let mut due = Vec::new();
        for (id, c) in self.clocks.lock().iter_mut() {
            if c.checkpoint_at.is_none_or(|t| t > now) {
                continue;
            }
            c.checkpoint_at = None;
            if c.deadline <= now {
                continue;
            }
            let remaining = (c.deadline - now).as_secs_f64().ceil() as i64;
            if remaining < c.ttl {
                due.push((*id, remaining));
            } else {
                // Nothing lost yet (a lease just renewed, or extended when leadership began):
                // look again next interval.
                c.checkpoint_at = self.checkpoint.map(|i| now + i);
            }
        }
        due.sort_unstable();
        due.extend(
            std::mem::take(&mut *self.to_clear.lock())
                .into_iter()
                .map(|id| (id, 0)),
        );
        due
    }

    /// A checkpoint of lease `id` was proposed (0: clearing): schedules its next one.
    pub fn schedule_next(&self, id: i64, remaining: i64) {
        let mut clocks = self.clocks.lock();
        if let Some(c) = clocks.get_mut(&id) {
            let left = if remaining > 0 { remaining } else { c.ttl };
            c.checkpoint_at = self.next_checkpoint(left);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renew_and_expire() {
        let l = Lessor::default();
        l.start(1, 100, 100, 1);
        l.start(2, 0, 0, 1);
        assert_eq!(l.renew(1, 100, false, 1), Some(100));
        assert_eq!(
            l.renew(2, 0, false, 1),
            None,
            "expired leases are not renewed"
        );
        assert_eq!(
            l.renew(3, 7, false, 1),
            Some(7),
            "untracked leases start afresh"
        );
        assert_eq!(l.expired(), vec![2]);
        l.forget(3);
        assert!(l.remaining(1).is_some_and(|r| r >= 99));
        l.forget(2);
        assert!(l.expired().is_empty());
        assert!(l.due_checkpoints().is_empty(), "checkpointing is off");
    }

    #[test]
    fn checkpoints() {
        let l = Lessor::new(Some(Duration::ZERO));
        l.start(1, 100, 60, 1);
        l.start(2, 100, 100, 1);
        // Lease 1 has lost TTL: recorded (rounded up); lease 2 has its full TTL: skipped.
        assert_eq!(l.due_checkpoints(), vec![(1, 60)]);
        assert!(l.due_checkpoints().is_empty(), "unscheduled until recorded");
        l.schedule_next(1, 60);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(l.due_checkpoints(), vec![(1, 60)]);
        // A renewal of a checkpointed lease clears the recorded value.
        assert_eq!(l.renew(1, 100, true, 1), Some(100));
        assert_eq!(l.due_checkpoints(), vec![(1, 0)]);
        assert_eq!(l.renew(2, 100, false, 1), Some(100));
        assert!(l.due_checkpoints().is_empty());
    }

    /// A lease that had lost nothing when its checkpoint came due (extended at the start of a
    /// leadership) is looked at again, not forgotten.
    #[test]
    fn an_extended_lease_is_checkpointed_later() {
        let l = Lessor::new(Some(Duration::from_millis(30)));
        l.promote(1, Duration::from_millis(100), [(1, 2, 2)]);
        std::thread::sleep(Duration::from_millis(40));
        assert!(l.due_checkpoints().is_empty(), "still above its TTL");
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(l.due_checkpoints(), vec![(1, 1)]);
    }

    /// A promotion extends leases started in earlier terms and leaves alone those already
    /// started or renewed in the promotion's own term (a grant through the new leader before
    /// its first tick noticed the leadership).
    #[test]
    fn promotion_extends_only_clocks_of_earlier_terms() {
        let l = Lessor::default();
        l.start(1, 10, 10, 4);
        l.start(2, 10, 10, 5);
        l.renew(3, 10, false, 5);
        l.promote(
            5,
            Duration::from_secs(60),
            [(1, 10, 0), (2, 10, 0), (3, 10, 0), (4, 10, 0)],
        );
        for (id, extended) in [(1, true), (2, false), (3, false), (4, true)] {
            let left = l.remaining(id).expect("tracked");
            assert_eq!(left > 10, extended, "lease {id}: {left} s left");
        }
    }
}
