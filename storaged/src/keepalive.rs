//! Batched lease renewals. Each gateway sends the keep-alives of all its clients over one
//! stream, in batches; the leader renews them in memory, and any other member passes each
//! batch on to the leader in one call.

use crate::errors::storage_error;
use crate::forward::{Client, Forwarder};
use crate::node::{Node, NodeError};
use crate::stamp::Stamp;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use metastore_internal_proto::storage::{RenewBatch, RenewReply};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

/// Batches of one stream being answered at once (each may wait for a leader).
const CONCURRENT_BATCHES: usize = 64;
const OUT_QUEUE: usize = 64;

#[derive(Clone)]
pub struct Renewer {
    node: Arc<Node>,
    forwarder: Forwarder,
}

impl Renewer {
    pub fn new(node: Arc<Node>, forwarder: Forwarder) -> Self {
        Self { node, forwarder }
    }

    /// Answers one batch: here when this member leads, otherwise on the leader. The header
    /// is this member's, as etcd fills it on the member serving the client.
    pub async fn renew(&self, batch: RenewBatch) -> RenewReply {
        let seq = batch.seq;
        let mut reply = match self.renew_on_leader(batch).await {
            Ok(reply) => reply,
            Err(e) => RenewReply {
                error: Some(storage_error(&e)),
                ..Default::default()
            },
        };
        reply.seq = seq;
        reply.header = Stamp::of(&self.node).at(self.node.store().current_revision());
        reply
    }

    async fn renew_on_leader(&self, batch: RenewBatch) -> Result<RenewReply, NodeError> {
        let forwarded = batch.context.as_ref().is_some_and(|c| c.forwarded);
        if !forwarded && self.node.is_learner() {
            return Err(NodeError::Learner);
        }
        let (node, ids) = (&self.node, &batch.ids.clone());
        let here = move || async move {
            let ttls = node.lease_renew(ids).await?;
            Ok(RenewReply {
                ttls,
                ..Default::default()
            })
        };
        let there = |mut client: Client, batch| async move {
            client
                .lease_renew(batch)
                .await
                .map(tonic::Response::into_inner)
        };
        self.forwarder
            .on_leader(batch, here, there)
            .await
            .map_err(|f| f.into_error())
    }

    /// Serves one gateway's renewal stream: batches are answered as they complete, each
    /// tagged with its `seq`. The stream ends when the gateway stops sending.
    pub fn serve(
        self,
        mut inbound: Streaming<RenewBatch>,
    ) -> ReceiverStream<Result<RenewReply, Status>> {
        let (tx, rx) = mpsc::channel(OUT_QUEUE);
        tokio::spawn(async move {
            let mut running = FuturesUnordered::new();
            loop {
                tokio::select! {
                    batch = inbound.message(), if running.len() < CONCURRENT_BATCHES => match batch {
                        Ok(Some(batch)) => running.push(self.renew(batch)),
                        _ => break,
                    },
                    Some(reply) = running.next(), if !running.is_empty() => {
                        if tx.send(Ok(reply)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        ReceiverStream::new(rx)
    }
}
