//! Watch through real processes, on every engine and topology: history and compaction,
//! filters, ids and refusals, progress, slow watchers, restarts and many watchers. etcd's
//! delivery guarantees on recorded histories are in `watch_guarantees.rs`.

use anyhow::{Context, Result};
use etcd_client::{
    Client, CompactionOptions, EventType, Txn, TxnOp, WatchFilterType, WatchOptions,
};
use metastore_proto::etcdserverpb::watch_request::RequestUnion;
use metastore_proto::etcdserverpb::{WatchCreateRequest, WatchRequest};
use metastore_tests::watching::{WAIT, events, next, watch};
use metastore_tests::{Case, Deployment, RequestStream, WatchClient, channel, matrix, retry_until};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;

matrix!(
    watch_semantics,
    watch_ids_and_refusals,
    slow_watcher_catches_up,
    watch_survives_storaged_restart,
    coalesced_watchers,
    large_revisions_are_fragmented_on_request,
);

async fn watch_semantics(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    c.put("a", "1", None).await?; // rev 2
    let (mut live, _) = watch(
        &mut c,
        "a",
        Some(WatchOptions::new().with_prefix().with_prev_key()),
    )
    .await?;
    c.put("a", "2", None).await?; // 3
    c.put("ab", "x", None).await?; // 4
    c.delete("a", None).await?; // 5
    c.txn(Txn::new().and_then([TxnOp::put("a/1", "t1", None), TxnOp::put("a/2", "t2", None)]))
        .await?; // 6
    let got = events(&mut live, 5).await?;
    let revs: Vec<i64> = got.iter().map(|e| e.0).collect();
    assert_eq!(revs, [3, 4, 5, 6, 6], "{}", d.case);
    assert_eq!(got[0].4.as_deref(), Some("1"), "prev_kv of an update");
    assert_eq!(got[1].4, None, "create events carry no prev_kv");
    assert_eq!(
        (got[2].1, got[2].4.as_deref()),
        (EventType::Delete, Some("2"))
    );

    // History from the start, then everything live after it.
    let (mut hist, _) = watch(
        &mut c,
        "a",
        Some(WatchOptions::new().with_prefix().with_start_revision(2)),
    )
    .await?;
    let got = events(&mut hist, 6).await?;
    assert_eq!(
        got.iter().map(|e| e.0).collect::<Vec<_>>(),
        [2, 3, 4, 5, 6, 6]
    );
    assert!(got.iter().all(|e| e.4.is_none()), "prev_kv only when asked");

    // Filters.
    let (mut no_put, _) = watch(
        &mut c,
        "a",
        Some(
            WatchOptions::new()
                .with_prefix()
                .with_start_revision(2)
                .with_filters([WatchFilterType::NoPut]),
        ),
    )
    .await?;
    assert_eq!(events(&mut no_put, 1).await?[0].0, 5);
    let (mut no_del, _) = watch(
        &mut c,
        "a",
        Some(
            WatchOptions::new()
                .with_prefix()
                .with_start_revision(2)
                .with_filters([WatchFilterType::NoDelete]),
        ),
    )
    .await?;
    let got = events(&mut no_del, 5).await?;
    assert!(got.iter().all(|e| e.1 == EventType::Put));

    // A future start revision stays quiet until the store gets there.
    let (mut future, _) = watch(
        &mut c,
        "a",
        Some(WatchOptions::new().with_prefix().with_start_revision(9)),
    )
    .await?;
    for v in ["7", "8", "9"] {
        c.put("a", v, None).await?; // 7, 8, 9
    }
    let got = events(&mut future, 1).await?;
    assert_eq!((got[0].0, got[0].3.as_str()), (9, "9"));

    // Progress: an empty response at the current revision.
    let (mut progress, id) = watch(&mut c, "zzz", None).await?;
    progress.request_progress().await?;
    let r = next(&mut progress).await?;
    assert!(r.events().is_empty() && !r.canceled());
    assert_eq!(r.header().map(|h| h.revision()), Some(9));

    // Cancel.
    progress.cancel(id).await?;
    let r = next(&mut progress).await?;
    assert!(r.canceled());

    // Compaction: a start below the compacted revision is refused after `created`.
    c.compact(7, Some(CompactionOptions::new().with_physical()))
        .await?;
    let (mut old, _) = watch(
        &mut c,
        "a",
        Some(WatchOptions::new().with_start_revision(3)),
    )
    .await?;
    let r = next(&mut old).await?;
    assert!(r.canceled(), "{}", d.case);
    assert_eq!(r.compact_revision(), 7);
    let (mut at, _) = watch(
        &mut c,
        "a",
        Some(WatchOptions::new().with_start_revision(7)),
    )
    .await?;
    assert_eq!(events(&mut at, 3).await?[0].0, 7);
    Ok(())
}

/// One client stream with raw requests: ids, refusals and cancel of unknown ids.
async fn watch_ids_and_refusals(d: Deployment) -> Result<()> {
    d.ready().await?;
    let mut wc = WatchClient::new(channel(&d.endpoint()).await?);
    let (tx, rx) = mpsc::channel(16);
    let mut resp = wc.watch(RequestStream(rx)).await?.into_inner();
    let create = |key: &str, end: &str, id: i64| WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.into(),
            range_end: end.into(),
            watch_id: id,
            ..Default::default()
        })),
    };
    let mut ask =
        async |req: WatchRequest| -> Result<metastore_proto::etcdserverpb::WatchResponse> {
            tx.send(req).await?;
            tokio::time::timeout(WAIT, resp.message())
                .await??
                .context("ended")
        };
    let r = ask(create("a", "", 0)).await?;
    assert_eq!((r.created, r.watch_id), (true, 0));
    let r = ask(create("a", "", 7)).await?;
    assert_eq!((r.created, r.watch_id), (true, 7));
    let r = ask(create("a", "", 7)).await?;
    assert_eq!((r.created, r.canceled, r.watch_id), (true, true, -1));
    assert_eq!(
        r.cancel_reason,
        "mvcc: duplicate watch ID provided on the WatchStream"
    );
    let r = ask(create("b", "a", 0)).await?;
    assert_eq!(r.cancel_reason, "mvcc: watcher range is empty");
    let r = ask(create("a", "", 0)).await?;
    assert_eq!(r.watch_id, 1, "automatic ids count up");
    // Cancel of an unknown id: no reply; the next reply belongs to the next request.
    let cancel = |id| WatchRequest {
        request_union: Some(RequestUnion::CancelRequest(
            metastore_proto::etcdserverpb::WatchCancelRequest { watch_id: id },
        )),
    };
    tx.send(cancel(99)).await?;
    let r = ask(cancel(7)).await?;
    assert_eq!((r.watch_id, r.canceled), (7, true));
    Ok(())
}

/// A watcher that stops reading during a burst is caught up from history later, with no gap.
async fn slow_watcher_catches_up(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    let (mut s, _) = watch(&mut c, "s/", Some(WatchOptions::new().with_prefix())).await?;
    let value = "v".repeat(16 * 1024);
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut c = d.client().await?;
        let value = value.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..500 {
                c.put(format!("s/{w}/{i}"), value.clone(), None).await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }
    let got = events(&mut s, 2000).await?;
    let revs: Vec<i64> = got.iter().map(|e| e.0).collect();
    assert!(
        revs.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap, no duplicate"
    );
    assert_eq!(got.len(), 2000);
    Ok(())
}

/// Every member is killed (SIGKILL) and restarted under a live watch: the gateway resumes the
/// upstream watch and the client sees every event once.
async fn watch_survives_storaged_restart(mut d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    let (mut s, _) = watch(&mut c, "r/", Some(WatchOptions::new().with_prefix())).await?;
    for i in 0..50 {
        c.put(format!("r/{i}"), "before", None).await?;
    }
    d.kill_members();
    d.start_members()?;
    let c = Client::connect([d.endpoint()], None).await?;
    for i in 50..100 {
        retry_until("a put after the restart", WAIT, || {
            let mut c = c.clone();
            async move { Ok(c.put(format!("r/{i}"), "after", None).await.ok()) }
        })
        .await?;
    }
    let got = events(&mut s, 100).await?;
    let keys: Vec<String> = got.iter().map(|e| e.2.clone()).collect();
    let want: Vec<String> = (0..100).map(|i| format!("r/{i}")).collect();
    assert_eq!(keys, want);
    Ok(())
}

/// 10,000 watchers over 100 streams on one gateway all receive every event of a burst.
#[tokio::test]
async fn ten_thousand_watchers() -> Result<()> {
    const STREAMS: usize = 100;
    const PER_STREAM: usize = 100;
    const WRITES: usize = 20;
    let d = Deployment::start(Case::one("memory"))?;
    let ch = channel(&d.endpoint()).await?;
    let mut tasks = Vec::new();
    let (ready_tx, mut ready_rx) = mpsc::channel(STREAMS);
    for _ in 0..STREAMS {
        let mut wc = WatchClient::new(ch.clone());
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let (tx, rx) = mpsc::channel(PER_STREAM);
            let mut resp = wc.watch(RequestStream(rx)).await?.into_inner();
            for _ in 0..PER_STREAM {
                tx.send(WatchRequest {
                    request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                        key: b"hot".to_vec(),
                        ..Default::default()
                    })),
                })
                .await?;
                let r = resp.message().await?.context("ended")?;
                assert!(r.created && !r.canceled);
            }
            ready.send(()).await?;
            let mut counts: HashMap<i64, usize> = HashMap::new();
            while counts.values().sum::<usize>() < PER_STREAM * WRITES {
                let r = tokio::time::timeout(Duration::from_secs(60), resp.message())
                    .await??
                    .context("ended")?;
                *counts.entry(r.watch_id).or_default() += r.events.len();
            }
            drop(tx);
            anyhow::Ok(counts)
        }));
    }
    for _ in 0..STREAMS {
        ready_rx.recv().await.context("a stream failed to set up")?;
    }
    let mut c = d.client().await?;
    for i in 0..WRITES {
        c.put("hot", format!("{i}"), None).await?;
    }
    let mut watchers = 0;
    for t in tasks {
        let counts = t.await??;
        assert_eq!(counts.len(), PER_STREAM);
        assert!(counts.values().all(|n| *n == WRITES));
        watchers += counts.len();
    }
    assert_eq!(watchers, STREAMS * PER_STREAM);
    Ok(())
}

/// Watchers of the same range share one upstream watch: a later one still reports the current
/// revision in `created`, each gets every event once, and a subscriber that stops reading is
/// moved to a watch of its own without holding up the others or losing events.
async fn coalesced_watchers(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    let (mut first, _) = watch(&mut c, "c", None).await?;
    for i in 0..3 {
        c.put("x", format!("{i}"), None).await?;
    }
    let current = c
        .get("x", None)
        .await?
        .header()
        .context("header")?
        .revision();
    let mut s = c.watch("c", None).await?;
    let created = next(&mut s).await?;
    assert!(created.created());
    assert_eq!(
        created.header().map(|h| h.revision()),
        Some(current),
        "created revision"
    );
    c.put("c", "1", None).await?;
    assert_eq!(events(&mut first, 1).await?[0].0, current + 1);
    assert_eq!(events(&mut s, 1).await?[0].0, current + 1);

    // A stalled subscriber (its own connection, never read) next to a reading one.
    let mut stalled_client = d.client().await?;
    let (mut stalled, _) = watch(&mut stalled_client, "c", None).await?;
    let value = "v".repeat(16 * 1024);
    let writer = {
        let mut c = d.client().await?;
        tokio::spawn(async move {
            for i in 0..1500 {
                c.put("c", format!("{i}-{value}"), None).await?;
            }
            anyhow::Ok(())
        })
    };
    let got = events(&mut first, 1500).await?;
    assert!(got.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    writer.await??;
    let got = events(&mut stalled, 1500).await?;
    assert_eq!(got.len(), 1500);
    assert!(
        got.windows(2).all(|w| w[1].0 == w[0].0 + 1),
        "no gap after falling behind"
    );
    Ok(())
}

/// progress_notify: an idle watcher gets an empty response at the configured interval.
#[tokio::test]
async fn progress_notify_interval() -> Result<()> {
    let d = Deployment::start_with(
        Case::one("memory"),
        &["--watch-progress-notify-interval", "200ms"],
    )?;
    let mut c = d.client().await?;
    c.put("p", "1", None).await?;
    let (mut s, id) = watch(
        &mut c,
        "p",
        Some(WatchOptions::new().with_progress_notify()),
    )
    .await?;
    let r = next(&mut s).await?;
    assert!(r.events().is_empty() && !r.canceled() && !r.created());
    assert_eq!(r.watch_id(), id);
    assert_eq!(r.header().map(|h| h.revision()), Some(2));
    Ok(())
}

/// fragment: one revision whose events (with prev_kv) exceed the limit is split; every piece
/// but the last says `fragment`, and together they hold every event.
async fn large_revisions_are_fragmented_on_request(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    let value = "v".repeat(300 * 1024);
    for i in 0..10 {
        c.put(format!("f/{i}"), value.clone(), None).await?;
    }
    let mut wc =
        WatchClient::new(channel(&d.endpoint()).await?).max_decoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel(4);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: b"f/".to_vec(),
            range_end: b"f0".to_vec(),
            prev_kv: true,
            fragment: true,
            ..Default::default()
        })),
    })
    .await?;
    let mut resp = wc.watch(RequestStream(rx)).await?.into_inner();
    let created = resp.message().await?.context("ended")?;
    assert!(created.created);
    c.delete("f/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await?;
    let mut pieces = Vec::new();
    loop {
        let r = tokio::time::timeout(WAIT, resp.message())
            .await??
            .context("ended")?;
        let last = !r.fragment;
        pieces.push(r);
        if last {
            break;
        }
    }
    assert!(pieces.len() > 1, "a 6 MB revision is split");
    assert_eq!(pieces.iter().map(|p| p.events.len()).sum::<usize>(), 10);
    assert!(
        pieces
            .iter()
            .all(|p| p.events.iter().all(|e| e.prev_kv.is_some()))
    );
    Ok(())
}
