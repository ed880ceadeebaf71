//! `--max-connections`: at most that many client connections open at once over all of a
//! gateway's listeners. A connection over the limit is closed as soon as it is accepted
//! (clients see the connection reset and reconnect with their backoff) and counted in
//! `metastore_gateway_connections_refused_total`.

use super::authority::AuthorityFix;
use futures::{Stream, StreamExt};
use std::io;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The gateway-wide connection budget (none: no limit).
#[derive(Clone, Debug, Default)]
pub struct ConnectionLimit {
    permits: Option<Arc<Semaphore>>,
}

impl ConnectionLimit {
    pub fn new(max: Option<usize>) -> Self {
        ConnectionLimit {
            permits: max.filter(|&m| m > 0).map(|m| Arc::new(Semaphore::new(m))),
        }
    }

    /// A place for one more connection: `Some(None)` when there is no limit, `None` when the
    /// limit is reached.
    fn admit(&self) -> Option<Option<OwnedSemaphorePermit>> {
        match &self.permits {
            None => Some(None),
            Some(s) => s.clone().try_acquire_owned().ok().map(Some),
        }
    }

    /// The accepted connections of `incoming` within the limit, each holding its place until
    /// it closes, ready for the gRPC server.
    pub fn serve<S>(
        &self,
        incoming: impl Stream<Item = io::Result<S>> + Send + 'static,
    ) -> impl Stream<Item = io::Result<AuthorityFix<S>>> + Send + 'static
    where
        S: Send + 'static,
    {
        let limit = self.clone();
        incoming.filter_map(move |conn| {
            let admitted = match conn {
                Err(e) => Some(Err(e)),
                Ok(conn) => match limit.admit() {
                    Some(place) => Some(Ok(AuthorityFix::new(conn).holding(place))),
                    None => {
                        crate::metrics::connection_refused();
                        tracing::debug!("connection refused: --max-connections reached");
                        None
                    }
                },
            };
            std::future::ready(admitted)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn places_come_back_when_connections_close() {
        let limit = ConnectionLimit::new(Some(2));
        let incoming = futures::stream::iter((0..3).map(io::Result::Ok));
        let admitted: Vec<_> = limit.serve(incoming).collect().await;
        assert_eq!(admitted.len(), 2, "the third is over the limit");
        drop(admitted);
        let again: Vec<_> = limit
            .serve(futures::stream::iter([io::Result::Ok(0)]))
            .collect()
            .await;
        assert_eq!(again.len(), 1, "closed connections free their places");
        let unlimited = ConnectionLimit::new(None);
        let all: Vec<_> = unlimited
            .serve(futures::stream::iter((0..100).map(io::Result::Ok)))
            .collect()
            .await;
        assert_eq!(all.len(), 100);
    }
}
