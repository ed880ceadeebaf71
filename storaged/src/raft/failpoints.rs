//! Failpoints for fault tests, armed from the environment at start. Each slows one step of
//! the member down, as a slow disk or a busy machine would, so that tests can show what the
//! rest of the system does while this member is behind. Unset, they cost nothing.

use std::time::Duration;

/// The delay named by environment variable `var`, in milliseconds.
fn delay_from_env(var: &str) -> Option<Duration> {
    let ms: u64 = std::env::var(var).ok()?.parse().ok()?;
    tracing::warn!(failpoint = var, ms, "failpoint armed");
    Some(Duration::from_millis(ms))
}

/// `METASTORE_FAILPOINT_LEADER_SYNC_DELAY_MS`: the sync of entries this member appended as
/// leader waits this long first, as on a leader with a slow disk, so followers hold entries
/// that the leader's own log has not made durable yet.
#[derive(Clone, Copy)]
pub struct SlowLeaderSync {
    member_id: u64,
    pub delay: Duration,
}

impl SlowLeaderSync {
    pub fn from_env(member_id: u64) -> Option<Self> {
        let delay = delay_from_env("METASTORE_FAILPOINT_LEADER_SYNC_DELAY_MS")?;
        Some(Self { member_id, delay })
    }

    /// Whether an entry proposed by `leader` is this member's own.
    pub fn own(&self, leader: u64) -> bool {
        leader == self.member_id
    }
}

/// `METASTORE_FAILPOINT_FOLLOWER_APPLY_DELAY_MS`: entries another member proposed are applied
/// this long after they arrive, as on a follower that is always a little behind: its store
/// lags what clients were already told.
#[derive(Clone, Copy)]
pub struct SlowFollowerApply {
    member_id: u64,
    pub delay: Duration,
}

impl SlowFollowerApply {
    pub fn from_env(member_id: u64) -> Option<Self> {
        let delay = delay_from_env("METASTORE_FAILPOINT_FOLLOWER_APPLY_DELAY_MS")?;
        Some(Self { member_id, delay })
    }

    /// Whether an entry proposed by `leader` comes from another member.
    pub fn foreign(&self, leader: u64) -> bool {
        leader != self.member_id
    }
}
