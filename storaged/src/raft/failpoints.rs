//! Failpoints for fault tests, armed from the environment at start. Each slows one step of
//! the member down, as a slow disk or a busy machine would, so that tests can show what the
//! rest of the system does while this member is behind. Unset, they cost nothing.

use std::time::Duration;

/// Whose entries a failpoint slows down.
#[derive(Clone, Copy)]
enum Proposer {
    /// Entries this member proposed as leader.
    Own,
    /// Entries another member proposed.
    Other,
}

/// A delay before a step on some raft entries, chosen by the member that proposed them.
#[derive(Clone, Copy)]
pub struct EntryDelay {
    member_id: u64,
    proposer: Proposer,
    pub delay: Duration,
}

impl EntryDelay {
    /// `METASTORE_FAILPOINT_LEADER_SYNC_DELAY_MS`: the sync of entries this member appended
    /// as leader waits this long first, as on a leader with a slow disk, so followers hold
    /// entries that the leader's own log has not made durable yet.
    pub fn leader_sync(member_id: u64) -> Option<Self> {
        Self::from_env(
            "METASTORE_FAILPOINT_LEADER_SYNC_DELAY_MS",
            member_id,
            Proposer::Own,
        )
    }

    /// `METASTORE_FAILPOINT_FOLLOWER_APPLY_DELAY_MS`: entries another member proposed are
    /// applied this long after they arrive, as on a follower that is always a little behind:
    /// its store lags what clients were already told.
    pub fn follower_apply(member_id: u64) -> Option<Self> {
        Self::from_env(
            "METASTORE_FAILPOINT_FOLLOWER_APPLY_DELAY_MS",
            member_id,
            Proposer::Other,
        )
    }

    fn from_env(var: &str, member_id: u64, proposer: Proposer) -> Option<Self> {
        let ms: u64 = std::env::var(var).ok()?.parse().ok()?;
        tracing::warn!(failpoint = var, ms, "failpoint armed");
        Some(Self {
            member_id,
            proposer,
            delay: Duration::from_millis(ms),
        })
    }

    /// Whether the delay applies to an entry proposed by member `leader`.
    pub fn applies(&self, leader: u64) -> bool {
        match self.proposer {
            Proposer::Own => leader == self.member_id,
            Proposer::Other => leader != self.member_id,
        }
    }
}

/// `METASTORE_FAILPOINT_CORRUPT_PUTS=<member name>:<key prefix>`: the named member stores a
/// different value than the one committed for every top-level Put of a key with the prefix,
/// as a member whose disk flipped bits would. Corruption checks must notice.
pub struct CorruptPuts {
    prefix: Vec<u8>,
}

impl CorruptPuts {
    pub fn from_env(member_name: &str) -> Option<Self> {
        let var = "METASTORE_FAILPOINT_CORRUPT_PUTS";
        let spec = std::env::var(var).ok()?;
        let (name, prefix) = spec.split_once(':')?;
        if name != member_name {
            return None;
        }
        tracing::warn!(failpoint = var, prefix, "failpoint armed");
        Some(Self {
            prefix: prefix.as_bytes().to_vec(),
        })
    }

    /// Alters `proposal` as this member would wrongly apply it.
    pub fn alter(&self, proposal: &mut crate::command::Proposal) {
        if let crate::command::Command::Put(p) = &mut proposal.command
            && p.key.starts_with(&self.prefix)
        {
            p.value.extend_from_slice(b"!corrupt");
        }
    }
}
