//! The deployment every black-box test runs against: one engine, one topology (1 or 3
//! storaged members), gateways in front. A test body is written once, for a [`Deployment`],
//! and [`crate::matrix!`] runs it for every [`Case`] (engine × topology).

use crate::KvClient;
use crate::cluster::Cluster;
use anyhow::Result;

/// How many storaged members serve the deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One member: the single-node deployment of the README.
    One,
    /// Three members; the test's gateway prefers member 0, which may or may not lead.
    Three,
}

impl Topology {
    pub fn members(self) -> usize {
        match self {
            Topology::One => 1,
            Topology::Three => 3,
        }
    }
}

/// One cell of the test matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    pub engine: &'static str,
    pub topology: Topology,
}

impl Case {
    /// Every engine with every topology.
    pub const ALL: [Case; 4] = [
        Case::new("memory", Topology::One),
        Case::new("rocksdb", Topology::One),
        Case::new("memory", Topology::Three),
        Case::new("rocksdb", Topology::Three),
    ];

    pub const fn new(engine: &'static str, topology: Topology) -> Self {
        Self { engine, topology }
    }

    /// A single member on `engine`.
    pub const fn one(engine: &'static str) -> Self {
        Self::new(engine, Topology::One)
    }
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, {} member(s)", self.engine, self.topology.members())
    }
}

/// A running deployment: its members and one gateway (index 0, preferring member 0).
pub struct Deployment {
    pub case: Case,
    pub cluster: Cluster,
}

impl Deployment {
    pub fn start(case: Case) -> Result<Self> {
        Self::start_with(case, &[])
    }

    /// Like [`Deployment::start`], with extra gateway flags.
    pub fn start_with(case: Case, gateway_args: &[&str]) -> Result<Self> {
        Self::start_args(case, &[], gateway_args)
    }

    /// Like [`Deployment::start`], with extra storaged and gateway flags.
    pub fn start_args(case: Case, storaged_args: &[&str], gateway_args: &[&str]) -> Result<Self> {
        let members = case.topology.members();
        let cluster = Cluster::start_with(case.engine, members, 1, storaged_args, gateway_args)?;
        Ok(Self { case, cluster })
    }

    /// The gateway's client URL.
    pub fn endpoint(&self) -> String {
        self.cluster.gateway(0)
    }

    /// Waits until the members have a leader the gateway knows.
    pub async fn ready(&self) -> Result<()> {
        self.cluster.leader(0).await.map(|_| ())
    }

    /// An `etcd-client` connected to the gateway, once the members have a leader.
    pub async fn client(&self) -> Result<etcd_client::Client> {
        self.ready().await?;
        self.cluster.client(0).await
    }

    /// A raw KV client on the gateway, once the members have a leader.
    pub async fn kv(&self) -> Result<KvClient<tonic::transport::Channel>> {
        self.ready().await?;
        crate::connect_kv(&self.endpoint()).await
    }

    /// SIGKILLs every member at once.
    pub fn kill_members(&mut self) {
        for i in 0..self.cluster.members.len() {
            self.cluster.kill_member(i);
        }
    }

    /// Starts every member again on its data dir.
    pub fn start_members(&mut self) -> Result<()> {
        for i in 0..self.cluster.members.len() {
            self.cluster.start_member(i)?;
        }
        Ok(())
    }

    /// SIGKILLs the gateway and starts it again on the same address.
    pub fn restart_gateway(&mut self) -> Result<()> {
        self.cluster.restart_gateway(0)
    }
}

/// Generates one test per [`Case`] for each named test body, an
/// `async fn(Deployment) -> anyhow::Result<()>`: `matrix!(put_get);` gives the tests
/// `put_get::memory_one`, `put_get::rocksdb_one`, `put_get::memory_three` and
/// `put_get::rocksdb_three`. `matrix!(storaged_args = ["--flag", "value"]; name)` starts
/// every member with those flags.
#[macro_export]
macro_rules! matrix {
    ($($name:ident),+ $(,)?) => {
        $crate::matrix!(storaged_args = []; $($name),+);
    };
    (storaged_args = $args:expr; $($name:ident),+ $(,)?) => {$(
        mod $name {
            use $crate::{Case, Deployment, Topology};
            async fn run(case: Case) -> ::anyhow::Result<()> {
                let args: &[&str] = &$args;
                let d = Deployment::start_args(case, args, &[])?;
                super::$name(d)
                    .await
                    .map_err(|e| e.context(format!("{case}")))
            }
            #[tokio::test]
            async fn memory_one() -> ::anyhow::Result<()> {
                run(Case::new("memory", Topology::One)).await
            }
            #[tokio::test]
            async fn rocksdb_one() -> ::anyhow::Result<()> {
                run(Case::new("rocksdb", Topology::One)).await
            }
            #[tokio::test]
            async fn memory_three() -> ::anyhow::Result<()> {
                run(Case::new("memory", Topology::Three)).await
            }
            #[tokio::test]
            async fn rocksdb_three() -> ::anyhow::Result<()> {
                run(Case::new("rocksdb", Topology::Three)).await
            }
        }
    )+};
}

/// Polls `check` every 50 ms until it yields `Some`, or fails after `timeout` saying what was
/// awaited. Tests wait for conditions with this, never with bare sleeps.
pub async fn retry_until<T, F, Fut>(
    what: &str,
    timeout: std::time::Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = std::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if std::time::Instant::now() >= deadline {
            let why = last_error.map_or_else(String::new, |e| format!(" (last error: {e:#})"));
            anyhow::bail!("{what}: not within {timeout:?}{why}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
