//! Downgrade (etcd 3.5's Maintenance.Downgrade) on every engine and topology, checked against
//! etcd 3.5's documented answers (the Debian etcd 3.4 has no Downgrade to compare with):
//! VALIDATE / ENABLE / CANCEL with etcd's errors, the target kept across a restart of every
//! member and shown in Status `downgradeInfo`; and `--etcd-version` sets what Status reports
//! and what a downgrade may target.

use anyhow::Result;
use metastore_proto::etcdserverpb::downgrade_request::DowngradeAction;
use metastore_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use metastore_proto::etcdserverpb::{DowngradeRequest, StatusRequest};
use metastore_tests::cluster::Cluster;
use metastore_tests::{Deployment, channel, matrix, retry_until};
use std::time::Duration;
use tonic::transport::Channel;

matrix!(downgrade_follows_etcd_and_survives_a_restart);

type Client = MaintenanceClient<Channel>;

async fn downgrade(c: &mut Client, action: DowngradeAction, version: &str) -> String {
    let r = c
        .downgrade(DowngradeRequest {
            action: action as i32,
            version: version.into(),
        })
        .await;
    match r {
        Ok(r) => format!("version {}", r.into_inner().version),
        Err(s) => format!("error {:?}: {}", s.code(), s.message()),
    }
}

/// Waits until the member the gateway asks reports `enabled` (a follower applies a little
/// later); answers (version, target).
async fn status_until(c: &Client, enabled: bool) -> Result<(String, String)> {
    retry_until("Status downgradeInfo", Duration::from_secs(10), || {
        let mut c = c.clone();
        async move {
            let s = c.status(StatusRequest {}).await?.into_inner();
            let info = s.downgrade_info.unwrap_or_default();
            Ok((info.enabled == enabled).then_some((s.version, info.target_version)))
        }
    })
    .await
}

async fn downgrade_follows_etcd_and_survives_a_restart(mut d: Deployment) -> Result<()> {
    use DowngradeAction::{Cancel, Enable, Validate};
    d.ready().await?;
    let mut c = MaintenanceClient::new(channel(&d.endpoint()).await?);
    assert_eq!(status_until(&c, false).await?, ("3.4.0".into(), "".into()));
    let steps = [
        (Validate, "3.3", "version 3.4.0"),
        (Validate, "3.3.7", "version 3.4.0"),
        (
            Validate,
            "3.2",
            "error InvalidArgument: etcdserver: invalid downgrade target version",
        ),
        (
            Validate,
            "3.4",
            "error InvalidArgument: etcdserver: invalid downgrade target version",
        ),
        (
            Validate,
            "three",
            "error InvalidArgument: etcdserver: wrong downgrade target version format",
        ),
        (
            Cancel,
            "",
            "error FailedPrecondition: etcdserver: no inflight downgrade job",
        ),
        (Enable, "3.3.5", "version 3.4.0"),
        (
            Validate,
            "3.3",
            "error FailedPrecondition: etcdserver: cluster has a downgrade job in progress",
        ),
        (
            Enable,
            "3.3",
            "error FailedPrecondition: etcdserver: cluster has a downgrade job in progress",
        ),
    ];
    for (action, version, want) in steps {
        let got = downgrade(&mut c, action, version).await;
        assert_eq!(got, want, "{}: {action:?} {version:?}", d.case);
    }
    assert_eq!(
        status_until(&c, true).await?,
        ("3.4.0".into(), "3.3.0".into())
    );

    d.kill_members();
    d.start_members()?;
    d.ready().await?;
    let mut c = MaintenanceClient::new(channel(&d.endpoint()).await?);
    assert_eq!(
        status_until(&c, true).await?,
        ("3.4.0".into(), "3.3.0".into()),
        "{}: kept across a restart",
        d.case
    );
    let cancelled =
        retry_until("CANCEL after the restart", Duration::from_secs(10), || {
            let mut c = c.clone();
            async move {
                Ok(Some(downgrade(&mut c, Cancel, "").await).filter(|r| !r.contains("leader")))
            }
        })
        .await?;
    assert_eq!(cancelled, "version 3.4.0");
    assert_eq!(status_until(&c, false).await?, ("3.4.0".into(), "".into()));
    assert_eq!(
        downgrade(&mut c, Cancel, "").await,
        "error FailedPrecondition: etcdserver: no inflight downgrade job"
    );
    Ok(())
}

/// `--etcd-version` is what Status reports; a downgrade may only go one minor below it.
#[tokio::test]
async fn the_reported_version_is_configurable() -> Result<()> {
    let cluster = Cluster::start("memory", 1, 1, &["--etcd-version", "3.5.2"])?;
    cluster.leader(0).await?;
    let mut c = MaintenanceClient::new(channel(&cluster.gateway(0)).await?);
    assert_eq!(status_until(&c, false).await?.0, "3.5.2");
    assert_eq!(
        downgrade(&mut c, DowngradeAction::Validate, "3.4").await,
        "version 3.5.0"
    );
    assert_eq!(
        downgrade(&mut c, DowngradeAction::Validate, "3.3").await,
        "error InvalidArgument: etcdserver: invalid downgrade target version"
    );
    Ok(())
}
