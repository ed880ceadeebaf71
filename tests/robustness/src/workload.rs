//! The clients of a run, talking etcd's API through the gateways with `etcd-client`, and the
//! recorder that keeps every request and answer with its invoke and complete times.
//!
//! - KV clients: get / put / delete / compare-and-swap on a few keys under [`KV_PREFIX`], with
//!   values `c<client>-<seq>` so every write is distinguishable.
//! - Lock clients: a counter incremented under a client-side etcd lock (lease with keep-alive,
//!   a lock key per lease, the lowest create revision holds; each increment is a txn fenced by
//!   the lock key's create revision and the counter's mod revision).
//! - Watchers on the KV prefix, resumed after a stream error from the last event seen + 1, with
//!   progress requested every second.

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, WatchOptions,
};
use metastore_checker::history::{
    CounterIncrement, History, KvInput, KvOp, KvOutput, LockHold, Time, WatchEvent, WatchItem,
    WatchLog,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub const KV_PREFIX: &str = "/r/kv/";
pub const LOCK_PREFIX: &str = "/r/lock/";
pub const COUNTER_KEY: &str = "/r/counter";
/// Every client request gives up after this long (the outcome of a write is then unknown).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// Lock leases.
const LOCK_TTL: i64 = 5;

/// Collects the history of a run.
pub struct Recorder {
    start: Instant,
    kv: Mutex<Vec<KvOp>>,
    watches: Mutex<Vec<WatchLog>>,
    locks: Mutex<Vec<LockHold>>,
    increments: Mutex<Vec<CounterIncrement>>,
    next_client: AtomicU64,
    /// Compare failures of increments (no effect; counted for the report only).
    pub fenced_out: AtomicU64,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            kv: Mutex::new(Vec::new()),
            watches: Mutex::new(Vec::new()),
            locks: Mutex::new(Vec::new()),
            increments: Mutex::new(Vec::new()),
            next_client: AtomicU64::new(1),
            fenced_out: AtomicU64::new(0),
        }
    }

    pub fn now(&self) -> Time {
        self.time_of(Instant::now())
    }

    pub fn time_of(&self, at: Instant) -> Time {
        u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    /// A client id never used before (a KV client takes a new one after an unknown outcome,
    /// as a process that crashed would).
    pub fn new_client(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    pub fn record_kv(&self, op: KvOp) {
        self.kv.lock().push(op);
    }

    /// Takes everything recorded so far.
    pub fn take(&self) -> History {
        History {
            kv: std::mem::take(&mut *self.kv.lock()),
            watches: std::mem::take(&mut *self.watches.lock()),
            locks: std::mem::take(&mut *self.locks.lock()),
            increments: std::mem::take(&mut *self.increments.lock()),
            final_events: Vec::new(),
            final_counter: None,
        }
    }
}

pub fn kv_keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{KV_PREFIX}k{i}")).collect()
}

pub async fn connect(url: &str) -> Result<Client, etcd_client::Error> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(3));
    match tokio::time::timeout(
        Duration::from_secs(3),
        Client::connect([url], Some(options)),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(etcd_client::Error::Internal("connect timed out".into())),
    }
}

/// What a failed request tells about its effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Certainly not applied: the request never left the client (connection refused) or the
    /// gateway rejected it while validating it, before proposing.
    None,
    /// May or may not have been applied.
    Unknown,
}

/// True when the error chain holds an I/O error that proves no byte reached a server.
fn never_sent(mut err: Option<&(dyn std::error::Error + 'static)>) -> bool {
    while let Some(e) = err {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        err = e.source();
    }
    false
}

pub fn classify(e: &etcd_client::Error) -> Effect {
    use std::error::Error as _;
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            if s.code() == tonic::Code::InvalidArgument || never_sent(s.source()) {
                Effect::None
            } else {
                Effect::Unknown
            }
        }
        etcd_client::Error::TransportError(t) => {
            if never_sent(t.source()) {
                Effect::None
            } else {
                Effect::Unknown
            }
        }
        _ => Effect::Unknown,
    }
}

/// Short text of an error for the history (the gRPC code and message).
pub fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}

/// Runs a request with the client timeout; a timeout is an error of unknown effect.
async fn timed<T>(
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, (Effect, String)> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err((classify(&e), describe(&e))),
        Err(_) => Err((Effect::Unknown, "client timeout".to_string())),
    }
}

fn header_rev(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.map(|h| h.revision()).unwrap_or(0)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What every client task shares.
#[derive(Clone)]
pub struct Ctx {
    pub rec: Arc<Recorder>,
    pub gateways: Vec<String>,
    pub keys: Vec<String>,
    pub stop: watch::Receiver<bool>,
    /// Set after the workload stopped: the revision watchers must reach before they end.
    pub watch_target: Arc<AtomicI64>,
}

impl Ctx {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// One KV client: a sequence of single requests, each recorded.
pub async fn kv_worker(ctx: Ctx, worker: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let url = ctx.gateways[worker % ctx.gateways.len()].clone();
    let mut client: Option<Client> = None;
    let mut id = ctx.rec.new_client();
    let mut seq = 0u64;
    // The value this client last saw for each key (None = absent), for CAS expectations.
    let mut known: HashMap<String, Option<String>> = HashMap::new();
    while !ctx.stopped() {
        let Some(c) = client.as_mut() else {
            match connect(&url).await {
                Ok(c) => client = Some(c),
                Err(_) => sleep_ms(200).await,
            }
            continue;
        };
        let key = ctx.keys[rng.usize(..ctx.keys.len())].clone();
        let roll = rng.u32(..100);
        let invoke = ctx.rec.now();
        let (input, result) = if roll < 40 {
            let r = timed(c.get(key.as_str(), None)).await.map(|r| {
                let value = r.kvs().first().map(|kv| text(kv.value()));
                KvOutput::Get {
                    value,
                    revision: header_rev(r.header()),
                }
            });
            (KvInput::Get { key: key.clone() }, r)
        } else if roll < 65 {
            seq += 1;
            let value = format!("c{id}-{seq}");
            let r = timed(c.put(key.as_str(), value.as_str(), None))
                .await
                .map(|r| KvOutput::Put {
                    revision: header_rev(r.header()),
                });
            (
                KvInput::Put {
                    key: key.clone(),
                    value,
                },
                r,
            )
        } else if roll < 85 {
            seq += 1;
            let new = format!("c{id}-{seq}");
            let expect = known.get(&key).cloned().unwrap_or(None);
            let cmp = match &expect {
                Some(v) => Compare::value(key.as_str(), CompareOp::Equal, v.as_str()),
                None => Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
            };
            let txn =
                Txn::new()
                    .when([cmp])
                    .and_then([TxnOp::put(key.as_str(), new.as_str(), None)]);
            let r = timed(c.txn(txn)).await.map(|r| KvOutput::Cas {
                succeeded: r.succeeded(),
                revision: header_rev(r.header()),
            });
            (
                KvInput::Cas {
                    key: key.clone(),
                    expect,
                    new,
                },
                r,
            )
        } else {
            let r = timed(c.delete(key.as_str(), None))
                .await
                .map(|r| KvOutput::Delete {
                    deleted: r.deleted(),
                    revision: header_rev(r.header()),
                });
            (KvInput::Delete { key: key.clone() }, r)
        };
        let complete = ctx.rec.now();
        let is_read = matches!(input, KvInput::Get { .. });
        let output = match result {
            Ok(out) => {
                match (&input, &out) {
                    (_, KvOutput::Get { value, .. }) => {
                        known.insert(key.clone(), value.clone());
                    }
                    (KvInput::Put { value, .. }, _) => {
                        known.insert(key.clone(), Some(value.clone()));
                    }
                    (KvInput::Delete { .. }, _) => {
                        known.insert(key.clone(), None);
                    }
                    (KvInput::Cas { new, .. }, KvOutput::Cas { succeeded, .. }) => {
                        if *succeeded {
                            known.insert(key.clone(), Some(new.clone()));
                        } else {
                            known.remove(&key);
                        }
                    }
                    _ => {}
                }
                out
            }
            // A read that failed had no effect either way.
            Err((_, error)) if is_read => KvOutput::Failed { error },
            Err((Effect::None, error)) => KvOutput::Failed { error },
            Err((Effect::Unknown, error)) => KvOutput::Unknown { error },
        };
        let failed = matches!(output, KvOutput::Failed { .. } | KvOutput::Unknown { .. });
        let unknown = output.is_unknown();
        ctx.rec.record_kv(KvOp {
            client: id,
            invoke,
            complete,
            input,
            output,
        });
        if unknown {
            // The unknown write may still apply at any later time; this client's later
            // operations belong to a new client, as after a crash.
            id = ctx.rec.new_client();
            seq = 0;
            known.clear();
        }
        if failed {
            client = None;
            sleep_ms(100 + rng.u64(..100)).await;
        } else {
            sleep_ms(rng.u64(..8)).await;
        }
    }
}

/// The lease's safe end as the client knows it: the send time of the last renewal answered
/// with a TTL, plus that TTL (the server's expiry can only be later).
struct LeaseClock {
    deadline: Mutex<Instant>,
    /// The server said the lease is gone.
    lost: std::sync::atomic::AtomicBool,
}

async fn keep_alive(mut client: Client, lease: i64, clock: Arc<LeaseClock>) {
    loop {
        let streams = tokio::time::timeout(Duration::from_secs(2), client.lease_keep_alive(lease));
        let Ok(Ok((mut keeper, mut answers))) = streams.await else {
            sleep_ms(300).await;
            continue;
        };
        loop {
            let sent = Instant::now();
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(2), answers.message()).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {
                    let until = sent + Duration::from_secs(u64::try_from(r.ttl()).unwrap_or(0));
                    let mut d = clock.deadline.lock();
                    if until > *d {
                        *d = until;
                    }
                }
                Ok(Ok(Some(_))) => {
                    clock.lost.store(true, Ordering::Relaxed);
                    return;
                }
                _ => break,
            }
            sleep_ms(1000).await;
        }
        sleep_ms(200).await;
    }
}

/// Aborts the keep-alive task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One lock client: acquire, increment the counter once or twice, release; again.
pub async fn lock_worker(ctx: Ctx, worker: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let url = ctx.gateways[worker % ctx.gateways.len()].clone();
    let id = ctx.rec.new_client();
    while !ctx.stopped() {
        let Ok(mut c) = connect(&url).await else {
            sleep_ms(200).await;
            continue;
        };
        let granted_at = Instant::now();
        let lease = match timed(c.lease_grant(LOCK_TTL, None)).await {
            Ok(r) => r,
            Err(_) => {
                sleep_ms(200).await;
                continue;
            }
        };
        let lease_id = lease.id();
        let ttl = u64::try_from(lease.ttl()).unwrap_or(0);
        let clock = Arc::new(LeaseClock {
            deadline: Mutex::new(granted_at + Duration::from_secs(ttl)),
            lost: std::sync::atomic::AtomicBool::new(false),
        });
        let _keeper = AbortOnDrop(tokio::spawn(keep_alive(c.clone(), lease_id, clock.clone())));
        hold_once(&ctx, &mut rng, &mut c, id, lease_id, &clock).await;
        // Best effort: the lease (and with it the lock key, if still there) goes away.
        let _ = timed(c.lease_revoke(lease_id)).await;
        sleep_ms(rng.u64(..20)).await;
    }
}

/// Acquires the lock with `lease_id`, increments, releases. Returns when done or given up.
async fn hold_once(
    ctx: &Ctx,
    rng: &mut fastrand::Rng,
    c: &mut Client,
    id: u64,
    lease_id: i64,
    clock: &LeaseClock,
) {
    let lock_key = format!("{LOCK_PREFIX}{lease_id:x}");
    let put = timed(c.put(
        lock_key.as_str(),
        "",
        Some(PutOptions::new().with_lease(lease_id)),
    ))
    .await;
    if put.is_err() {
        return;
    }
    let mut fencing;
    // Wait until our key has the lowest create revision under the prefix.
    let wait_until = Instant::now() + Duration::from_secs(20);
    let acquired = loop {
        if ctx.stopped() || Instant::now() > wait_until {
            return;
        }
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend);
        match timed(c.get(LOCK_PREFIX, Some(opts))).await {
            Ok(r) => {
                let Some(mine) = r.kvs().iter().find(|kv| kv.key() == lock_key.as_bytes()) else {
                    return; // our key is gone: the lease expired
                };
                fencing = mine.create_revision();
                if r.kvs().first().map(|kv| kv.key()) == Some(lock_key.as_bytes()) {
                    break Instant::now();
                }
            }
            Err(_) => sleep_ms(100).await,
        }
        sleep_ms(20).await;
    };
    // Held from `acquired` until the release is invoked or the lease may have expired.
    let acquired_t = ctx.rec.time_of(acquired);
    let held_until = |now: Instant| -> Time {
        let deadline = *clock.deadline.lock();
        ctx.rec.time_of(now.min(deadline))
    };
    if acquired >= *clock.deadline.lock() || clock.lost.load(Ordering::Relaxed) {
        return; // the lease may have expired before we saw ourselves first: not held
    }
    let rounds = 1 + rng.usize(..2);
    for _ in 0..rounds {
        // Leave a margin so the txn is not sent with a lease about to expire.
        if Instant::now() + Duration::from_secs(1) > *clock.deadline.lock() {
            break;
        }
        let Ok(r) = timed(c.get(COUNTER_KEY, None)).await else {
            break;
        };
        let (value, mod_rev) = match r.kvs().first() {
            Some(kv) => (
                text(kv.value()).parse::<i64>().unwrap_or(i64::MIN),
                kv.mod_revision(),
            ),
            None => (0, 0),
        };
        if value == i64::MIN {
            break;
        }
        let new_value = value + 1;
        let txn = Txn::new()
            .when([
                Compare::create_revision(lock_key.as_str(), CompareOp::Equal, fencing),
                Compare::mod_revision(COUNTER_KEY, CompareOp::Equal, mod_rev),
            ])
            .and_then([TxnOp::put(COUNTER_KEY, new_value.to_string(), None)]);
        let invoke = ctx.rec.now();
        let result = timed(c.txn(txn)).await;
        let complete = ctx.rec.now();
        let acknowledged = match result {
            Ok(r) if r.succeeded() => true,
            Ok(_) => {
                ctx.rec.fenced_out.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Err((Effect::None, _)) => break,
            Err((Effect::Unknown, _)) => false,
        };
        ctx.rec.increments.lock().push(CounterIncrement {
            client: id,
            invoke,
            complete,
            fencing,
            new_value,
            acknowledged,
        });
        if !acknowledged {
            break;
        }
        sleep_ms(rng.u64(..20)).await;
    }
    let released = held_until(Instant::now());
    ctx.rec.locks.lock().push(LockHold {
        client: id,
        acquired: acquired_t,
        released: Some(released),
        fencing,
    });
    if rng.bool() {
        let _ = timed(c.delete(lock_key.as_str(), None)).await;
    }
}

/// One watcher of the KV prefix; one [`WatchLog`] per stream.
pub async fn watch_worker(ctx: Ctx, watcher: u64) {
    let url = ctx.gateways[usize::try_from(watcher).unwrap_or(0) % ctx.gateways.len()].clone();
    let mut next_start = 1i64;
    // Highest revision this watcher knows it has seen all events up to.
    let mut synced_to = 0i64;
    let mut stop_deadline: Option<Instant> = None;
    loop {
        if ctx.stopped() {
            let deadline = *stop_deadline.get_or_insert(Instant::now() + Duration::from_secs(15));
            let target = ctx.watch_target.load(Ordering::Relaxed);
            if (target > 0 && synced_to >= target) || Instant::now() > deadline {
                return;
            }
        }
        let Ok(mut c) = connect(&url).await else {
            sleep_ms(200).await;
            continue;
        };
        let mut log = WatchLog {
            watcher,
            key_prefix: KV_PREFIX.to_string(),
            start_revision: next_start,
            items: Vec::new(),
        };
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(next_start)
            .with_progress_notify();
        let stream = tokio::time::timeout(REQUEST_TIMEOUT, c.watch(KV_PREFIX, Some(opts))).await;
        let Ok(Ok(stream)) = stream else {
            sleep_ms(200).await;
            continue;
        };
        let (mut asks, mut answers) = stream.split();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_message = Instant::now();
        loop {
            tokio::select! {
                msg = answers.message() => {
                    let at = ctx.rec.now();
                    last_message = Instant::now();
                    let resp = match msg {
                        Ok(Some(resp)) => resp,
                        _ => break,
                    };
                    let header_revision = header_rev(resp.header());
                    if resp.created() {
                        log.items.push(WatchItem::Created {
                            at,
                            revision: header_revision,
                            start_revision: next_start,
                        });
                    }
                    if resp.canceled() {
                        log.items.push(WatchItem::Canceled {
                            at,
                            reason: resp.cancel_reason().to_string(),
                            compact_revision: resp.compact_revision(),
                        });
                        break;
                    }
                    if !resp.events().is_empty() {
                        let events: Vec<WatchEvent> = resp
                            .events()
                            .iter()
                            .filter_map(|e| {
                                let kv = e.kv()?;
                                Some(WatchEvent {
                                    revision: kv.mod_revision(),
                                    key: text(kv.key()),
                                    is_put: e.event_type() == EventType::Put,
                                    value: text(kv.value()),
                                })
                            })
                            .collect();
                        if let Some(last) = events.last() {
                            next_start = next_start.max(last.revision + 1);
                            synced_to = synced_to.max(last.revision);
                        }
                        log.items.push(WatchItem::Events { at, header_revision, events });
                    } else if !resp.created() {
                        log.items.push(WatchItem::Progress { at, revision: header_revision });
                        synced_to = synced_to.max(header_revision);
                    }
                }
                _ = tick.tick() => {
                    let _ = asks.request_progress().await;
                    let target = ctx.watch_target.load(Ordering::Relaxed);
                    if ctx.stopped() {
                        let deadline = *stop_deadline
                            .get_or_insert(Instant::now() + Duration::from_secs(15));
                        if (target > 0 && synced_to >= target) || Instant::now() > deadline {
                            break;
                        }
                    }
                    // A stream that says nothing for long, though progress is asked every
                    // second, is abandoned and resumed.
                    if last_message.elapsed() > Duration::from_secs(10) {
                        break;
                    }
                }
            }
        }
        ctx.rec.watches.lock().push(log);
        sleep_ms(100).await;
    }
}

/// Every event under `prefix` from revision 1, read with one watch after the run, until a
/// progress notification at `target` or later.
pub async fn read_all_events(
    url: &str,
    prefix: &str,
    target: i64,
) -> anyhow::Result<Vec<WatchEvent>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut c = connect(url).await?;
    let opts = WatchOptions::new().with_prefix().with_start_revision(1);
    let stream = tokio::time::timeout(REQUEST_TIMEOUT, c.watch(prefix, Some(opts))).await??;
    let (mut asks, mut answers) = stream.split();
    let mut events = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        if Instant::now() > deadline {
            anyhow::bail!(
                "final watch did not reach revision {target} within 60 s ({} events read)",
                events.len()
            );
        }
        tokio::select! {
            msg = answers.message() => {
                let Some(resp) = msg? else {
                    anyhow::bail!("final watch stream ended");
                };
                if resp.canceled() {
                    anyhow::bail!("final watch canceled: {}", resp.cancel_reason());
                }
                for e in resp.events() {
                    if let Some(kv) = e.kv() {
                        events.push(WatchEvent {
                            revision: kv.mod_revision(),
                            key: text(kv.key()),
                            is_put: e.event_type() == EventType::Put,
                            value: text(kv.value()),
                        });
                    }
                }
                if resp.events().is_empty() && !resp.created() && header_rev(resp.header()) >= target {
                    return Ok(events);
                }
            }
            _ = tick.tick() => {
                let _ = asks.request_progress().await;
            }
        }
    }
}

/// Retries a read until it answers or `within` passes.
pub async fn read_retry<T, F, Fut>(within: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => sleep_ms(200).await,
        }
    }
}

/// Final linearizable Get of every key, recorded as operations (so a lost acknowledged write
/// shows as a linearizability violation).
pub async fn final_reads(rec: &Recorder, url: &str, keys: &[String]) -> anyhow::Result<()> {
    for key in keys {
        let done = read_retry(Duration::from_secs(20), || async {
            let mut c = connect(url).await?;
            let client = rec.new_client();
            let invoke = rec.now();
            let r = timed(c.get(key.as_str(), None)).await;
            let complete = rec.now();
            match r {
                Ok(r) => {
                    rec.record_kv(KvOp {
                        client,
                        invoke,
                        complete,
                        input: KvInput::Get { key: key.clone() },
                        output: KvOutput::Get {
                            value: r.kvs().first().map(|kv| text(kv.value())),
                            revision: header_rev(r.header()),
                        },
                    });
                    Ok(())
                }
                Err((_, e)) => Err(anyhow::anyhow!("final get of {key}: {e}")),
            }
        })
        .await;
        done?;
    }
    Ok(())
}

/// The counter's final value (0 when it was never written) and the store revision.
pub async fn final_counter(url: &str) -> anyhow::Result<(i64, i64)> {
    read_retry(Duration::from_secs(20), || async {
        let mut c = connect(url).await?;
        let r = timed(c.get(COUNTER_KEY, None))
            .await
            .map_err(|(_, e)| anyhow::anyhow!("get counter: {e}"))?;
        let value = match r.kvs().first() {
            Some(kv) => text(kv.value()).parse::<i64>()?,
            None => 0,
        };
        Ok((value, header_rev(r.header())))
    })
    .await
}
