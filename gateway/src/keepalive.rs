//! Lease renewals of every client keep-alive stream of this gateway, multiplexed onto one
//! upstream stream to storaged: waiting renewals go up together in one batch, and the next
//! batch leaves without waiting for the answer to the previous one.
//!
//! A renewal changes nothing but a deadline, so it is safe to send again: when the upstream
//! stream breaks (the member died) or a batch finds no leader, its renewals are sent again on
//! a new stream until the request timeout, and only then answered with the error.

use crate::error::Error;
use crate::upstream::{REQUEST_TIMEOUT, Upstream};
use metastore_internal_proto::storage::{ErrorCode, RenewBatch, RenewReply};
use metastore_proto::etcdserverpb::LeaseKeepAliveResponse;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::Streaming;

/// Most renewals in one batch.
const MAX_BATCH: usize = 4096;
/// Batches sent and not yet answered; more renewals wait and leave together. Kept below what
/// storaged buffers per stream, so its answers never wait for this side to read them while
/// this side waits to send.
const MAX_IN_FLIGHT: usize = 32;
/// Renewals waiting in the gateway before callers are slowed down.
const QUEUE: usize = 65_536;
/// How often deadlines are checked and a paused sender resumes.
const TICK: Duration = Duration::from_millis(50);
/// Pause before sending again after a batch found no leader or the stream broke.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

struct Pending {
    id: i64,
    deadline: Instant,
    reply: oneshot::Sender<Result<LeaseKeepAliveResponse, Error>>,
}

impl Pending {
    fn answer(self, result: Result<LeaseKeepAliveResponse, Error>) {
        let _ = self.reply.send(result);
    }
}

#[derive(Clone)]
pub struct KeepAliveHub {
    tx: mpsc::Sender<Pending>,
}

impl KeepAliveHub {
    /// Starts the hub's task. Call inside the runtime.
    pub fn spawn(upstream: Upstream) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(Mux::new(upstream).run(rx));
        Self { tx }
    }

    /// Renews lease `id` on the leader: its TTL, or 0 when the lease does not exist or has
    /// expired (etcd's keep-alive answer).
    pub async fn renew(&self, id: i64) -> Result<LeaseKeepAliveResponse, Error> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            id,
            deadline: Instant::now() + REQUEST_TIMEOUT,
            reply,
        };
        self.tx
            .send(pending)
            .await
            .map_err(|_| Error::Internal("keep-alive hub stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Internal("keep-alive hub stopped".into()))?
    }
}

/// The upstream stream: batches go out on `tx`, answers come back on `replies`; `member` is
/// the index of the member it goes to.
struct Link {
    tx: mpsc::Sender<RenewBatch>,
    replies: Streaming<RenewReply>,
    member: usize,
}

struct InFlight {
    sent: Instant,
    renewals: Vec<Pending>,
}

struct Mux {
    upstream: Upstream,
    link: Option<Link>,
    queue: VecDeque<Pending>,
    in_flight: HashMap<u64, InFlight>,
    next_seq: u64,
    paused_until: Option<Instant>,
    last_error: Option<Error>,
}

impl Mux {
    fn new(upstream: Upstream) -> Self {
        Self {
            upstream,
            link: None,
            queue: VecDeque::new(),
            in_flight: HashMap::new(),
            next_seq: 1,
            paused_until: None,
            last_error: None,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.send_queued().await;
            tokio::select! {
                pending = rx.recv() => match pending {
                    Some(p) => {
                        self.queue.push_back(p);
                        while self.queue.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(p) => self.queue.push_back(p),
                                Err(_) => break,
                            }
                        }
                    }
                    None => return,
                },
                reply = next_reply(&mut self.link) => match reply {
                    Some(reply) => self.answer(reply),
                    None => self.broken(Error::Unavailable("storage member closed the keep-alive stream".into())),
                },
                _ = tick.tick() => self.expire(),
            }
        }
    }

    /// Sends what is queued, in batches (at most [`MAX_IN_FLIGHT`] unanswered), opening the
    /// upstream stream if needed.
    async fn send_queued(&mut self) {
        if self.queue.is_empty()
            || self.in_flight.len() >= MAX_IN_FLIGHT
            || self.paused_until.is_some_and(|t| Instant::now() < t)
        {
            return;
        }
        self.paused_until = None;
        if self.link.is_none() {
            let (tx, rx) = mpsc::channel(64);
            match self.upstream.renew_stream(rx).await {
                Ok((replies, member)) => {
                    self.link = Some(Link {
                        tx,
                        replies,
                        member,
                    })
                }
                Err(e) => {
                    tracing::debug!(error = %e, "keep-alive stream could not be opened");
                    self.last_error = Some(e);
                    self.paused_until = Some(Instant::now() + RETRY_PAUSE);
                    return;
                }
            }
        }
        while !self.queue.is_empty() && self.in_flight.len() < MAX_IN_FLIGHT {
            let n = self.queue.len().min(MAX_BATCH);
            let renewals: Vec<Pending> = self.queue.drain(..n).collect();
            crate::metrics::keepalive_batch(n);
            let seq = self.next_seq;
            self.next_seq += 1;
            let batch = RenewBatch {
                seq,
                context: Some(self.upstream.renew_context()),
                ids: renewals.iter().map(|p| p.id).collect(),
            };
            self.in_flight.insert(
                seq,
                InFlight {
                    sent: Instant::now(),
                    renewals,
                },
            );
            let sent = match &self.link {
                Some(link) => link.tx.send(batch).await.is_ok(),
                None => false,
            };
            if !sent {
                self.broken(Error::Unavailable("keep-alive stream closed".into()));
                return;
            }
        }
    }

    fn answer(&mut self, reply: RenewReply) {
        let Some(batch) = self.in_flight.remove(&reply.seq) else {
            return;
        };
        if let Some(e) = reply.error {
            let retry = matches!(
                ErrorCode::try_from(e.code),
                Ok(ErrorCode::NoLeader | ErrorCode::LeaderChanged | ErrorCode::Timeout)
            );
            let error = Error::from(e);
            if retry {
                self.last_error = Some(error);
                self.requeue(batch.renewals);
                self.paused_until = Some(Instant::now() + RETRY_PAUSE);
            } else {
                for p in batch.renewals {
                    p.answer(Err(error.clone()));
                }
            }
            return;
        }
        if reply.ttls.len() != batch.renewals.len() {
            for p in batch.renewals {
                p.answer(Err(Error::Internal("malformed renewal answer".into())));
            }
            return;
        }
        for (p, ttl) in batch.renewals.into_iter().zip(reply.ttls) {
            let id = p.id;
            p.answer(Ok(LeaseKeepAliveResponse {
                header: reply.header,
                id,
                ttl,
            }));
        }
    }

    /// The stream is unusable: drop it and send its unanswered renewals again on a new one.
    fn broken(&mut self, error: Error) {
        tracing::debug!(error = %error, "keep-alive stream lost");
        self.link = None;
        self.last_error = Some(error);
        let mut seqs: Vec<u64> = self.in_flight.keys().copied().collect();
        seqs.sort_unstable();
        for seq in seqs.into_iter().rev() {
            if let Some(batch) = self.in_flight.remove(&seq) {
                self.requeue(batch.renewals);
            }
        }
        self.paused_until = Some(Instant::now() + RETRY_PAUSE);
    }

    /// Puts renewals back at the front of the queue, in their order.
    fn requeue(&mut self, renewals: Vec<Pending>) {
        for p in renewals.into_iter().rev() {
            self.queue.push_front(p);
        }
    }

    /// Answers renewals past their deadline with the last error seen, drops a stream whose
    /// oldest batch has waited longer than the request timeout (a hung member), and closes an
    /// idle stream to a member that no longer leads (the next batch goes to the leader).
    fn expire(&mut self) {
        let now = Instant::now();
        if self.in_flight.is_empty()
            && let (Some(link), Some(leader)) = (&self.link, self.upstream.leader_hint())
            && link.member != leader
        {
            self.link = None;
        }
        if self
            .in_flight
            .values()
            .any(|b| now.duration_since(b.sent) > REQUEST_TIMEOUT)
        {
            self.broken(Error::Timeout);
        }
        if self.queue.front().is_none_or(|p| p.deadline > now) {
            return;
        }
        let error = self.last_error.clone().unwrap_or(Error::Timeout);
        let (late, waiting): (Vec<Pending>, Vec<Pending>) =
            self.queue.drain(..).partition(|p| p.deadline <= now);
        self.queue = waiting.into();
        for p in late {
            p.answer(Err(error.clone()));
        }
    }
}

async fn next_reply(link: &mut Option<Link>) -> Option<RenewReply> {
    match link {
        Some(link) => link.replies.message().await.ok().flatten(),
        None => std::future::pending().await,
    }
}
