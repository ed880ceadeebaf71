//! The gateway's streaming routes (watch, lease keep-alive, snapshot, election observe).
//!
//! - Requests: the body holds JSON objects one after another (any whitespace between them),
//!   read as they arrive; each becomes one request message. The end of the body half-closes the
//!   gRPC request stream (the watch keeps streaming; keep-alive ends once it has answered).
//! - Answers: one line `{"result":<message>}` per message, sent as it comes. An error ends the
//!   stream with `{"error":{"grpc_code":…,"http_code":…,"message":…,"http_status":…}}`; when it
//!   comes before any message, its HTTP status is the response's.

use super::{answer_headers, decode, decode_error_text, error_response, post_only};
use crate::error::http_status_of;
use crate::http::local::{Local, request};
use crate::http::token_of;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use bytes::BytesMut;
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;
use tokio_stream::wrappers::ReceiverStream;

type Requests<T> = Pin<Box<dyn Stream<Item = T> + Send>>;

/// Requests read ahead of the call.
const REQUESTS_IN_FLIGHT: usize = 16;

/// The watch route: a bidirectional stream.
pub fn watch_route() -> MethodRouter<Local> {
    post_only(watch)
}

async fn watch(State(local): State<Local>, headers: HeaderMap, body: Body) -> Response {
    let requests = match open_requests(body).await {
        Ok(requests) => requests,
        Err(resp) => return resp,
    };
    let mut client = local.watch();
    answer(client.watch(request(requests, &token_of(&headers))).await).await
}

/// The lease keep-alive route: a bidirectional stream.
pub fn keep_alive_route() -> MethodRouter<Local> {
    post_only(keep_alive)
}

async fn keep_alive(State(local): State<Local>, headers: HeaderMap, body: Body) -> Response {
    let requests = match open_requests(body).await {
        Ok(requests) => requests,
        Err(resp) => return resp,
    };
    let mut client = local.lease();
    answer(
        client
            .lease_keep_alive(request(requests, &token_of(&headers)))
            .await,
    )
    .await
}

/// A route whose request is one message and whose answer is a stream.
pub fn server_stream_route<Req, Resp, F, Fut>(call: F) -> MethodRouter<Local>
where
    Req: DeserializeOwned + Default + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Local, tonic::Request<Req>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<tonic::Response<tonic::Streaming<Resp>>, tonic::Status>> + Send,
{
    post_only(
        move |State(local): State<Local>, headers: HeaderMap, body: Bytes| async move {
            let req: Req = match decode(&body) {
                Ok(req) => req,
                Err(text) => return error_response(tonic::Code::InvalidArgument, &text),
            };
            answer(call(local, request(req, &token_of(&headers))).await).await
        },
    )
}

/// The request stream of a bidirectional call, read from `body` by a task of its own.
async fn open_requests<Req>(body: Body) -> Result<ReceiverStream<Req>, Response>
where
    Req: DeserializeOwned + Send + 'static,
{
    let mut parsed = json_values::<Req>(body);
    // The first request is read before the call, so a body that does not parse is answered
    // as the gateway answers it (a plain error, no stream).
    let first = match parsed.next().await {
        Some(Ok(first)) => Some(first),
        Some(Err(text)) => return Err(error_response(tonic::Code::Unknown, &text)),
        None => None,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(REQUESTS_IN_FLIGHT);
    tokio::spawn(async move {
        if let Some(first) = first {
            if tx.send(first).await.is_err() {
                return;
            }
            // A later request that does not parse ends the request stream.
            while let Some(Ok(next)) = parsed.next().await {
                if tx.send(next).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// The answer to a streaming call.
async fn answer<Resp>(
    call: Result<tonic::Response<tonic::Streaming<Resp>>, tonic::Status>,
) -> Response
where
    Resp: Serialize + Send + 'static,
{
    match call {
        Ok(answers) => answer_stream(answers.into_inner()).await,
        Err(status) => error_response(status.code(), status.message()),
    }
}

/// The answer stream as NDJSON. Waits for the first answer, so that an error before any answer
/// sets the HTTP status.
async fn answer_stream<Resp>(mut answers: tonic::Streaming<Resp>) -> Response
where
    Resp: Serialize + Send + 'static,
{
    let first = answers.next().await;
    let status = match &first {
        Some(Err(s)) => http_status_of(s.code()),
        _ => StatusCode::OK,
    };
    let lines = futures::stream::iter(first)
        .chain(answers)
        .scan(false, |ended, item| {
            if *ended {
                return futures::future::ready(None);
            }
            *ended = item.is_err();
            futures::future::ready(Some(Ok::<_, std::convert::Infallible>(line(item))))
        });
    let mut resp = (status, Body::from_stream(lines)).into_response();
    answer_headers(resp.headers_mut());
    resp
}

/// One line of a streamed answer.
fn line<Resp: Serialize>(item: Result<Resp, tonic::Status>) -> Bytes {
    #[derive(Serialize)]
    struct Result<T> {
        result: T,
    }
    #[derive(Serialize)]
    struct StreamError<'a> {
        grpc_code: i32,
        http_code: u16,
        message: &'a str,
        http_status: &'a str,
    }
    #[derive(Serialize)]
    struct ErrorLine<'a> {
        error: StreamError<'a>,
    }
    let mut out = match item {
        Ok(message) => serde_json::to_vec(&Result { result: message }),
        Err(status) => {
            let http = http_status_of(status.code());
            serde_json::to_vec(&ErrorLine {
                error: StreamError {
                    grpc_code: status.code() as i32,
                    http_code: http.as_u16(),
                    message: status.message(),
                    http_status: http.canonical_reason().unwrap_or_default(),
                },
            })
        }
    }
    .unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

/// The JSON values in a body, decoded as they arrive. A value that does not decode ends the
/// stream with its error.
fn json_values<T: DeserializeOwned + Send + 'static>(body: Body) -> Requests<Result<T, String>> {
    struct St {
        chunks: axum::body::BodyDataStream,
        buf: BytesMut,
        body_done: bool,
        failed: bool,
    }
    let st = St {
        chunks: body.into_data_stream(),
        buf: BytesMut::new(),
        body_done: false,
        failed: false,
    };
    Box::pin(futures::stream::unfold(st, |mut st| async move {
        if st.failed {
            return None;
        }
        loop {
            // Decoded apart from the await below, so the future holds no borrow of the buffer.
            let next = {
                let mut values = serde_json::Deserializer::from_slice(&st.buf).into_iter::<T>();
                match values.next() {
                    Some(Ok(value)) => Some(Ok((value, values.byte_offset()))),
                    Some(Err(e)) if !e.is_eof() || st.body_done => Some(Err(decode_error_text(&e))),
                    _ => None,
                }
            };
            match next {
                Some(Ok((value, used))) => {
                    let _ = st.buf.split_to(used);
                    return Some((Ok(value), st));
                }
                Some(Err(text)) => {
                    st.failed = true;
                    return Some((Err(text), st));
                }
                None if st.body_done => return None,
                None => {}
            }
            match st.chunks.next().await {
                Some(Ok(chunk)) => st.buf.extend_from_slice(&chunk),
                Some(Err(_)) | None => st.body_done = true,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use metastore_proto::etcdserverpb::{WatchRequest, watch_request};

    #[tokio::test]
    async fn concatenated_objects_are_requests_until_one_does_not_parse() {
        let body = Body::from(r#" {"create_request":{"key":"YQ=="}}{"progress_request":{}} x"#);
        let got: Vec<_> = json_values::<WatchRequest>(body).collect().await;
        assert_eq!(got.len(), 3);
        match &got[0] {
            Ok(WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(c)),
            }) => assert_eq!(c.key, b"a"),
            other => panic!("first: {other:?}"),
        }
        assert!(matches!(
            &got[1],
            Ok(WatchRequest {
                request_union: Some(watch_request::RequestUnion::ProgressRequest(_))
            })
        ));
        assert!(got[2].is_err());
        let empty: Vec<_> = json_values::<WatchRequest>(Body::from("  "))
            .collect()
            .await;
        assert!(empty.is_empty());
        let cut: Vec<_> = json_values::<WatchRequest>(Body::from(r#"{"create_request":"#))
            .collect()
            .await;
        assert_eq!(cut, vec![Err("unexpected EOF".to_string())]);
    }

    #[test]
    fn lines_are_results_or_one_error() {
        let ok = line(Ok(WatchRequest::default()));
        assert_eq!(&ok[..], b"{\"result\":{}}\n");
        let err = line::<WatchRequest>(Err(tonic::Status::out_of_range("too far")));
        assert_eq!(
            std::str::from_utf8(&err).expect("utf8"),
            "{\"error\":{\"grpc_code\":11,\"http_code\":400,\"message\":\"too far\",\"http_status\":\"Bad Request\"}}\n"
        );
    }
}
