//! The backend quota (`--quota-backend-bytes`) on every engine and topology: filling the store
//! raises NOSPACE by itself and puts the cluster in capped mode; deleting, compacting,
//! defragmenting and disarming let writes resume, as an etcd operator does it.

use anyhow::Result;
use etcd_client::{
    AlarmAction, AlarmOptions, AlarmType, CompactionOptions, DeleteOptions, GetOptions,
};
use metastore_tests::{Deployment, grpc_status, matrix, retry_until};
use std::time::Duration;
use tonic::Code;

const QUOTA: i64 = 4 << 20;
const NO_SPACE: (Code, &str) = (
    Code::ResourceExhausted,
    "etcdserver: mvcc: database space exceeded",
);

matrix!(storaged_args = ["--quota-backend-bytes", "4194304"]; filling_the_quota_raises_nospace_until_space_is_freed);

/// `len` bytes that do not compress (RocksDB would shrink repeated bytes to nothing).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn filling_the_quota_raises_nospace_until_space_is_freed(d: Deployment) -> Result<()> {
    let mut c = d.client().await?;
    assert_eq!(c.status().await?.db_size_quota(), QUOTA);
    // 64 KiB puts until the quota refuses one: 4 MiB holds at most 64 of them.
    let mut written = 0u64;
    let refused = loop {
        match c
            .put(format!("fill/{written:03}"), noise(written, 64 << 10), None)
            .await
        {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
        assert!(
            written <= 64,
            "{}: {written} puts of 64 KiB fit in 4 MiB",
            d.case
        );
    };
    let (code, text) = grpc_status(&refused);
    assert_eq!((code, text.as_str()), NO_SPACE, "{}", d.case);
    // Engines count their size differently (RocksDB's memtables take about twice the data),
    // but a quarter of the quota holds data before anything is refused.
    assert!(written >= 16, "{}: refused after {written} puts", d.case);

    // The member that refused raised NOSPACE for itself; the cluster is in capped mode.
    let alarms = c.alarm(AlarmAction::Get, AlarmType::None, None).await?;
    let [alarm] = alarms.alarms() else {
        panic!("{}: {} alarms", d.case, alarms.alarms().len());
    };
    assert_eq!(alarm.alarm(), AlarmType::Nospace);
    let members = c.member_list().await?;
    assert!(
        members
            .members()
            .iter()
            .any(|m| m.id() == alarm.member_id())
    );
    let small = c.put("small", "v", None).await.expect_err("capped mode");
    assert_eq!(grpc_status(&small).1, NO_SPACE.1);
    let lease = c.lease_grant(10, None).await.expect_err("capped mode");
    assert_eq!(grpc_status(&lease).1, NO_SPACE.1);
    let status = retry_until(
        "Status errors listing NOSPACE",
        Duration::from_secs(10),
        || {
            let mut c = c.clone();
            async move {
                let s = c.status().await?;
                Ok(s.errors()
                    .iter()
                    .any(|e| e.contains("alarm:NOSPACE"))
                    .then_some(s))
            }
        },
    )
    .await?;
    assert!(status.db_size() > 0);
    let count = c
        .get(
            "fill/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await?;
    assert_eq!(count.count() as u64, written, "{}: reads go on", d.case);

    // Free the space: delete, compact, defragment every member, then disarm.
    let deleted = c
        .delete("fill/", Some(DeleteOptions::new().with_prefix()))
        .await?;
    assert_eq!(deleted.deleted() as u64, written);
    let rev = deleted.header().map_or(0, |h| h.revision());
    c.compact(rev, Some(CompactionOptions::new().with_physical()))
        .await?;
    for i in 0..d.case.topology.members() {
        let cluster = &d.cluster;
        retry_until(
            &format!("{}: member {i} below half the quota", d.case),
            Duration::from_secs(20),
            || async move {
                let size = cluster.defragment_member(i).await?;
                Ok((size < QUOTA / 2).then_some(size))
            },
        )
        .await?;
    }
    for a in c
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await?
        .alarms()
    {
        let mut member = AlarmOptions::new();
        member.with_member(a.member_id());
        c.alarm(AlarmAction::Deactivate, a.alarm(), Some(member))
            .await?;
    }
    let none = c.alarm(AlarmAction::Get, AlarmType::None, None).await?;
    assert!(none.alarms().is_empty());
    c.put("small", "v", None).await?;
    c.lease_grant(10, None).await?;
    Ok(())
}
