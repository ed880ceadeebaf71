//! Watch as Server-Sent Events.
//!
//! Each etcd event is one SSE event, `event: put` or `event: delete`, whose data is the key-value
//! (a delete's has the key and its mod_revision). The `id:` of an event is its revision, and is
//! set only on the last event of each revision (a transaction makes several events with one
//! revision; etcd never splits a revision across watch answers). A client that reconnects with
//! `Last-Event-ID: R` starts at R + 1, so it gets every revision after R exactly once. A
//! cancel (a compacted start revision, a refused watch) is one `event: error` whose data is a
//! problem object, and ends the stream.

use super::extract::{Params, Segment, Token};
use super::problem::{ErrorResponses, Problem};
use super::types::{Encoding, KeyValue, WatchParams};
use crate::etcd::concurrency::prefix_end;
use crate::http::local::{Local, request};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use metastore_proto::etcdserverpb::{
    WatchCreateRequest, WatchRequest, WatchResponse, watch_request,
};
use metastore_proto::mvccpb::event::EventType;
use std::convert::Infallible;

/// etcd's text for a start revision below the compaction revision.
const COMPACTED: &str = "mvcc: required revision has been compacted";

/// Watch one key, or the keys starting with it.
#[utoipa::path(
    get,
    operation_id = "watch_key",
    path = "/api/v1/watch/{*key}",
    tag = "watch",
    params(("key" = String, Path, description = "The key (or prefix, with prefix=true)"),
        WatchParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this revision \
        (the id of the last event received)")),
    responses(
        (status = 200, description = "An event stream: `event: put|delete`, `data:` the \
            key-value, `id:` the revision on the last event of each revision; `event: error` \
            with a problem object ends it", body = KeyValue, content_type = "text/event-stream"),
        ErrorResponses,
    )
)]
pub async fn watch_key(
    State(local): State<Local>,
    Token(token): Token,
    Segment(key): Segment,
    Params(p): Params<WatchParams>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let key = p.encoding.decode("key", &key)?;
    open(local, &token, key, &p, &headers).await
}

/// Watch every key.
#[utoipa::path(
    get,
    operation_id = "watch_all",
    path = "/api/v1/watch",
    tag = "watch",
    params(WatchParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this revision")),
    responses(
        (status = 200, description = "An event stream, as for one key", body = KeyValue,
            content_type = "text/event-stream"),
        ErrorResponses,
    )
)]
pub async fn watch_all(
    State(local): State<Local>,
    Token(token): Token,
    Params(p): Params<WatchParams>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    open(local, &token, Vec::new(), &p, &headers).await
}

/// The revision to start at: after `Last-Event-ID`, else `start_revision`.
fn start_revision(p: &WatchParams, headers: &HeaderMap) -> Result<i64, Problem> {
    let Some(last) = headers.get("last-event-id") else {
        return Ok(p.start_revision.unwrap_or_default());
    };
    let text = last.to_str().unwrap_or_default().trim();
    match text.parse::<i64>() {
        Ok(rev) if rev >= 0 => Ok(rev + 1),
        _ => Err(Problem::bad_request(format!(
            "Last-Event-ID {text:?} is no revision"
        ))),
    }
}

async fn open(
    local: Local,
    token: &str,
    key: Vec<u8>,
    p: &WatchParams,
    headers: &HeaderMap,
) -> Result<Response, Problem> {
    let (key, range_end) = if key.is_empty() {
        (vec![0], vec![0])
    } else if p.prefix {
        let end = prefix_end(&key);
        (key, end)
    } else {
        (key, Vec::new())
    };
    let create = WatchCreateRequest {
        key,
        range_end,
        start_revision: start_revision(p, headers)?,
        ..Default::default()
    };
    // The request stream stays open as long as the event stream: dropping the event stream
    // (the client went away) ends the watch.
    let (requests, rx) = tokio::sync::mpsc::channel(1);
    let _ = requests.try_send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
    });
    let rx = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut answers = local.watch().watch(request(rx, token)).await?.into_inner();
    // The first answer says whether the watch was created.
    let first = match answers.next().await {
        Some(first) => first?,
        None => {
            return Err(Problem::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "the watch stream ended",
            ));
        }
    };
    if first.canceled && first.compact_revision == 0 {
        return Err(canceled(&first));
    }
    let enc = p.encoding;
    let answers = futures::stream::iter([Ok(first)]).chain(answers);
    // Ends right after the events of an answer that ends the stream, without waiting for the
    // next answer (a canceled watch's stream stays open).
    let events = futures::stream::unfold(
        (answers, requests, false),
        move |(mut answers, requests, ended)| async move {
            if ended {
                return None;
            }
            let (events, end) = events_of(enc, answers.next().await?);
            Some((futures::stream::iter(events), (answers, requests, end)))
        },
    )
    .flatten()
    .map(Ok::<_, Infallible>);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The problem of a canceled watch.
fn canceled(r: &WatchResponse) -> Problem {
    if r.compact_revision > 0 {
        let detail = if r.cancel_reason.is_empty() {
            COMPACTED
        } else {
            r.cancel_reason.as_str()
        };
        return Problem {
            compact_revision: Some(r.compact_revision),
            ..Problem::grpc(tonic::Code::OutOfRange, detail)
        };
    }
    Problem::bad_request(if r.cancel_reason.is_empty() {
        "the watch was canceled"
    } else {
        r.cancel_reason.as_str()
    })
}

fn error_event(p: &Problem) -> Event {
    Event::default()
        .event("error")
        .data(serde_json::to_string(p).unwrap_or_default())
}

/// Whether the `i`th event is the last of its revision (events come in revision order).
fn ends_revision(revisions: &[i64], i: usize) -> bool {
    revisions.get(i + 1) != revisions.get(i)
}

/// The SSE events of one watch answer, and whether the stream ends with them.
fn events_of(enc: Encoding, answer: Result<WatchResponse, tonic::Status>) -> (Vec<Event>, bool) {
    let r = match answer {
        Ok(r) => r,
        Err(status) => return (vec![error_event(&Problem::from(status))], true),
    };
    if r.canceled {
        return (vec![error_event(&canceled(&r))], true);
    }
    let mut out = Vec::with_capacity(r.events.len());
    let revisions: Vec<i64> = r
        .events
        .iter()
        .map(|e| e.kv.as_ref().map(|kv| kv.mod_revision).unwrap_or_default())
        .collect();
    for (i, e) in r.events.iter().enumerate() {
        let kv: KeyValue = match enc.kv(&e.kv.clone().unwrap_or_default()) {
            Ok(kv) => kv,
            Err(p) => {
                out.push(error_event(&p));
                return (out, true);
            }
        };
        let kind = match EventType::try_from(e.r#type) {
            Ok(EventType::Delete) => "delete",
            _ => "put",
        };
        let mut event = Event::default()
            .event(kind)
            .data(serde_json::to_string(&kv).unwrap_or_default());
        if ends_revision(&revisions, i) {
            event = event.id(revisions[i].to_string());
        }
        out.push(event);
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use metastore_proto::mvccpb;

    fn event(kind: EventType, key: &str, rev: i64) -> mvccpb::Event {
        mvccpb::Event {
            r#type: kind as i32,
            kv: Some(mvccpb::KeyValue {
                key: key.into(),
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn one_id_per_revision_on_its_last_event() {
        let revisions = [5, 5, 6, 7, 7, 7];
        let ends: Vec<bool> = (0..revisions.len())
            .map(|i| ends_revision(&revisions, i))
            .collect();
        assert_eq!(ends, [false, true, true, false, false, true]);
        let r = WatchResponse {
            events: vec![
                event(EventType::Put, "a", 5),
                event(EventType::Delete, "b", 5),
            ],
            ..Default::default()
        };
        let (events, end) = events_of(Encoding::Utf8, Ok(r));
        assert_eq!((events.len(), end), (2, false));
        let mut e = event(EventType::Put, "x", 5);
        if let Some(kv) = e.kv.as_mut() {
            kv.value = vec![0xff];
        }
        let bad = WatchResponse {
            events: vec![e],
            ..Default::default()
        };
        let (events, end) = events_of(Encoding::Utf8, Ok(bad));
        assert_eq!(
            (events.len(), end),
            (1, true),
            "not UTF-8: an error that ends the stream"
        );
    }

    #[test]
    fn compaction_is_an_error_with_etcds_text() {
        let r = WatchResponse {
            canceled: true,
            compact_revision: 9,
            ..Default::default()
        };
        let p = canceled(&r);
        assert_eq!(p.detail, COMPACTED);
        assert_eq!(p.compact_revision, Some(9));
        assert_eq!(p.grpc_code, Some(tonic::Code::OutOfRange as i32));
    }
}
