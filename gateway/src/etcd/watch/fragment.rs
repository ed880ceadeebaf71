//! Splitting of large watch responses, for watchers that allow fragments.

use metastore_proto::etcdserverpb::WatchResponse;
use prost::Message;

/// Splits a response of two or more events whose encoded size reaches `limit`; every piece but
/// the last is marked `fragment`, and all share the header and watch id.
pub(super) fn fragment(response: WatchResponse, limit: Option<usize>) -> Vec<WatchResponse> {
    let Some(limit) = limit else {
        return vec![response];
    };
    if response.events.len() < 2 || response.encoded_len() < limit {
        return vec![response];
    }
    let shell = WatchResponse {
        events: Vec::new(),
        ..response.clone()
    };
    let base = shell.encoded_len();
    let mut pieces = Vec::new();
    let mut current = shell.clone();
    let mut size = base;
    for ev in response.events {
        let ev_size = ev.encoded_len() + 4;
        if !current.events.is_empty() && size + ev_size >= limit {
            current.fragment = true;
            pieces.push(std::mem::replace(&mut current, shell.clone()));
            size = base;
        }
        size += ev_size;
        current.events.push(ev);
    }
    pieces.push(current);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use metastore_proto::mvccpb::{Event, KeyValue};

    fn ev(n: usize) -> Event {
        Event {
            r#type: 0,
            kv: Some(KeyValue {
                key: b"k".to_vec(),
                value: vec![0; n],
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn fragments_only_large_multi_event_responses() {
        let r = WatchResponse {
            watch_id: 3,
            events: vec![ev(600), ev(600), ev(600)],
            ..Default::default()
        };
        assert_eq!(fragment(r.clone(), None).len(), 1);
        assert_eq!(fragment(r.clone(), Some(100_000)).len(), 1);
        let pieces = fragment(r, Some(1000));
        assert_eq!(pieces.len(), 3);
        assert!(pieces[0].fragment && pieces[1].fragment && !pieces[2].fragment);
        assert!(
            pieces
                .iter()
                .all(|p| p.watch_id == 3 && p.events.len() == 1)
        );
        let single = WatchResponse {
            events: vec![ev(5000)],
            ..Default::default()
        };
        assert_eq!(fragment(single, Some(1000)).len(), 1);
    }
}
