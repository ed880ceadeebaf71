//! Requests applied once: the state machine remembers the origins (gateway id, request id) of
//! recent client writes, so a request proposed twice (a retry whose first attempt did commit)
//! is not applied twice.
//!
//! The memory is replicated state: every member decides alike from the same entries, it is
//! written in the same engine batch as the write it records (metadata keys
//! `dedup/<gateway><request>`, value: the log index), and snapshots carry it. It is bounded:
//! per gateway the newest [`WINDOW`] request ids (older ids count as seen), and at most
//! [`MAX_GATEWAYS`] gateways (the one idle longest, by log index, is forgotten).

use crate::command::Origin;
use std::collections::{BTreeMap, BTreeSet};

/// Request ids remembered per gateway. A gateway numbers requests in order, so an id this far
/// behind its newest is a request long answered.
pub const WINDOW: usize = 4096;
/// Gateways remembered at once.
pub const MAX_GATEWAYS: usize = 256;

const PREFIX: &[u8] = b"dedup/";

#[derive(Debug, Default)]
struct Window {
    ids: BTreeSet<u64>,
    /// Ids at or below this one were dropped from the window: treated as seen.
    floor: u64,
    /// Log index of the last request recorded.
    last_index: u64,
}

/// Metadata changes that go into the entry's batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub put: Option<(Vec<u8>, Vec<u8>)>,
    pub delete: Vec<Vec<u8>>,
}

#[derive(Debug, Default)]
pub struct Dedup {
    gateways: BTreeMap<u64, Window>,
}

fn key(o: Origin) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(&o.gateway.to_be_bytes());
    k.extend_from_slice(&o.request.to_be_bytes());
    k
}

fn parse(k: &[u8]) -> Option<Origin> {
    let rest = k.strip_prefix(PREFIX)?;
    let gateway = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let request = u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?);
    Some(Origin { gateway, request })
}

impl Dedup {
    /// The metadata prefix the records live under.
    pub fn prefix() -> &'static [u8] {
        PREFIX
    }

    /// Rebuilds the memory from stored `(key, value)` records.
    pub fn restore(records: &[(Vec<u8>, Vec<u8>)]) -> Self {
        let mut d = Dedup::default();
        for (k, v) in records {
            let Some(o) = parse(k) else { continue };
            let index = v
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            let w = d.gateways.entry(o.gateway).or_default();
            w.ids.insert(o.request);
            w.last_index = w.last_index.max(index);
        }
        for w in d.gateways.values_mut() {
            w.settle_floor();
        }
        d
    }

    /// True when `o` was applied before (or is too old to tell, which counts as applied).
    pub fn seen(&self, o: Origin) -> bool {
        self.gateways
            .get(&o.gateway)
            .is_some_and(|w| o.request <= w.floor || w.ids.contains(&o.request))
    }

    /// Records `o` as applied by entry `index`; returns the metadata changes to store with it.
    pub fn record(&mut self, o: Origin, index: u64) -> Changes {
        let mut changes = Changes {
            put: Some((key(o), index.to_be_bytes().to_vec())),
            delete: Vec::new(),
        };
        if !self.gateways.contains_key(&o.gateway) && self.gateways.len() >= MAX_GATEWAYS {
            let idle = self
                .gateways
                .iter()
                .min_by_key(|(id, w)| (w.last_index, **id))
                .map(|(id, _)| *id);
            if let Some(id) = idle
                && let Some(w) = self.gateways.remove(&id)
            {
                changes.delete.extend(w.ids.iter().map(|&request| {
                    key(Origin {
                        gateway: id,
                        request,
                    })
                }));
            }
        }
        let w = self.gateways.entry(o.gateway).or_default();
        w.ids.insert(o.request);
        w.last_index = index;
        while w.ids.len() > WINDOW {
            if let Some(oldest) = w.ids.pop_first() {
                changes.delete.push(key(Origin {
                    gateway: o.gateway,
                    request: oldest,
                }));
            }
        }
        w.settle_floor();
        changes
    }
}

impl Window {
    /// A full window counts everything below its oldest id as seen. Derived from the ids alone,
    /// so a member that restored them from disk decides exactly as one that never stopped.
    fn settle_floor(&mut self) {
        if self.ids.len() >= WINDOW {
            self.floor = self.ids.first().map_or(0, |f| f.saturating_sub(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(gateway: u64, request: u64) -> Origin {
        Origin { gateway, request }
    }

    #[test]
    fn remembers_a_window_per_gateway_and_survives_restore() {
        let mut d = Dedup::default();
        let mut stored = BTreeMap::new();
        for r in 1..=(WINDOW as u64 + 10) {
            assert!(!d.seen(o(7, r)));
            let c = d.record(o(7, r), r);
            let (k, v) = c.put.expect("put");
            stored.insert(k, v);
            for k in c.delete {
                stored.remove(&k);
            }
            assert!(d.seen(o(7, r)));
        }
        assert!(!d.seen(o(8, 1)), "other gateways are separate");
        assert!(d.seen(o(7, 3)), "below the window counts as seen");
        assert_eq!(stored.len(), WINDOW);
        let records: Vec<_> = stored.into_iter().collect();
        let back = Dedup::restore(&records);
        for r in [1, 11, WINDOW as u64 + 10] {
            assert!(back.seen(o(7, r)), "{r}");
        }
        assert!(!back.seen(o(7, WINDOW as u64 + 11)));
    }

    #[test]
    fn forgets_the_idlest_gateway() {
        let mut d = Dedup::default();
        for g in 0..MAX_GATEWAYS as u64 {
            d.record(o(g, 1), 100 + g);
        }
        let c = d.record(o(9999, 1), 1000);
        assert_eq!(c.delete, vec![key(o(0, 1))]);
        assert!(!d.seen(o(0, 1)));
        assert!(d.seen(o(1, 1)));
    }
}
