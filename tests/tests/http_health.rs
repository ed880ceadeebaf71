//! `/health`, `/livez`, `/readyz` and `/version` on the gateway's client port, and gRPC health
//! on storaged's storage port: healthy with quorum, unhealthy within seconds of losing it
//! (with etcd's reason), healthy again once it is back. Also the alarm path: an active alarm
//! makes `/health` false with `ALARM <name>` unless excluded, and the gateway's and the
//! member's gRPC health NOT_SERVING.

use anyhow::Result;
use metastore_tests::{Cluster, ENGINES, retry_until};
use std::time::Duration;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn get(url: &str) -> Result<(u16, String)> {
    let resp = reqwest::get(url).await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

async fn storage_health(port: u16) -> Result<ServingStatus> {
    grpc_health(&format!("http://127.0.0.1:{port}")).await
}

/// gRPC health (service `""`) of the server at `url`.
async fn grpc_health(url: &str) -> Result<ServingStatus> {
    let channel = metastore_tests::channel(url).await?;
    let resp = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(resp.into_inner().status())
}

#[tokio::test]
async fn health_follows_quorum() -> Result<()> {
    for engine in ENGINES {
        let mut c = Cluster::start(engine, 3, 1, &[])?;
        let g = c.gateway(0);
        c.leader(0).await?;
        let health = format!("{g}/health");
        assert_eq!(
            get(&health).await?,
            (200, r#"{"health":"true","reason":""}"#.to_string())
        );
        assert_eq!(get(&format!("{g}/livez")).await?, (200, "ok\n".to_string()));
        assert_eq!(
            get(&format!("{g}/readyz")).await?,
            (200, "ok\n".to_string())
        );
        let (status, verbose) = get(&format!("{g}/readyz?verbose")).await?;
        assert_eq!(status, 200);
        assert_eq!(
            verbose,
            "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n"
        );
        let (status, version) = get(&format!("{g}/version")).await?;
        assert_eq!(
            (status, version.as_str()),
            (200, r#"{"etcdserver":"3.4.0","etcdcluster":"3.4.0"}"#)
        );
        let resp = reqwest::Client::new().post(&health).send().await?;
        assert_eq!(resp.status().as_u16(), 405);
        for m in &c.members {
            retry_until("storage health SERVING", Duration::from_secs(5), || async {
                Ok((storage_health(m.storage_port).await? == ServingStatus::Serving).then_some(()))
            })
            .await?;
        }

        // Quorum lost: both followers down; the leader is left alone.
        let leader = c.leader(0).await?;
        let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        c.kill_member(others[0]);
        c.kill_member(others[1]);
        let survivor = c.members[leader].storage_port;
        let reason = retry_until("/health false", Duration::from_secs(15), || async {
            let (status, body) = get(&health).await?;
            Ok((status == 503).then_some(body))
        })
        .await?;
        assert!(
            reason.starts_with(r#"{"health":"false","reason":""#)
                && (reason.contains("RAFT NO LEADER") || reason.contains("RANGE ERROR")),
            "{reason}"
        );
        let (status, body) = get(&format!("{g}/readyz")).await?;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("[-]linearizable_read failed"), "{body}");
        assert!(body.ends_with("readyz check failed\n"), "{body}");
        retry_until(
            "storage health NOT_SERVING",
            Duration::from_secs(15),
            || async {
                Ok((storage_health(survivor).await? == ServingStatus::NotServing).then_some(()))
            },
        )
        .await?;

        // Quorum back.
        c.start_member(others[0])?;
        c.start_member(others[1])?;
        retry_until("/health true again", Duration::from_secs(30), || async {
            let (status, _) = get(&health).await?;
            Ok((status == 200).then_some(()))
        })
        .await?;
        retry_until(
            "storage health SERVING again",
            Duration::from_secs(15),
            || async {
                Ok((storage_health(survivor).await? == ServingStatus::Serving).then_some(()))
            },
        )
        .await?;
    }
    Ok(())
}

fn alarm_member(member: u64) -> etcd_client::AlarmOptions {
    let mut options = etcd_client::AlarmOptions::new();
    options.with_member(member);
    options
}

#[tokio::test]
async fn alarms_make_health_false_unless_excluded() -> Result<()> {
    let c = Cluster::start("memory", 1, 1, &[])?;
    let g = c.gateway(0);
    c.leader(0).await?;
    let mut client = c.client(0).await?;
    let member = client.member_list().await?.members()[0].id();
    client
        .alarm(
            etcd_client::AlarmAction::Activate,
            etcd_client::AlarmType::Nospace,
            Some(alarm_member(member)),
        )
        .await?;
    assert_eq!(
        get(&format!("{g}/health")).await?,
        (
            503,
            "{\"health\":\"false\",\"reason\":\"ALARM NOSPACE\"}\n".to_string()
        )
    );
    assert_eq!(
        get(&format!("{g}/health?exclude=NOSPACE")).await?,
        (200, r#"{"health":"true","reason":""}"#.to_string())
    );
    // NOSPACE is no data corruption: still ready.
    assert_eq!(get(&format!("{g}/readyz")).await?.0, 200);
    // gRPC health says the same, on the gateway and on the member.
    let storage = c.members[0].storage_port;
    retry_until(
        "gRPC health NOT_SERVING with an alarm",
        Duration::from_secs(10),
        || async {
            let gateway = grpc_health(&g).await?;
            let member = storage_health(storage).await?;
            Ok(
                (gateway == ServingStatus::NotServing && member == ServingStatus::NotServing)
                    .then_some(()),
            )
        },
    )
    .await?;
    client
        .alarm(
            etcd_client::AlarmAction::Deactivate,
            etcd_client::AlarmType::Nospace,
            Some(alarm_member(member)),
        )
        .await?;
    assert_eq!(get(&format!("{g}/health")).await?.0, 200);
    retry_until(
        "gRPC health SERVING again",
        Duration::from_secs(10),
        || async {
            let gateway = grpc_health(&g).await?;
            let member = storage_health(storage).await?;
            Ok(
                (gateway == ServingStatus::Serving && member == ServingStatus::Serving)
                    .then_some(()),
            )
        },
    )
    .await?;
    Ok(())
}
