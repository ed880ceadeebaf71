//! Key permissions: does the union of a user's granted intervals cover a request's keys?
//!
//! A permission covers `[key, range_end)`; an empty `range_end` covers the single key, and
//! `"\0"` covers every key from `key` on. A single-key request passes when some interval
//! holds the key; a range request only when the union of the intervals covers all of it
//! without a gap (as etcd checks).

use metastore_proto::authpb::Permission;
use metastore_proto::authpb::permission::Type as PermType;

/// What a request needs on its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
}

impl Need {
    fn granted_by(self, perm_type: i32) -> bool {
        match PermType::try_from(perm_type) {
            Ok(PermType::Readwrite) => true,
            Ok(PermType::Read) => self == Need::Read,
            Ok(PermType::Write) => self == Need::Write,
            Err(_) => false,
        }
    }
}

/// The end of an interval: a key (exclusive) or past every key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Key(Vec<u8>),
    Infinite,
}

/// The interval a (key, range_end) pair names.
fn interval(key: &[u8], range_end: &[u8]) -> (Vec<u8>, End) {
    let end = match range_end {
        [] => {
            let mut next = key.to_vec();
            next.push(0);
            End::Key(next)
        }
        [0] => End::Infinite,
        e => End::Key(e.to_vec()),
    };
    (key.to_vec(), end)
}

/// Whether `perms` grant `need` on `[key, range_end)` (etcd's key conventions).
pub fn covers<'a>(
    perms: impl IntoIterator<Item = &'a Permission>,
    need: Need,
    key: &[u8],
    range_end: &[u8],
) -> bool {
    let mut granted: Vec<(Vec<u8>, End)> = perms
        .into_iter()
        .filter(|p| need.granted_by(p.perm_type))
        .map(|p| interval(&p.key, &p.range_end))
        .collect();
    let (start, end) = interval(key, range_end);
    if End::Key(start.clone()) >= end {
        // An empty (inverted) range: nothing to cover, and etcd refuses it.
        return false;
    }
    granted.sort();
    // Walk the merged intervals from the first that starts at or before `start`.
    let mut reach: Option<End> = None;
    let from = End::Key(start.clone());
    for (s, e) in granted {
        if e <= from {
            // Ends before the range begins.
            continue;
        }
        match &reach {
            None if s <= start => reach = Some(e),
            None => return false,
            Some(r) if End::Key(s.clone()) <= *r => {
                if e > *r {
                    reach = Some(e);
                }
            }
            Some(_) => break,
        }
        if reach.as_ref().is_some_and(|r| *r >= end) {
            return true;
        }
    }
    reach.is_some_and(|r| r >= end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(t: PermType, key: &str, end: &[u8]) -> Permission {
        Permission {
            perm_type: t as i32,
            key: key.as_bytes().to_vec(),
            range_end: end.to_vec(),
        }
    }

    #[test]
    fn single_keys_prefixes_and_from_key() {
        let perms = [
            perm(PermType::Read, "a", b"b"),
            perm(PermType::Write, "k", b""),
            perm(PermType::Readwrite, "z", &[0]),
        ];
        let can = |need, key: &str, end: &[u8]| covers(&perms, need, key.as_bytes(), end);
        // [a, b): put a, range [a, b) read-only.
        assert!(can(Need::Read, "a", b""));
        assert!(can(Need::Read, "azzz", b""));
        assert!(can(Need::Read, "a", b"b"));
        assert!(!can(Need::Read, "a", b"c"), "wider than the grant");
        assert!(!can(Need::Read, "b", b""), "the end is exclusive");
        assert!(!can(Need::Write, "a", b""), "read only");
        // A single-key grant covers that key, not its range.
        assert!(can(Need::Write, "k", b""));
        assert!(!can(Need::Write, "k", b"l"));
        assert!(!can(Need::Read, "k", b""));
        // From-key: everything from z on, both ways.
        assert!(can(Need::Write, "zz", b""));
        assert!(can(Need::Read, "z", &[0]));
        assert!(can(Need::Read, "z1", b"z9"));
        assert!(!can(Need::Read, "y", &[0]));
        // An inverted range is refused.
        assert!(!can(Need::Read, "az", b"aa"));
    }

    #[test]
    fn overlapping_and_adjacent_grants_join() {
        let perms = [
            perm(PermType::Read, "a", b"c"),
            perm(PermType::Read, "c", b"e"),
            perm(PermType::Readwrite, "b", b"d"),
            perm(PermType::Read, "f", b"g"),
        ];
        let can = |key: &str, end: &str| covers(&perms, Need::Read, key.as_bytes(), end.as_bytes());
        assert!(can("a", "e"), "adjacent intervals have no gap");
        assert!(can("b", "d"));
        assert!(!can("a", "g"), "[e, f) is not granted");
        assert!(!can("a", "f"));
        assert!(can("f", "g"));
        assert!(!covers(&perms, Need::Write, b"a", b"c"));
        assert!(covers(&perms, Need::Write, b"b", b"d"));
        // Everything: only a from-key grant at the smallest key.
        let all = [perm(PermType::Read, "\0", &[0])];
        assert!(covers(&all, Need::Read, &[0], &[0]));
        assert!(!covers(&perms, Need::Read, &[0], &[0]));
        assert!(!covers(&[], Need::Read, b"a", b""));
    }

    /// The interval walk agrees with an exact oracle: if part of `[s, e)` is not granted, the
    /// smallest such key is `s` or the end of some granted interval; so the range is covered
    /// exactly when each of those keys inside it lies in some grant.
    #[test]
    fn agrees_with_an_exact_oracle() {
        let keys: Vec<&[u8]> = vec![b"a", b"a\0", b"ab", b"b", b"b\0", b"c", b"d"];
        let ends: Vec<&[u8]> = vec![b"", &[0], b"a", b"b", b"ab", b"c", b"d"];
        let pairs: Vec<(&[u8], &[u8])> = keys
            .iter()
            .flat_map(|k| ends.iter().map(move |e| (*k, *e)))
            .collect();
        let inside = |p: &[u8], (key, end): (&[u8], &[u8])| match end {
            [] => p == key,
            [0] => p >= key,
            e => p >= key && p < e,
        };
        let end_key = |(key, end): (&[u8], &[u8])| -> Option<Vec<u8>> {
            match end {
                [] => Some([key, &[0]].concat()),
                [0] => None,
                e => Some(e.to_vec()),
            }
        };
        let mut checked = 0;
        for &g1 in &pairs {
            for &g2 in &pairs {
                let perms = [
                    Permission {
                        perm_type: PermType::Read as i32,
                        key: g1.0.to_vec(),
                        range_end: g1.1.to_vec(),
                    },
                    Permission {
                        perm_type: PermType::Read as i32,
                        key: g2.0.to_vec(),
                        range_end: g2.1.to_vec(),
                    },
                ];
                for &req in &pairs {
                    let empty = end_key(req).is_some_and(|e| e.as_slice() <= req.0);
                    let mut candidates = vec![req.0.to_vec()];
                    candidates.extend([g1, g2].into_iter().filter_map(end_key));
                    let want = !empty
                        && candidates
                            .iter()
                            .filter(|p| inside(p, req))
                            .all(|p| inside(p, g1) || inside(p, g2))
                        && (end_key(req).is_some()
                            || end_key(g1).is_none()
                            || end_key(g2).is_none());
                    assert_eq!(
                        covers(&perms, Need::Read, req.0, req.1),
                        want,
                        "{g1:?} {g2:?} {req:?}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 100_000, "{checked} cases");
    }
}
