//! etcd's own settings carry over: an `ETCD_<FLAG>` environment variable (etcd's container
//! images and charts set them) sets the MetaStore flag of the same name, below the flag itself
//! and its `METASTORE_*` variable; etcd settings MetaStore has no flag for are ignored.

use std::ffi::OsString;

/// etcd 3.4's flag names (`etcd --help`), and the 3.5 additions MetaStore shares.
pub const ETCD_FLAGS: &[&str] = &[
    "name",
    "data-dir",
    "wal-dir",
    "snapshot-count",
    "heartbeat-interval",
    "election-timeout",
    "initial-election-tick-advance",
    "listen-peer-urls",
    "listen-client-urls",
    "max-snapshots",
    "max-wals",
    "quota-backend-bytes",
    "backend-batch-interval",
    "backend-batch-limit",
    "max-txn-ops",
    "max-request-bytes",
    "max-concurrent-streams",
    "grpc-keepalive-min-time",
    "grpc-keepalive-interval",
    "grpc-keepalive-timeout",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-state",
    "initial-cluster-token",
    "advertise-client-urls",
    "discovery",
    "discovery-fallback",
    "discovery-proxy",
    "discovery-srv",
    "discovery-srv-name",
    "strict-reconfig-check",
    "pre-vote",
    "auto-compaction-retention",
    "auto-compaction-mode",
    "enable-v2",
    "cert-file",
    "key-file",
    "client-cert-auth",
    "client-crl-file",
    "client-cert-allowed-hostname",
    "trusted-ca-file",
    "auto-tls",
    "peer-cert-file",
    "peer-key-file",
    "peer-client-cert-auth",
    "peer-trusted-ca-file",
    "peer-cert-allowed-cn",
    "peer-cert-allowed-hostname",
    "peer-auto-tls",
    "peer-crl-file",
    "cipher-suites",
    "cors",
    "host-whitelist",
    "auth-token",
    "bcrypt-cost",
    "auth-token-ttl",
    "enable-pprof",
    "metrics",
    "listen-metrics-urls",
    "logger",
    "log-outputs",
    "log-level",
    "log-format",
    "proxy",
    "experimental-initial-corrupt-check",
    "experimental-corrupt-check-time",
    "experimental-enable-lease-checkpoint",
    "experimental-lease-checkpoint-interval",
    "experimental-compaction-batch-limit",
    "experimental-watch-progress-notify-interval",
    "experimental-warning-apply-duration",
    "force-new-cluster",
    "debug",
    "log-package-levels",
];

/// The environment variable etcd reads for `flag`: `ETCD_` and the flag in upper snake case.
pub fn variable(flag: &str) -> String {
    format!("ETCD_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// `argv` with `--flag=value` appended for each etcd variable set in `env` whose flag `cmd`
/// has, unless that flag is on the command line or its own variable is set.
pub fn with_etcd_env(
    cmd: &clap::Command,
    argv: Vec<OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Vec<OsString> {
    let mut out = argv.clone();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if !ETCD_FLAGS.contains(&long) {
            continue;
        }
        let given = argv.iter().skip(1).any(|a| {
            let a = a.to_string_lossy();
            a == format!("--{long}") || a.starts_with(&format!("--{long}="))
        });
        let own = arg
            .get_env()
            .is_some_and(|name| env(&name.to_string_lossy()).is_some());
        if given || own {
            continue;
        }
        if let Some(value) = env(&variable(long)) {
            let mut flag = OsString::from(format!("--{long}="));
            flag.push(value);
            out.push(flag);
        }
    }
    out
}

/// [`with_etcd_env`] over this process's arguments and environment.
pub fn args_with_etcd_env(cmd: &clap::Command) -> Vec<OsString> {
    with_etcd_env(cmd, std::env::args_os().collect(), |name| {
        std::env::var_os(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn cmd() -> Command {
        Command::new("t")
            .arg(Arg::new("name").long("name").env("METASTORE_NAME"))
            .arg(
                Arg::new("data-dir")
                    .long("data-dir")
                    .env("METASTORE_DATA_DIR"),
            )
            .arg(Arg::new("engine").long("engine").env("METASTORE_ENGINE"))
            .arg(
                Arg::new("snapshot-count")
                    .long("snapshot-count")
                    .env("METASTORE_SNAPSHOT_COUNT"),
            )
    }

    fn run(argv: &[&str], env: &[(&str, &str)]) -> Vec<String> {
        let env: Vec<(String, OsString)> =
            env.iter().map(|(k, v)| (k.to_string(), v.into())).collect();
        with_etcd_env(&cmd(), argv.iter().map(OsString::from).collect(), |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
    }

    #[test]
    fn etcd_variables_fill_in_shared_flags_below_flags_and_own_variables() {
        let got = run(
            &["t", "--name=flag"],
            &[
                ("ETCD_NAME", "etcd-name"),
                ("ETCD_DATA_DIR", "/var/lib/etcd"),
                ("ETCD_SNAPSHOT_COUNT", "5000"),
                ("METASTORE_SNAPSHOT_COUNT", "7"),
                ("ETCD_ENGINE", "memory"),
                ("ETCD_WAL_DIR", "/wal"),
            ],
        );
        assert_eq!(got, ["t", "--name=flag", "--data-dir=/var/lib/etcd"]);
        let parsed = cmd().get_matches_from(got);
        assert_eq!(
            parsed.get_one::<String>("data-dir").map(String::as_str),
            Some("/var/lib/etcd")
        );
    }

    #[test]
    fn variable_names_are_etcds() {
        assert_eq!(
            variable("experimental-initial-corrupt-check"),
            "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK"
        );
    }
}
