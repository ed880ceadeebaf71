//! The faults, one kind per run, injected several times while the workload runs.

use crate::cluster::{Cluster, MAX_SLOTS};
use crate::workload::connect;
use anyhow::{Context, Result, bail};
use etcd_client::{MemberAddOptions, PutOptions};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum FaultKind {
    /// No fault (a baseline).
    None,
    /// kill -9 of the leader, restarted after a few seconds.
    KillLeader,
    /// kill -9 of a follower, restarted after a few seconds.
    KillFollower,
    /// kill -9 of the leader under load and an immediate restart, before the followers' election
    /// timeout: a leader that lost the unsynced tail of its log must not lead on with it.
    BounceLeader,
    /// kill -9 of a gateway, restarted on the same port.
    KillGateway,
    /// SIGSTOP of the leader for several election timeouts, then SIGCONT.
    StopLeader,
    /// The leader cut off from every other member (both directions).
    PartitionLeader,
    /// One follower cut off from every other member (both directions).
    PartitionMinority,
    /// One direction only: the leader cannot reach the followers' peer ports (or, every
    /// other round, they cannot reach its), while connections the other way work.
    PartitionAsymmetric,
    /// kill -9 of every member at once, or (every other round) a rolling SIGTERM restart.
    RestartAll,
    /// A member added (as learner, then promoted) and an old one removed, under load.
    MemberChurn,
    /// A follower down while a large amount of data is written (small --snapshot-count),
    /// then restarted: it must catch up.
    SnapshotCatchup,
}

impl FaultKind {
    pub const ALL: [FaultKind; 11] = [
        FaultKind::KillLeader,
        FaultKind::KillFollower,
        FaultKind::BounceLeader,
        FaultKind::KillGateway,
        FaultKind::StopLeader,
        FaultKind::PartitionLeader,
        FaultKind::PartitionMinority,
        FaultKind::PartitionAsymmetric,
        FaultKind::RestartAll,
        FaultKind::MemberChurn,
        FaultKind::SnapshotCatchup,
    ];

    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    pub fn needs_netns(self) -> bool {
        matches!(
            self,
            FaultKind::PartitionLeader
                | FaultKind::PartitionMinority
                | FaultKind::PartitionAsymmetric
        )
    }
}

/// Settings of the fault loop.
pub struct FaultPlan {
    pub kind: FaultKind,
    pub rounds: usize,
    /// How long a kill / pause / partition lasts.
    pub hold: Duration,
    /// Pauses and partitions: every other round lasts this long instead, longer than a lock
    /// lease's TTL, so that a deposed leader that still answers lease renewals shows.
    pub long_hold: Duration,
    /// member-churn: how long a learner may take to become promotable.
    pub promote_timeout: Duration,
    /// Normal operation between faults.
    pub gap: Duration,
    /// snapshot-catchup: bytes written while the follower is down, per round.
    pub catchup_bytes: u64,
    /// How long a lagging member may take to catch up before it counts as stuck.
    pub catchup_timeout: Duration,
}

impl FaultPlan {
    fn hold_for(&self, round: usize) -> Duration {
        if round % 2 == 1 {
            self.long_hold
        } else {
            self.hold
        }
    }
}

/// What the fault loop did and saw.
#[derive(Default)]
pub struct FaultOutcome {
    pub injected: usize,
    /// Findings the harness itself makes (no leader after healing, a member that never
    /// catches up, a learner never promotable).
    pub violations: Vec<String>,
    /// Facts for the report (catch-up times, sizes).
    pub notes: Vec<String>,
}

async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

const RECOVER: Duration = Duration::from_secs(20);

/// Waits for a leader all live members agree on; a harness violation when none comes.
async fn recovered(c: &Cluster, out: &mut FaultOutcome, after: &str) {
    if let Err(e) = c.wait_leader(RECOVER).await {
        out.violations.push(format!(
            "no leader {} s after {after}: {e:#}",
            RECOVER.as_secs()
        ));
    }
}

async fn leader_or_fail(c: &Cluster) -> Result<usize> {
    c.wait_leader(RECOVER)
        .await
        .context("finding the leader before a fault")
}

fn followers(c: &Cluster, leader: usize) -> Vec<usize> {
    c.members
        .iter()
        .copied()
        .filter(|&i| i != leader && c.is_running(i))
        .collect()
}

pub async fn run_faults(
    c: &mut Cluster,
    plan: &FaultPlan,
    stop: impl Fn() -> bool,
) -> Result<FaultOutcome> {
    let mut out = FaultOutcome::default();
    for round in 0..plan.rounds {
        if stop() {
            break;
        }
        sleep(plan.gap).await;
        match plan.kind {
            FaultKind::None => {
                sleep(plan.hold).await;
                continue;
            }
            FaultKind::KillLeader | FaultKind::KillFollower => {
                let leader = leader_or_fail(c).await?;
                let victim = if plan.kind == FaultKind::KillLeader {
                    leader
                } else {
                    let f = followers(c, leader);
                    f[round % f.len().max(1)]
                };
                c.kill_member(victim);
                out.injected += 1;
                sleep(plan.hold).await;
                c.start_member(victim).await?;
                recovered(c, &mut out, "restarting a killed member").await;
            }
            FaultKind::BounceLeader => {
                let leader = leader_or_fail(c).await?;
                c.kill_member(leader);
                out.injected += 1;
                c.start_member(leader).await?;
                recovered(c, &mut out, "restarting the killed leader at once").await;
            }
            FaultKind::KillGateway => {
                let g = round % c.gateway_count();
                c.kill_gateway(g);
                out.injected += 1;
                sleep(plan.hold).await;
                c.start_gateway(g).await?;
            }
            FaultKind::StopLeader => {
                let leader = leader_or_fail(c).await?;
                c.pause_member(leader)?;
                out.injected += 1;
                sleep(plan.hold_for(round)).await;
                c.resume_member(leader)?;
                recovered(c, &mut out, "SIGCONT of the paused leader").await;
            }
            FaultKind::PartitionLeader | FaultKind::PartitionMinority => {
                let net = c.net().context("partitions need network namespaces")?;
                let leader = leader_or_fail(c).await?;
                let victim = if plan.kind == FaultKind::PartitionLeader {
                    leader
                } else {
                    let f = followers(c, leader);
                    f[round % f.len().max(1)]
                };
                let others: Vec<usize> =
                    c.members.iter().copied().filter(|&i| i != victim).collect();
                net.isolate(victim, &others)?;
                out.injected += 1;
                sleep(plan.hold_for(round)).await;
                net.heal()?;
                recovered(c, &mut out, "healing a partition").await;
            }
            FaultKind::PartitionAsymmetric => {
                let net = c.net().context("partitions need network namespaces")?;
                let leader = leader_or_fail(c).await?;
                let others = followers(c, leader);
                if round % 2 == 0 {
                    net.block_send(leader, &others)?;
                } else {
                    net.block_receive(leader, &others)?;
                }
                out.injected += 1;
                sleep(plan.hold_for(round)).await;
                net.heal()?;
                recovered(c, &mut out, "healing an asymmetric partition").await;
            }
            FaultKind::RestartAll => {
                let members = c.members.clone();
                if round % 2 == 0 {
                    for &i in &members {
                        c.kill_member(i);
                    }
                    sleep(Duration::from_millis(500)).await;
                    for &i in &members {
                        c.start_member(i).await?;
                    }
                } else {
                    for &i in &members {
                        c.term_member(i).await;
                        c.start_member(i).await?;
                        recovered(c, &mut out, "a rolling restart step").await;
                    }
                }
                out.injected += 1;
                recovered(c, &mut out, "restarting every member").await;
            }
            FaultKind::MemberChurn => {
                member_churn(c, plan, round, &mut out).await?;
            }
            FaultKind::SnapshotCatchup => {
                snapshot_catchup(c, plan, round, &mut out).await?;
            }
        }
    }
    Ok(out)
}

/// Adds slot `3 + round` as a learner, starts it, promotes it once it is in sync, then
/// removes an old member (a follower on even rounds, the leader on odd ones).
async fn member_churn(
    c: &mut Cluster,
    plan: &FaultPlan,
    round: usize,
    out: &mut FaultOutcome,
) -> Result<()> {
    let new = 3 + round;
    if new >= MAX_SLOTS {
        bail!("member-churn supports at most {} rounds", MAX_SLOTS - 3);
    }
    let url = c.gateway_url(round % c.gateway_count());
    let mut client = connect(&url).await?;
    let peer_url = c.slots[new].peer_url();
    // MemberAdd (retried; a retry after an unknown outcome may find the member added).
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_id = loop {
        let list = tokio::time::timeout(Duration::from_secs(5), client.member_list()).await;
        if let Ok(Ok(list)) = list
            && let Some(m) = list
                .members()
                .iter()
                .find(|m| m.peer_urls().contains(&peer_url))
        {
            break m.id();
        }
        let add = tokio::time::timeout(
            Duration::from_secs(10),
            client.member_add(
                [peer_url.as_str()],
                Some(MemberAddOptions::new().with_is_learner()),
            ),
        )
        .await;
        match add {
            Ok(Ok(r)) => {
                if let Some(m) = r.member() {
                    break m.id();
                }
            }
            Ok(Err(e)) if Instant::now() > deadline => bail!("MemberAdd: {e}"),
            _ if Instant::now() > deadline => bail!("MemberAdd timed out"),
            _ => {}
        }
        sleep(Duration::from_millis(300)).await;
        client = connect(&url).await?;
    };
    out.injected += 1;
    // The new member's --initial-cluster: every member the group lists, itself included.
    let list = tokio::time::timeout(Duration::from_secs(5), client.member_list())
        .await
        .context("MemberList timed out")??;
    let mut initial: Vec<String> = Vec::new();
    for m in list.members() {
        let name = if m.id() == new_id {
            c.slots[new].name.clone()
        } else {
            match c
                .slots
                .iter()
                .find(|s| m.peer_urls().contains(&s.peer_url()))
            {
                Some(s) => s.name.clone(),
                None => m.name().to_string(),
            }
        };
        if let Some(p) = m.peer_urls().first() {
            initial.push(format!("{name}={p}"));
        }
    }
    // MemberList is answered from the asked member's own view (as etcd 3.4's), which may not
    // hold the addition yet: the new member is always in its own --initial-cluster.
    if !list.members().iter().any(|m| m.id() == new_id) {
        initial.push(format!("{}={peer_url}", c.slots[new].name));
    }
    c.join_member(new, initial.join(",")).await?;
    // Promote once the learner is in sync.
    let started = Instant::now();
    let deadline = started + plan.promote_timeout;
    let promoted = loop {
        let r = tokio::time::timeout(Duration::from_secs(5), client.member_promote(new_id)).await;
        if let Ok(Ok(_)) = r {
            break true;
        }
        // A promotion whose answer was lost may have happened.
        if let Ok(Ok(list)) =
            tokio::time::timeout(Duration::from_secs(5), client.member_list()).await
            && list
                .members()
                .iter()
                .any(|m| m.id() == new_id && !m.is_learner())
        {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        sleep(Duration::from_millis(300)).await;
        if let Ok(fresh) = connect(&url).await {
            client = fresh;
        }
    };
    let new_name = c.slots[new].name.clone();
    if !promoted {
        let state = match c.status(new).await {
            Ok(s) => format!(
                "term {}, leader {:x}, revision {}, raft index {}",
                s.term, s.leader, s.revision, s.raft_index
            ),
            Err(e) => format!("no status: {e:#}"),
        };
        let hint = match c.leader().await {
            Some(l) => last_warning(c, l, &format!("{new_id:x}"))
                .map(|w| format!("; the leader logs: {w}"))
                .unwrap_or_default(),
            None => String::new(),
        };
        out.violations.push(format!(
            "member-churn: learner {new_name} (id {new_id:x}) added with MemberAdd and started \
             with --initial-cluster-state existing never caught up: not promotable within {} s \
             ({state}){hint}",
            plan.promote_timeout.as_secs()
        ));
        // Take it out again so the rest of the run has a working group.
        remove_member(&url, new_id, &new_name).await?;
        c.forget_member(new);
        recovered(c, out, "removing a learner that never caught up").await;
        return Ok(());
    }
    out.notes.push(format!(
        "member-churn round {round}: {new_name} added and promoted in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    recovered(c, out, "promoting a learner").await;
    // Remove an old member.
    let leader = leader_or_fail(c).await?;
    let victim = if round % 2 == 1 {
        leader
    } else {
        match followers(c, leader).into_iter().find(|&i| i != new) {
            Some(f) => f,
            None => bail!("no follower to remove"),
        }
    };
    let victim_id = c.member_id(victim).await?;
    let victim_name = c.slots[victim].name.clone();
    remove_member(&url, victim_id, &victim_name).await?;
    // Give the removed member a moment to learn it is out, then stop it.
    sleep(Duration::from_millis(500)).await;
    c.forget_member(victim);
    out.injected += 1;
    out.notes.push(format!(
        "member-churn round {round}: removed {}{}",
        c.slots[victim].name,
        if victim == leader {
            " (the leader)"
        } else {
            ""
        }
    ));
    recovered(c, out, "removing a member").await;
    Ok(())
}

/// Kills a follower, writes `catchup_bytes` in 100 KB values, restarts it and times how long
/// it takes to reach the leader's revision with the same HashKV.
async fn snapshot_catchup(
    c: &mut Cluster,
    plan: &FaultPlan,
    round: usize,
    out: &mut FaultOutcome,
) -> Result<()> {
    let leader = leader_or_fail(c).await?;
    let f = followers(c, leader);
    let victim = f[round % f.len().max(1)];
    let before = c.status(victim).await.map(|s| s.raft_index).unwrap_or(0);
    c.kill_member(victim);
    out.injected += 1;
    // Writers, one per gateway.
    const VALUE: usize = 100 * 1024;
    let count = usize::try_from(plan.catchup_bytes).unwrap_or(usize::MAX) / VALUE;
    let urls = c.gateway_urls();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (w, url) in urls.iter().enumerate() {
        let url = url.clone();
        let n = urls.len();
        tasks.push(tokio::spawn(async move {
            // Random text: the engines compress, and a store of 200 MB must stay that big.
            let mut rng = fastrand::Rng::with_seed((round * 16 + w) as u64);
            let mut value = String::new();
            let mut written = 0u64;
            let mut client = None;
            let mut i = w;
            let mut failures = 0;
            while i < count && failures < 200 {
                if client.is_none() {
                    client = connect(&url).await.ok();
                }
                let Some(cl) = client.as_mut() else {
                    failures += 1;
                    sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let key = format!("/r/big/{round}/{i:06}");
                if value.is_empty() {
                    value = (0..VALUE).map(|_| rng.alphanumeric()).collect();
                }
                let put = tokio::time::timeout(
                    Duration::from_secs(10),
                    cl.put(key, value.as_str(), None::<PutOptions>),
                )
                .await;
                match put {
                    Ok(Ok(_)) => {
                        written += VALUE as u64;
                        i += n;
                        value.clear();
                    }
                    _ => {
                        failures += 1;
                        client = None;
                        sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            written
        }));
    }
    let mut written = 0u64;
    for t in tasks {
        written += t.await.unwrap_or(0);
    }
    let write_secs = started.elapsed().as_secs_f64();
    let leader_status = c.status(c.wait_leader(RECOVER).await?).await?;
    c.start_member(victim).await?;
    let restarted = Instant::now();
    // Caught up: the member's revision reaches what the leader had and the hashes agree.
    let target = leader_status.revision;
    let mut last = None;
    let caught_up = loop {
        if let Ok(s) = c.status(victim).await {
            if s.revision >= target {
                break true;
            }
            last = Some(s);
        }
        if restarted.elapsed() > plan.catchup_timeout {
            break false;
        }
        sleep(Duration::from_millis(200)).await;
    };
    let name = c.slots[victim].name.clone();
    let mb = written as f64 / 1e6;
    if caught_up {
        out.notes.push(format!(
            "snapshot-catchup round {round}: {mb:.0} MB written in {write_secs:.1} s while {name} was down \
             (leader db size {:.0} MB, revision {target}, {name} {} raft entries behind); {name} \
             caught up in {:.1} s",
            leader_status.db_size as f64 / 1e6,
            leader_status.raft_index.saturating_sub(before),
            restarted.elapsed().as_secs_f64()
        ));
    } else {
        let at = last
            .map(|s| {
                format!(
                    "revision {} raft index {} applied {}",
                    s.revision, s.raft_index, s.applied
                )
            })
            .unwrap_or_else(|| "no answer".to_string());
        out.violations.push(format!(
            "snapshot-catchup: {name} did not catch up within {} s after restart \
             ({mb:.0} MB written while it was down; leader at revision {target}; {name} at {at})",
            plan.catchup_timeout.as_secs()
        ));
    }
    recovered(c, out, "restarting the lagging member").await;
    Ok(())
}

/// MemberRemove through the gateway at `url`, retried until the member is gone.
async fn remove_member(url: &str, id: u64, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client = connect(url).await?;
    loop {
        let r = tokio::time::timeout(Duration::from_secs(10), client.member_remove(id)).await;
        if let Ok(Ok(_)) = r {
            return Ok(());
        }
        // Already removed after an unknown outcome?
        if let Ok(Ok(list)) =
            tokio::time::timeout(Duration::from_secs(5), client.member_list()).await
            && !list.members().iter().any(|m| m.id() == id)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("MemberRemove of {name} did not succeed within 30 s");
        }
        sleep(Duration::from_millis(300)).await;
        if let Ok(fresh) = connect(url).await {
            client = fresh;
        }
    }
}

/// The last WARN/ERROR line of member `i`'s log that mentions `needle`, without colours.
fn last_warning(c: &Cluster, i: usize, needle: &str) -> Option<String> {
    let path = c.dir.join("logs").join(format!("{}.log", c.slots[i].name));
    let text = std::fs::read_to_string(path).ok()?;
    let line = text
        .lines()
        .rev()
        .find(|l| (l.contains("WARN") || l.contains("ERROR")) && l.contains(needle))?;
    let mut clean = String::new();
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for n in chars.by_ref() {
                if n == 'm' {
                    break;
                }
            }
        } else {
            clean.push(ch);
        }
    }
    // The end of a log line says what went wrong; keep the timestamp and the last 300 bytes.
    let clean = clean.trim();
    if clean.len() <= 360 {
        return Some(clean.to_string());
    }
    let mut start = clean.len() - 300;
    while !clean.is_char_boundary(start) {
        start += 1;
    }
    let stamp = clean.split_whitespace().next().unwrap_or_default();
    Some(format!("{stamp} ...{}", &clean[start..]))
}
