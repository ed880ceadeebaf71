//! Replicated cluster records kept as metadata (no revision): published gateways (written by
//! the state machine, read by membership listings) and the members that have run.

pub const PREFIX: &[u8] = b"gateway/";

/// The metadata record of a published gateway: keyed by its client URLs, valued by the member
/// it prefers.
pub fn record(member_id: u64, client_urls: &[String]) -> (Vec<u8>, Vec<u8>) {
    let mut key = PREFIX.to_vec();
    key.extend_from_slice(client_urls.join(",").as_bytes());
    (key, member_id.to_be_bytes().to_vec())
}

pub fn urls_of(key: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(&key[PREFIX.len().min(key.len())..])
        .split(',')
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

const STARTED: &[u8] = b"started/";

/// The metadata key recording that member `id` has run.
pub fn started_key(id: u64) -> Vec<u8> {
    let mut key = STARTED.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}
