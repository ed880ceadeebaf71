//! etcd's watch guarantees checked on recorded histories, while writers run concurrently:
//! ordered, unique, atomic, reliable, resumable, prev_kv and filter correctness. On every
//! engine and topology, and on 3 members with the watchers' member restarted meanwhile.

use anyhow::{Context, Result, bail};
use etcd_client::{Client, EventType, GetOptions, Txn, TxnOp, WatchFilterType, WatchOptions};
use etcd_client::{WatchResponse, WatchStream};
use metastore_tests::watching::{events, next, watch};
use metastore_tests::{Cluster, Deployment, ENGINES, matrix};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

matrix!(watch_guarantees);

/// Watchers and writers on the deployment's one gateway.
async fn watch_guarantees(d: Deployment) -> Result<()> {
    d.ready().await?;
    let ep = d.endpoint();
    check_guarantees(ep.clone(), ep, async { Ok(()) }).await
}

/// The same checks on 3 members: the watchers' gateway prefers a follower, which is killed
/// (SIGKILL) and restarted while the writers run; the watchers resume on another member.
#[tokio::test]
async fn watch_guarantees_on_three_members_with_a_member_restart() -> Result<()> {
    for engine in ENGINES {
        let mut c = Cluster::start(engine, 3, 3, &[])?;
        let leader = c.leader(0).await?;
        let follower = (leader + 1) % 3;
        let (watch_ep, write_ep) = (c.gateway(follower), c.gateway(leader));
        let disrupt = async move {
            // Early, so that most writes happen while the member is down.
            tokio::time::sleep(Duration::from_millis(20)).await;
            c.kill_member(follower);
            tokio::time::sleep(Duration::from_secs(1)).await;
            c.start_member(follower)?;
            anyhow::Ok(c)
        };
        check_guarantees(watch_ep, write_ep, disrupt)
            .await
            .context(engine)?;
    }
    Ok(())
}

/// A watcher created "from now" after a write was acknowledged through the same gateway
/// never receives that write, even when the member serving the watch applies late (failpoint:
/// followers apply every entry 300 ms after it arrives). Both a first watcher of a range (its
/// own upstream feed) and a second one (joining the shared feed) are checked.
#[tokio::test]
async fn a_watch_from_now_starts_after_acknowledged_writes() -> Result<()> {
    let slow = [("METASTORE_FAILPOINT_FOLLOWER_APPLY_DELAY_MS", "300")];
    for engine in ENGINES {
        let c = Cluster::start_env(engine, 3, 3, &[], &[], &slow)?;
        let leader = c.leader(0).await?;
        let follower = (leader + 1) % 3;
        let mut client = c.client(follower).await?;
        for round in 0..3 {
            let prefix = format!("now/{round}/");
            let mut streams = Vec::new();
            let mut acked_at = Vec::new();
            for w in 0..2 {
                let acked = client
                    .put(format!("{prefix}before-{w}"), "x", None)
                    .await?
                    .header()
                    .context("header")?
                    .revision();
                let mut s = client
                    .watch(prefix.as_str(), Some(WatchOptions::new().with_prefix()))
                    .await?;
                let created = next(&mut s).await?;
                assert!(created.created(), "{engine}: {created:?}");
                let at = created.header().context("header")?.revision();
                assert!(
                    at >= acked,
                    "{engine}: created at {at}, write {acked} was acked"
                );
                streams.push((s, acked));
                acked_at.push(acked);
            }
            let after = client
                .put(format!("{prefix}after"), "y", None)
                .await?
                .header()
                .context("header")?
                .revision();
            // Watcher 0 also sees the second `before` put, made after it was created.
            let expected = [vec![acked_at[1], after], vec![after]];
            for ((mut s, acked), want) in streams.into_iter().zip(expected) {
                let got: Vec<i64> = events(&mut s, want.len())
                    .await?
                    .into_iter()
                    .map(|e| e.0)
                    .collect();
                assert_eq!(
                    got, want,
                    "{engine}: a watcher created after revision {acked} was acknowledged"
                );
            }
        }
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq)]
struct Ev {
    rev: i64,
    delete: bool,
    key: String,
    value: String,
}

/// Revision -> the events of that revision, as the writers were told.
type Reference = BTreeMap<i64, Vec<Ev>>;

/// One of the watchers the checks open.
struct Spec {
    name: &'static str,
    key: &'static str,
    opts: WatchOptions,
    no_delete: bool,
    /// Whether it starts at the history's base (else it only sees what comes after it).
    from_base: bool,
}

impl Spec {
    fn all(base: i64) -> Vec<Spec> {
        let prefix = || WatchOptions::new().with_prefix();
        vec![
            Spec {
                name: "all+prev",
                key: "g/",
                opts: prefix().with_prev_key().with_start_revision(base),
                no_delete: false,
                from_base: true,
            },
            Spec {
                name: "live",
                key: "g/",
                opts: prefix(),
                no_delete: false,
                from_base: false,
            },
            Spec {
                name: "nodelete",
                key: "g/",
                opts: prefix()
                    .with_filters([WatchFilterType::NoDelete])
                    .with_start_revision(base),
                no_delete: true,
                from_base: true,
            },
            Spec {
                name: "narrow",
                key: "g/0/",
                opts: WatchOptions::new()
                    .with_range("g/1/")
                    .with_start_revision(base),
                no_delete: false,
                from_base: true,
            },
        ]
    }

    fn in_range(&self, key: &str) -> bool {
        key.starts_with(self.key)
    }

    /// What this watcher must deliver, in order.
    fn expected(&self, reference: &Reference, from: i64) -> Vec<Ev> {
        reference
            .range(from..)
            .flat_map(|(_, evs)| evs.clone())
            .filter(|e| self.in_range(&e.key) && !(self.no_delete && e.delete))
            .collect()
    }
}

/// Ordered, unique, atomic, reliable, resumable, prev_kv and filter checks of several watchers
/// opened on `watch_ep` while four writers write through `write_ep`; `disrupt` runs alongside
/// the writers, and what it returns (the deployment) is kept until the checks end.
async fn check_guarantees<K>(
    watch_ep: String,
    write_ep: String,
    disrupt: impl std::future::Future<Output = Result<K>>,
) -> Result<()> {
    let mut c = Client::connect([watch_ep], None).await?;
    let base = revision_of(c.put("g/start", "0", None).await?.header())?;
    let specs = Spec::all(base);
    let mut streams = Vec::new();
    for spec in &specs {
        streams.push(watch(&mut c, spec.key, Some(spec.opts.clone())).await?.0);
    }
    let live_from = revision_of(c.get("g/", None).await?.header())? + 1;

    let mut writers = Vec::new();
    for w in 0..4 {
        let c = Client::connect([write_ep.clone()], None).await?;
        writers.push(tokio::spawn(write_history(w, c)));
    }
    let _keep = disrupt.await?;
    let mut reference = Reference::new();
    for w in writers {
        for (rev, evs) in w.await?? {
            if reference.insert(rev, evs).is_some() {
                bail!("two writes got revision {rev}");
            }
        }
    }

    for (spec, stream) in specs.iter().zip(streams.iter_mut()) {
        let from = if spec.from_base { base } else { live_from };
        let expected = spec.expected(&reference, from);
        let received = receive(stream, &expected, base)
            .await
            .with_context(|| spec.name)?;
        received.check(spec, &expected);
    }
    check_resumable(&mut c, &reference, base).await?;
    let _ = c.get("g/", Some(GetOptions::new().with_prefix())).await?;
    Ok(())
}

fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> Result<i64> {
    Ok(header.context("response without header")?.revision())
}

/// Writer `w`: 60 requests, txns of 1-3 puts on its own keys and deletes; returns what each
/// revision it got holds.
async fn write_history(w: usize, mut c: Client) -> Result<Vec<(i64, Vec<Ev>)>> {
    let mut log = Vec::new();
    for i in 0..60usize {
        let key = |j: usize| format!("g/{w}/{}", (i + j) % 7);
        if i % 5 == 4 {
            let r = c.delete(key(0), None).await?;
            if r.deleted() > 0 {
                let rev = revision_of(r.header())?;
                let ev = Ev {
                    rev,
                    delete: true,
                    key: key(0),
                    value: String::new(),
                };
                log.push((rev, vec![ev]));
            }
            continue;
        }
        let n = 1 + i % 3;
        let value = |j: usize| format!("{w}-{i}-{j}");
        let ops: Vec<TxnOp> = (0..n).map(|j| TxnOp::put(key(j), value(j), None)).collect();
        let rev = revision_of(c.txn(Txn::new().and_then(ops)).await?.header())?;
        let evs = (0..n)
            .map(|j| Ev {
                rev,
                delete: false,
                key: key(j),
                value: value(j),
            })
            .collect();
        log.push((rev, evs));
    }
    Ok(log)
}

/// What one watcher delivered.
#[derive(Default)]
struct Received {
    events: Vec<Ev>,
    /// prev_kv value of each event.
    prevs: Vec<Option<String>>,
    /// The revisions of each response, in order.
    by_response: Vec<Vec<i64>>,
}

/// Reads `stream` until the last expected revision arrived (the `g/start` put at `base` is
/// left out).
async fn receive(stream: &mut WatchStream, expected: &[Ev], base: i64) -> Result<Received> {
    let mut got = Received::default();
    let Some(last) = expected.last().map(|e| e.rev) else {
        return Ok(got);
    };
    while got.events.last().is_none_or(|e| e.rev < last) {
        got.add(next(stream).await?, base)?;
    }
    Ok(got)
}

impl Received {
    fn add(&mut self, r: WatchResponse, base: i64) -> Result<()> {
        let mut revs = Vec::new();
        for e in r.events() {
            let kv = e.kv().context("event without kv")?;
            revs.push(kv.mod_revision());
            if kv.mod_revision() == base && kv.key() == b"g/start" {
                continue;
            }
            self.events.push(Ev {
                rev: kv.mod_revision(),
                delete: e.event_type() == EventType::Delete,
                key: kv.key_str()?.to_string(),
                value: kv.value_str()?.to_string(),
            });
            let prev = e.prev_kv().map(|p| p.value_str().unwrap_or_default());
            self.prevs.push(prev.map(str::to_string));
        }
        self.by_response.push(revs);
        Ok(())
    }

    fn check(&self, spec: &Spec, expected: &[Ev]) {
        let name = spec.name;
        // Reliable, ordered, unique: exactly the expected sequence.
        assert_eq!(
            self.events, expected,
            "{name}: events differ from the writes"
        );
        // Atomic: a revision never spans two responses.
        let mut seen_in: HashMap<i64, usize> = HashMap::new();
        for (i, revs) in self.by_response.iter().enumerate() {
            for r in revs {
                if let Some(j) = seen_in.insert(*r, i) {
                    assert_eq!(j, i, "{name}: revision {r} split across responses");
                }
            }
        }
        // prev_kv: the value each key had before the event.
        if spec.name == "all+prev" {
            let mut state: HashMap<String, String> = HashMap::new();
            for (e, prev) in self.events.iter().zip(&self.prevs) {
                assert_eq!(prev.as_ref(), state.get(&e.key), "prev_kv of {e:?}");
                if e.delete {
                    state.remove(&e.key);
                } else {
                    state.insert(e.key.clone(), e.value.clone());
                }
            }
        }
    }
}

/// Resumable: from any revision, a new watcher gets the rest of the history.
async fn check_resumable(c: &mut Client, reference: &Reference, base: i64) -> Result<()> {
    let last = *reference.keys().last().context("no writes")?;
    for from in [base + 1, (base + last) / 2, last] {
        let opts = WatchOptions::new().with_prefix().with_start_revision(from);
        let (mut s, _) = watch(c, "g/", Some(opts)).await?;
        let want: usize = reference.range(from..).map(|(_, e)| e.len()).sum();
        let got = events(&mut s, want).await?;
        assert_eq!(
            got.first().map(|e| e.0),
            reference.range(from..).next().map(|(r, _)| *r)
        );
        assert_eq!(got.len(), want);
    }
    Ok(())
}
