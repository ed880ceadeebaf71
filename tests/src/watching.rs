//! Watch helpers shared by the watch tests (`etcd-client` streams).

use anyhow::{Context, Result, bail};
use etcd_client::{Client, EventType, WatchOptions, WatchResponse, WatchStream};
use std::time::Duration;

/// How long a test waits for one watch response.
pub const WAIT: Duration = Duration::from_secs(20);

/// The next response of `stream`, within [`WAIT`].
pub async fn next(stream: &mut WatchStream) -> Result<WatchResponse> {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .context("timed out waiting for a watch response")??
        .context("watch stream ended")
}

/// Opens a watch and checks that its first response is `created`.
pub async fn watch(
    c: &mut Client,
    key: &str,
    opts: Option<WatchOptions>,
) -> Result<(WatchStream, i64)> {
    let mut s = c.watch(key, opts).await?;
    let r = next(&mut s).await?;
    if !r.created() {
        bail!("first response is not `created`: {r:?}");
    }
    Ok((s, r.watch_id()))
}

/// (revision, type, key, value, prev value) of every event, reading until `n` events arrived.
pub async fn events(
    stream: &mut WatchStream,
    n: usize,
) -> Result<Vec<(i64, EventType, String, String, Option<String>)>> {
    let mut out = Vec::new();
    while out.len() < n {
        let r = next(stream).await?;
        for e in r.events() {
            let kv = e.kv().context("event without kv")?;
            out.push((
                kv.mod_revision(),
                e.event_type(),
                kv.key_str()?.to_string(),
                kv.value_str()?.to_string(),
                e.prev_kv()
                    .map(|p| p.value_str().unwrap_or_default().to_string()),
            ));
        }
    }
    Ok(out)
}
