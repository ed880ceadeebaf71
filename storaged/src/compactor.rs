//! Auto-compaction, as etcd's `--auto-compaction-mode` / `--auto-compaction-retention`. The
//! leader compacts through raft like a client's Compact (with `physical` false); a member that
//! stops leading stops, and a new leader starts its own record.
//!
//! - `periodic` (retention a duration; a bare number is hours): every min(retention, 1 h) the
//!   leader compacts to the newest revision it saw at least one retention ago (it samples the
//!   store revision ten times per period).
//! - `revision` (retention a number of revisions): every five minutes the leader compacts to the
//!   current revision minus the retention.

use crate::node::Node;
use metastore_proto::etcdserverpb::CompactionRequest;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often revision mode looks (etcd's revision compactor interval).
const REVISION_INTERVAL: Duration = Duration::from_secs(300);
/// Longest period of periodic mode.
const MAX_PERIOD: Duration = Duration::from_secs(3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Keep this much history by time.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

impl Policy {
    /// From etcd's two flags; `None` when auto-compaction is off (retention 0).
    pub fn parse(mode: Option<&str>, retention: Option<&str>) -> Result<Option<Self>, String> {
        let retention = retention.unwrap_or("0").trim();
        match mode.unwrap_or("periodic") {
            "periodic" => {
                let d = if !retention.is_empty() && retention.bytes().all(|b| b.is_ascii_digit()) {
                    retention
                        .parse::<u64>()
                        .ok()
                        .and_then(|h| h.checked_mul(3600))
                        .map(Duration::from_secs)
                } else {
                    metastore_cli::parse_duration(retention)
                };
                let d = d.ok_or_else(|| {
                    format!(
                        "--auto-compaction-retention {retention:?}: expected hours or a duration like 30m"
                    )
                })?;
                Ok((!d.is_zero()).then_some(Policy::Periodic(d)))
            }
            "revision" => {
                let n: i64 = retention.parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    format!(
                        "--auto-compaction-retention {retention:?}: expected a number of revisions"
                    )
                })?;
                Ok((n > 0).then_some(Policy::Revision(n)))
            }
            other => Err(format!(
                "--auto-compaction-mode {other:?}: expected periodic or revision"
            )),
        }
    }

    /// How often the compactor compacts.
    fn period(self) -> Duration {
        match self {
            Policy::Periodic(r) => r.min(MAX_PERIOD),
            Policy::Revision(_) => REVISION_INTERVAL,
        }
    }
}

/// The store revisions the leader saw, oldest first, to find the one a retention ago.
#[derive(Default)]
struct Samples(VecDeque<(Instant, i64)>);

impl Samples {
    fn record(&mut self, at: Instant, revision: i64, retention: Duration) {
        self.0.push_back((at, revision));
        // Keep one sample older than the retention: it is the compaction target.
        while self.0.len() > 1 && at.duration_since(self.0[1].0) >= retention {
            self.0.pop_front();
        }
    }

    /// The newest revision seen at least `retention` before `now`.
    fn target(&self, now: Instant, retention: Duration) -> Option<i64> {
        self.0
            .iter()
            .rev()
            .find(|(at, _)| now.duration_since(*at) >= retention)
            .map(|(_, rev)| *rev)
    }
}

/// Runs `policy` on `node` for ever.
pub fn spawn(node: Arc<Node>, policy: Policy) {
    tokio::spawn(async move {
        let period = policy.period();
        let step = match policy {
            Policy::Periodic(_) => period / 10,
            Policy::Revision(_) => period,
        };
        let mut tick = tokio::time::interval(step.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut samples = Samples::default();
        let mut last_run = Instant::now();
        loop {
            tick.tick().await;
            if !node.raft().is_leader() {
                samples = Samples::default();
                last_run = Instant::now();
                continue;
            }
            let now = Instant::now();
            let current = node.store().current_revision();
            let target = match policy {
                Policy::Periodic(retention) => {
                    samples.record(now, current, retention);
                    if now.duration_since(last_run) < period {
                        continue;
                    }
                    samples.target(now, retention)
                }
                Policy::Revision(keep) => Some(current - keep),
            };
            last_run = now;
            let Some(target) = target else { continue };
            if target <= node.store().compacted_revision() || target <= 0 {
                continue;
            }
            let request = CompactionRequest {
                revision: target,
                physical: false,
            };
            match node.write(crate::command::Command::Compact(request)).await {
                Ok(_) => tracing::info!(revision = target, ?policy, "auto-compacted"),
                Err(e) => tracing::warn!(error = %e, revision = target, "auto-compaction failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_as_etcd_reads_them() {
        let p = |m: Option<&str>, r: Option<&str>| Policy::parse(m, r);
        assert_eq!(p(None, None), Ok(None));
        assert_eq!(p(None, Some("0")), Ok(None));
        assert_eq!(
            p(None, Some("1")),
            Ok(Some(Policy::Periodic(Duration::from_secs(3600))))
        );
        assert_eq!(
            p(Some("periodic"), Some("30m")),
            Ok(Some(Policy::Periodic(Duration::from_secs(1800))))
        );
        assert_eq!(
            p(Some("periodic"), Some("5m0s")),
            Ok(Some(Policy::Periodic(Duration::from_secs(300))))
        );
        assert_eq!(
            p(Some("revision"), Some("1000")),
            Ok(Some(Policy::Revision(1000)))
        );
        assert!(p(Some("revision"), Some("1h")).is_err());
        assert!(p(Some("hourly"), Some("1")).is_err());
        assert!(p(None, Some("soon")).is_err());
    }

    #[test]
    fn periodic_targets_the_newest_revision_a_retention_old() {
        let t0 = Instant::now();
        let r = Duration::from_secs(10);
        let mut s = Samples::default();
        for i in 0..30u64 {
            s.record(t0 + Duration::from_secs(i), 100 + i as i64, r);
        }
        let now = t0 + Duration::from_secs(29);
        // Seen at t0+19 s, exactly one retention before now.
        assert_eq!(s.target(now, r), Some(119));
        assert!(s.0.len() <= 12, "old samples are dropped: {}", s.0.len());
        let fresh = Samples::default();
        assert_eq!(fresh.target(now, r), None);
    }

    #[test]
    fn periods() {
        assert_eq!(
            Policy::Periodic(Duration::from_secs(7200)).period(),
            MAX_PERIOD
        );
        assert_eq!(
            Policy::Periodic(Duration::from_secs(60)).period(),
            Duration::from_secs(60)
        );
        assert_eq!(Policy::Revision(5).period(), REVISION_INTERVAL);
    }
}
