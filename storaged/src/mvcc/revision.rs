//! Revisions and their byte encoding as engine keys.

/// A revision: `main` is the store revision of a write request, `sub` numbers the individual
/// changes inside it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

const TOMBSTONE_MARK: u8 = b't';

impl Revision {
    pub fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    /// Engine key: big-endian `main` then `sub` (so byte order is revision order), plus a
    /// trailing mark for tombstones.
    pub fn to_key(self, tombstone: bool) -> Vec<u8> {
        let mut k = Vec::with_capacity(17);
        k.extend_from_slice(&(self.main as u64).to_be_bytes());
        k.extend_from_slice(&(self.sub as u64).to_be_bytes());
        if tombstone {
            k.push(TOMBSTONE_MARK);
        }
        k
    }

    /// etcd's form of the same key: main, `_`, sub (big-endian), and `t` for a deletion.
    pub fn to_etcd_key(self, tombstone: bool) -> Vec<u8> {
        let mut k = Vec::with_capacity(18);
        k.extend_from_slice(&(self.main as u64).to_be_bytes());
        k.push(b'_');
        k.extend_from_slice(&(self.sub as u64).to_be_bytes());
        if tombstone {
            k.push(TOMBSTONE_MARK);
        }
        k
    }

    /// Inverse of [`Revision::to_etcd_key`].
    pub fn from_etcd_key(k: &[u8]) -> Option<(Revision, bool)> {
        let tombstone = match k.len() {
            17 => false,
            18 if k[17] == TOMBSTONE_MARK => true,
            _ => return None,
        };
        if k[8] != b'_' {
            return None;
        }
        let main = u64::from_be_bytes(k[0..8].try_into().ok()?) as i64;
        let sub = u64::from_be_bytes(k[9..17].try_into().ok()?) as i64;
        Some((Revision { main, sub }, tombstone))
    }

    /// Inverse of [`Revision::to_key`]; `None` for bytes that are not a revision key.
    pub fn from_key(k: &[u8]) -> Option<(Revision, bool)> {
        let tombstone = match k.len() {
            16 => false,
            17 if k[16] == TOMBSTONE_MARK => true,
            _ => return None,
        };
        let main = u64::from_be_bytes(k[0..8].try_into().ok()?) as i64;
        let sub = u64::from_be_bytes(k[8..16].try_into().ok()?) as i64;
        Some((Revision { main, sub }, tombstone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_roundtrip_and_order() {
        let a = Revision::new(2, 0);
        let b = Revision::new(2, 1);
        let c = Revision::new(300, 0);
        assert!(a.to_key(false) < b.to_key(false));
        assert!(b.to_key(true) < c.to_key(false));
        assert_eq!(Revision::from_key(&c.to_key(true)), Some((c, true)));
        assert_eq!(Revision::from_key(&a.to_key(false)), Some((a, false)));
        assert_eq!(Revision::from_key(b"short"), None);
    }

    #[test]
    fn etcd_keys_are_etcds() {
        let rev = Revision::new(0x0102, 3);
        let k = rev.to_etcd_key(false);
        assert_eq!(k, b"\0\0\0\0\0\0\x01\x02_\0\0\0\0\0\0\0\x03");
        assert_eq!(Revision::from_etcd_key(&k), Some((rev, false)));
        let t = rev.to_etcd_key(true);
        assert_eq!(t.len(), 18);
        assert_eq!(Revision::from_etcd_key(&t), Some((rev, true)));
        assert_eq!(Revision::from_etcd_key(b"short"), None);
        assert_eq!(Revision::from_etcd_key(&rev.to_key(false)), None);
    }
}
