//! Member and cluster identity, derived from the bootstrap flags the way etcd derives them,
//! so the same flags give the same ids as an etcd cluster would.
//!
//! member id  = first 8 bytes (big-endian) of SHA-1(sorted peer URLs ++ cluster token)
//! cluster id = first 8 bytes (big-endian) of SHA-1(sorted member ids as big-endian u64s)

use sha1::{Digest, Sha1};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub member_id: u64,
    pub cluster_id: u64,
    /// Every initial member: name -> peer URLs.
    pub members: BTreeMap<String, Vec<String>>,
    /// `--initial-cluster-token`, used for the ids of members added later.
    pub token: String,
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(b)
}

pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut h = Sha1::new();
    for u in &urls {
        h.update(u.as_bytes());
    }
    h.update(token.as_bytes());
    first_u64(&h.finalize())
}

pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    first_u64(&h.finalize())
}

/// Parses `name=url,name=url,...` (a name may repeat to give a member several URLs).
pub fn parse_initial_cluster(s: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| format!("--initial-cluster entry {part:?} is not name=peerURL"))?;
        if name.is_empty() || url.is_empty() {
            return Err(format!(
                "--initial-cluster entry {part:?} is not name=peerURL"
            ));
        }
        members
            .entry(name.to_string())
            .or_default()
            .push(url.to_string());
    }
    if members.is_empty() {
        return Err("--initial-cluster is empty".into());
    }
    Ok(members)
}

impl Identity {
    pub fn new(name: &str, initial_cluster: &str, token: &str) -> Result<Self, String> {
        let members = parse_initial_cluster(initial_cluster)?;
        if !members.contains_key(name) {
            return Err(format!(
                "--initial-cluster has no member named {name:?} (the value of --name)"
            ));
        }
        let ids: Vec<u64> = members
            .values()
            .map(|urls| member_id(urls, token))
            .collect();
        Ok(Self {
            name: name.to_string(),
            member_id: member_id(&members[name], token),
            cluster_id: cluster_id(&ids),
            members,
            token: token.to_string(),
        })
    }
}

/// File in the data dir that pins the member and cluster ids chosen at first start.
const ID_FILE: &str = "member-id";

/// True when the data dir already belongs to a member (its ids are pinned).
pub fn is_pinned(data_dir: &std::path::Path) -> bool {
    data_dir.join(ID_FILE).exists()
}

impl Identity {
    /// A member restarted with its data keeps the ids it was created with, whatever the
    /// initial-cluster flags say now (as etcd ignores them once it has data). On first start
    /// the ids derived from the flags are written to the data dir.
    pub fn pinned(mut self, data_dir: &std::path::Path) -> Result<Self, String> {
        let path = data_dir.join(ID_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut parts = text.split_whitespace().map(|p| u64::from_str_radix(p, 16));
                match (parts.next(), parts.next()) {
                    (Some(Ok(member)), Some(Ok(cluster))) => {
                        self.member_id = member;
                        self.cluster_id = cluster;
                        Ok(self)
                    }
                    _ => Err(format!("{}: not a member id file", path.display())),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = format!("{:x} {:x}\n", self.member_id, self.cluster_id);
                write_durably(data_dir, &path, text.as_bytes())
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(self)
            }
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

/// Writes `path` so that after a crash it holds either nothing or all of `bytes`: a temporary
/// file, fsynced, renamed into place, and the directory fsynced (the data dir itself too,
/// when it was just created).
fn write_durably(
    dir: &std::path::Path,
    path: &std::path::Path,
    bytes: &[u8],
) -> std::io::Result<()> {
    use std::io::Write;
    let created = !dir.exists();
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    if created && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_depend_on_token() {
        let a = Identity::new("s1", "s1=http://127.0.0.1:2380", "etcd-cluster").expect("id");
        let b = Identity::new("s1", "s1=http://127.0.0.1:2380", "etcd-cluster").expect("id");
        let c = Identity::new("s1", "s1=http://127.0.0.1:2380", "other").expect("id");
        assert_eq!(a, b);
        assert_ne!(a.member_id, c.member_id);
        assert_ne!(a.member_id, 0);
        assert_ne!(a.cluster_id, 0);
    }

    #[test]
    fn bad_initial_cluster() {
        assert!(Identity::new("s1", "s2=http://x:1", "t").is_err());
        assert!(Identity::new("s1", "s1", "t").is_err());
        assert!(Identity::new("s1", "", "t").is_err());
    }
}
