//! Downgrade (etcd 3.5's `Maintenance.Downgrade`) and the etcd version MetaStore reports.
//!
//! The reported version (`--etcd-version`, Status `version`) fixes the cluster version
//! (its X.Y.0). VALIDATE checks that a target (X.Y or X.Y.Z) is the one minor below the
//! cluster version and that no downgrade is enabled; ENABLE records that target through raft
//! (a metadata record, so it survives restarts and travels in snapshots); CANCEL removes it.
//! Status `downgradeInfo` shows it. etcd then waits for every member to run the older binary;
//! a MetaStore member reports whatever `--etcd-version` says, so the downgrade stays enabled
//! until it is cancelled.

use crate::mvcc::{MvccError, Store};
use metastore_proto::etcdserverpb::downgrade_request::DowngradeAction;
use std::fmt;

/// Where the enabled target lives among the store's metadata.
pub const META_KEY: &[u8] = b"downgrade";

/// An etcd version, X.Y.Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Version {
    /// The version every build reports unless told otherwise: the newest etcd whose API
    /// MetaStore serves (see docs/compatibility.md).
    pub const DEFAULT: Version = Version {
        major: 3,
        minor: 4,
        patch: 0,
    };

    /// `X.Y.Z`, with an optional `-pre` suffix (semver, as etcd parses it).
    pub fn parse(s: &str) -> Option<Version> {
        let core = s.split(['-', '+']).next()?;
        let parts: Vec<u64> = core
            .split('.')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        match parts[..] {
            [major, minor, patch] => Some(Version {
                major,
                minor,
                patch,
            }),
            _ => None,
        }
    }

    /// A downgrade target: `X.Y.Z` or `X.Y`, as its cluster version X.Y.0.
    pub fn parse_target(s: &str) -> Result<Version, MvccError> {
        Version::parse(s)
            .or_else(|| Version::parse(&format!("{s}.0")))
            .map(Version::cluster)
            .ok_or(MvccError::WrongDowngradeVersionFormat)
    }

    /// The cluster version of a member reporting this version: X.Y.0.
    pub fn cluster(self) -> Version {
        Version { patch: 0, ..self }
    }
}

/// The downgrade target enabled now, if any.
pub fn enabled(store: &Store) -> Result<Option<String>, MvccError> {
    Ok(store
        .meta_with_prefix(META_KEY)?
        .into_iter()
        .find(|(k, _)| k == META_KEY)
        .map(|(_, v)| String::from_utf8_lossy(&v).into_owned()))
}

/// What a Downgrade request does, given the cluster version and the enabled target.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// VALIDATE passed: nothing to record.
    Valid,
    /// Record this target (ENABLE).
    Enable(Version),
    /// Remove the target (CANCEL).
    Cancel,
}

pub fn decide(
    action: i32,
    target: &str,
    cluster: Version,
    enabled: Option<&str>,
) -> Result<Decision, MvccError> {
    let validate = || {
        let target = Version::parse_target(target)?;
        let allowed = cluster.minor.checked_sub(1).map(|minor| Version {
            minor,
            ..cluster.cluster()
        });
        if Some(target) != allowed {
            return Err(MvccError::InvalidDowngradeTargetVersion);
        }
        if enabled.is_some() {
            return Err(MvccError::DowngradeInProcess);
        }
        Ok(target)
    };
    match DowngradeAction::try_from(action) {
        Ok(DowngradeAction::Validate) => validate().map(|_| Decision::Valid),
        Ok(DowngradeAction::Enable) => validate().map(Decision::Enable),
        Ok(DowngradeAction::Cancel) if enabled.is_some() => Ok(Decision::Cancel),
        Ok(DowngradeAction::Cancel) => Err(MvccError::NoInflightDowngrade),
        Err(_) => Err(MvccError::InvalidRequest(format!(
            "unknown downgrade action {action}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V34: Version = Version::DEFAULT;

    #[test]
    fn versions_parse_as_etcd_parses_them() {
        assert_eq!(
            Version::parse("3.5.17").map(|v| v.to_string()),
            Some("3.5.17".into())
        );
        assert_eq!(Version::parse("3.6.0-rc.1").map(|v| v.minor), Some(6));
        assert_eq!(Version::parse("3.5"), None);
        assert_eq!(
            Version::parse_target("3.3").map(|v| v.to_string()).ok(),
            Some("3.3.0".into())
        );
        assert_eq!(
            Version::parse_target("3.3.9").map(|v| v.to_string()).ok(),
            Some("3.3.0".into())
        );
        for bad in ["", "3", "three.two", "3.3.3.3", "3..1"] {
            assert!(
                matches!(
                    Version::parse_target(bad),
                    Err(MvccError::WrongDowngradeVersionFormat)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_one_minor_below_and_one_job_at_a_time() {
        let (v, e, c) = (
            DowngradeAction::Validate as i32,
            DowngradeAction::Enable as i32,
            DowngradeAction::Cancel as i32,
        );
        assert_eq!(decide(v, "3.3", V34, None).ok(), Some(Decision::Valid));
        let target = Version::parse("3.3.0");
        assert_eq!(
            decide(e, "3.3.1", V34, None).ok(),
            target.map(Decision::Enable)
        );
        for wrong in ["3.2", "3.4", "3.5", "2.3"] {
            assert!(matches!(
                decide(e, wrong, V34, None),
                Err(MvccError::InvalidDowngradeTargetVersion)
            ));
        }
        assert!(matches!(
            decide(v, "3.3", V34, Some("3.3.0")),
            Err(MvccError::DowngradeInProcess)
        ));
        assert!(matches!(
            decide(c, "", V34, None),
            Err(MvccError::NoInflightDowngrade)
        ));
        assert_eq!(
            decide(c, "", V34, Some("3.3.0")).ok(),
            Some(Decision::Cancel)
        );
        assert!(matches!(
            decide(v, "x", V34, None),
            Err(MvccError::WrongDowngradeVersionFormat)
        ));
    }
}
