//! Corruption checks on 3 members of each engine. A failpoint makes member s3 store a different
//! value than the one committed for keys under `corrupt/` (as a disk flipping bits would). The
//! leader's periodic check (`--experimental-corrupt-check-time`) raises CORRUPT and the cluster
//! refuses writes; a member started with `--experimental-initial-corrupt-check` refuses to
//! serve a history that differs from its peers', while a healthy one starts. Concurrent writes
//! without corruption raise nothing.

use anyhow::{Context, Result};
use etcd_client::{AlarmAction, AlarmType};
use metastore_tests::cluster::Cluster;
use metastore_tests::{grpc_status, retry_until};
use std::time::{Duration, Instant};
use tonic::Code;

#[tokio::test]
async fn memory() -> Result<()> {
    corruption_is_found_by_both_checks("memory").await
}

#[tokio::test]
async fn rocksdb() -> Result<()> {
    corruption_is_found_by_both_checks("rocksdb").await
}

async fn alarms(c: &mut etcd_client::Client) -> Result<Vec<(u64, AlarmType)>> {
    let r = c.alarm(AlarmAction::Get, AlarmType::None, None).await?;
    Ok(r.alarms()
        .iter()
        .map(|a| (a.member_id(), a.alarm()))
        .collect())
}

async fn corruption_is_found_by_both_checks(engine: &str) -> Result<()> {
    let mut cluster = Cluster::start_env(
        engine,
        3,
        1,
        &["--experimental-corrupt-check-time", "1s"],
        &[],
        &[("METASTORE_FAILPOINT_CORRUPT_PUTS", "s3:corrupt/")],
    )?;
    cluster.leader(0).await?;
    let mut c = cluster.client(0).await?;

    // Three seconds of writes from 4 clients with the check running every second: members
    // behind or ahead of the leader's revision are no corruption.
    let until = Instant::now() + Duration::from_secs(3);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut c = c.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    c.put(format!("busy/{w}/{}", n % 50), format!("{n}"), None)
                        .await?;
                    n += 1;
                }
                anyhow::Ok(n)
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(alarms(&mut c).await?, vec![], "{engine}: no corruption yet");

    c.put("corrupt/a", "v", None).await?;
    let s3 = retry_until("s3 applied the put", Duration::from_secs(10), || {
        let cluster = &cluster;
        async move { cluster.member_get(2, "corrupt/a").await }
    })
    .await?;
    assert_eq!(
        s3, b"v!corrupt",
        "{engine}: the failpoint altered s3's copy"
    );
    let raised = retry_until("a CORRUPT alarm", Duration::from_secs(15), || {
        let mut c = c.clone();
        async move {
            let a = alarms(&mut c).await?;
            Ok((!a.is_empty()).then_some(a))
        }
    })
    .await?;
    assert!(
        raised.iter().all(|(_, t)| *t == AlarmType::Corrupt),
        "{engine}: {raised:?}"
    );
    let refused = c.put("x", "y", None).await.expect_err("corrupt mode");
    assert_eq!(
        grpc_status(&refused),
        (Code::DataLoss, "etcdserver: corrupt cluster".to_string())
    );
    let read = c.get("busy/0/0", None).await?;
    assert_eq!(read.kvs().len(), 1, "{engine}: reads go on (etcd 3.4)");

    // The initial check: with s3 down, a healthy member restarted with it serves again (one
    // that differs from any peer refuses: it cannot tell which side is wrong)...
    cluster
        .storaged_args
        .push("--experimental-initial-corrupt-check".into());
    cluster.member_logs = true;
    cluster.kill_member(2);
    cluster.kill_member(0);
    cluster.start_member(0)?;
    let s1 = retry_until("s1 serving again", Duration::from_secs(20), || {
        let cluster = &cluster;
        async move { Ok(cluster.member_get(0, "corrupt/a").await.ok().flatten()) }
    })
    .await?;
    assert_eq!(s1, b"v");
    // ...and the corrupted one refuses to start.
    if cluster.start_member(2).is_ok() {
        let proc = cluster.procs[2].as_mut().context("s3 process")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while proc.0.try_wait()?.is_none() {
            assert!(Instant::now() < deadline, "{engine}: s3 still runs");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let status = cluster.procs[2]
        .as_mut()
        .context("s3 process")?
        .0
        .try_wait()?
        .context("s3 exited")?;
    assert!(!status.success(), "{engine}: s3 exited with {status}");
    let log = std::fs::read_to_string(cluster.member_log(2))?;
    assert!(
        log.contains("found data inconsistency with peers"),
        "{engine}: s3's log:\n{log}"
    );
    Ok(())
}
