//! Storage members in network namespaces, so that the harness can cut the links between them.
//!
//! One bridge `msr<id>` in the root namespace (address 10.77.<id>.1) and one namespace
//! `msr<id>-<i>` per member slot, joined to the bridge by a veth pair, with the address
//! 10.77.<id>.<10+i>. Gateways and clients stay in the root namespace and reach members through
//! the bridge. Faults are iptables rules inside a member's namespace; healing flushes them.
//!
//! A run claims `<id>` with a state file holding its pid; a later run removes the namespaces,
//! bridge and rules of any id whose process is gone (a crashed or killed run).

use anyhow::{Context, Result, bail};
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// Peer (raft) port of every member; each member has its own address.
pub const PEER_PORT: u16 = 2380;
/// Storage port (what gateways connect to).
pub const STORAGE_PORT: u16 = 2390;
const RULE_COMMENT: &str = "metastore-robustness";

fn state_dir() -> PathBuf {
    PathBuf::from("/run/metastore-robustness")
}

/// Runs a command; fails with its stderr when it exits non-zero.
pub fn run(cmd: &[&str]) -> Result<()> {
    output(cmd).map(|_| ())
}

/// Runs a command and returns its stdout; fails with its stderr when it exits non-zero.
pub fn output(cmd: &[&str]) -> Result<String> {
    let (prog, args) = cmd.split_first().context("empty command")?;
    let out = Command::new(prog)
        .args(args)
        .output()
        .with_context(|| format!("run `{}`", cmd.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when `pid` is a running (not zombie) harness process.
fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X")) {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .map(|c| c.contains("metastore-robustness"))
        .unwrap_or(false)
}

/// The namespaces, bridge and rules of this harness process.
pub struct Net {
    pub id: u8,
    bridge: String,
    namespaces: Mutex<BTreeSet<usize>>,
    forward_rule: Mutex<bool>,
    state_file: PathBuf,
}

impl Net {
    /// Removes what crashed runs left behind, claims a free id, creates the bridge and checks
    /// that a namespace can be created and filtered. Fails (and leaves nothing behind) when
    /// namespaces are not available, for example without root.
    pub fn setup() -> Result<Net> {
        clean_stale();
        std::fs::create_dir_all(state_dir()).context("create the state directory")?;
        let links = output(&["ip", "-o", "link", "show"])?;
        let mut claimed = None;
        for id in 1..=250u8 {
            let bridge = format!("msr{id}");
            if links.contains(&format!(" {bridge}:")) || links.contains(&format!(" {bridge}@")) {
                continue;
            }
            let file = state_dir().join(id.to_string());
            // create_new: two harnesses starting at once never claim the same id.
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&file)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    writeln!(f, "{}", std::process::id())?;
                    claimed = Some((id, bridge, file));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("create {}", file.display())),
            }
        }
        let (id, bridge, state_file) = claimed.context("no free network id (1..=250)")?;
        let net = Net {
            id,
            bridge,
            namespaces: Mutex::new(BTreeSet::new()),
            forward_rule: Mutex::new(false),
            state_file,
        };
        // From here on, dropping `net` removes whatever was created.
        net.create_bridge()?;
        net.ensure_ns(0)?;
        run(&["ip", "netns", "exec", &net.ns(0), "iptables", "-L", "-n"])
            .context("iptables inside a namespace")?;
        Ok(net)
    }

    fn create_bridge(&self) -> Result<()> {
        let b = self.bridge.as_str();
        run(&["ip", "link", "add", b, "type", "bridge"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("10.77.{}.1/24", self.id),
            "dev",
            b,
        ])?;
        run(&["ip", "link", "set", b, "up"])?;
        // With br_netfilter loaded, bridged frames go through the root FORWARD chain, whose
        // policy is often DROP (Docker): let member-to-member traffic on our bridge through.
        let bridged = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
            .map(|s| s.trim() == "1")
            .unwrap_or(false);
        if bridged {
            run(&[
                "iptables",
                "-I",
                "FORWARD",
                "1",
                "-i",
                b,
                "-o",
                b,
                "-m",
                "comment",
                "--comment",
                RULE_COMMENT,
                "-j",
                "ACCEPT",
            ])
            .context("allow bridged traffic between members")?;
            *self.forward_rule.lock() = true;
        }
        Ok(())
    }

    pub fn ns(&self, i: usize) -> String {
        format!("msr{}-{}", self.id, i)
    }

    /// Address of member slot `i`.
    pub fn ip(&self, i: usize) -> String {
        format!("10.77.{}.{}", self.id, 10 + i)
    }

    /// Creates the namespace of member slot `i` (once).
    pub fn ensure_ns(&self, i: usize) -> Result<String> {
        let ns = self.ns(i);
        if self.namespaces.lock().contains(&i) {
            return Ok(ns);
        }
        run(&["ip", "netns", "add", &ns])?;
        self.namespaces.lock().insert(i);
        let veth = format!("msr{}v{}", self.id, i);
        run(&[
            "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        run(&["ip", "link", "set", &veth, "master", &self.bridge, "up"])?;
        run(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", self.ip(i)),
            "dev",
            "eth0",
        ])?;
        run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn iptables(&self, i: usize, rule: &[&str]) -> Result<()> {
        let ns = self.ns(i);
        let mut cmd = vec!["ip", "netns", "exec", ns.as_str(), "iptables"];
        cmd.extend_from_slice(rule);
        run(&cmd)
    }

    /// Cuts every packet between member `a` and each of `others`, both directions.
    pub fn isolate(&self, a: usize, others: &[usize]) -> Result<()> {
        for &b in others {
            let ip = self.ip(b);
            self.iptables(a, &["-A", "INPUT", "-s", &ip, "-j", "DROP"])?;
            self.iptables(a, &["-A", "OUTPUT", "-d", &ip, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// `a` can no longer reach the peer port of `others` (its requests to them fail), while
    /// their connections to `a` keep working.
    pub fn block_send(&self, a: usize, others: &[usize]) -> Result<()> {
        let port = PEER_PORT.to_string();
        for &b in others {
            let ip = self.ip(b);
            self.iptables(
                a,
                &[
                    "-A", "OUTPUT", "-d", &ip, "-p", "tcp", "--dport", &port, "-j", "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// `others` can no longer reach the peer port of `a`, while `a`'s connections to them
    /// keep working.
    pub fn block_receive(&self, a: usize, others: &[usize]) -> Result<()> {
        let port = PEER_PORT.to_string();
        for &b in others {
            let ip = self.ip(b);
            self.iptables(
                a,
                &[
                    "-A", "INPUT", "-s", &ip, "-p", "tcp", "--dport", &port, "-j", "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// Removes every fault rule.
    pub fn heal(&self) -> Result<()> {
        let slots: Vec<usize> = self.namespaces.lock().iter().copied().collect();
        for i in slots {
            self.iptables(i, &["-F"])?;
        }
        Ok(())
    }

    /// Kills whatever still runs in the namespaces (members of a finished run).
    pub fn kill_ns_processes(&self) {
        let slots: Vec<usize> = self.namespaces.lock().iter().copied().collect();
        for i in slots {
            kill_pids_in(&self.ns(i));
        }
    }

    fn cleanup(&self) {
        let slots: Vec<usize> = std::mem::take(&mut *self.namespaces.lock())
            .into_iter()
            .collect();
        for i in slots {
            let ns = self.ns(i);
            kill_pids_in(&ns);
            let _ = run(&["ip", "netns", "del", &ns]);
        }
        delete_links(self.id);
        if std::mem::take(&mut *self.forward_rule.lock()) {
            delete_forward_rule(&self.bridge);
        }
        let _ = std::fs::remove_file(&self.state_file);
        let _ = std::fs::remove_file(procs_file(self.id));
    }

    /// Remembers a process started in the root namespace (a gateway), so that a later run can
    /// kill it if this one crashes.
    pub fn note_process(&self, pid: u32) {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(procs_file(self.id))
        {
            let _ = writeln!(f, "{pid}");
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn procs_file(id: u8) -> PathBuf {
    state_dir().join(format!("{id}.procs"))
}

fn kill_pids_in(ns: &str) {
    if let Ok(pids) = output(&["ip", "netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = run(&["kill", "-CONT", pid]);
            let _ = run(&["kill", "-KILL", pid]);
        }
    }
}

/// Deletes the veth ends (a namespace kept alive by a dying process keeps its pair) and the
/// bridge of network `id`.
fn delete_links(id: u8) {
    let prefix = format!("msr{id}v");
    if let Ok(links) = output(&["ip", "-o", "link", "show"]) {
        for line in links.lines() {
            let name = line
                .split(':')
                .nth(1)
                .map(|n| n.trim().split('@').next().unwrap_or_default().to_string());
            if let Some(name) = name
                && name.starts_with(&prefix)
            {
                let _ = run(&["ip", "link", "del", &name]);
            }
        }
    }
    let _ = run(&["ip", "link", "del", &format!("msr{id}")]);
}

fn delete_forward_rule(bridge: &str) {
    // Delete every copy (a crash between insert and record could leave one more).
    for _ in 0..8 {
        if run(&[
            "iptables",
            "-D",
            "FORWARD",
            "-i",
            bridge,
            "-o",
            bridge,
            "-m",
            "comment",
            "--comment",
            RULE_COMMENT,
            "-j",
            "ACCEPT",
        ])
        .is_err()
        {
            break;
        }
    }
}

/// Removes the namespaces, bridges, rules and processes of runs whose harness is gone.
fn clean_stale() {
    let Ok(entries) = std::fs::read_dir(state_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(id) = name.parse::<u8>() else {
            continue;
        };
        let pid = std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if pid.is_some_and(pid_alive) {
            continue;
        }
        eprintln!("robustness: removing network namespaces of crashed run {id} (pid {pid:?})");
        let prefix = format!("msr{id}-");
        if let Ok(list) = output(&["ip", "netns", "list"]) {
            for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
                if ns.starts_with(&prefix) {
                    kill_pids_in(ns);
                    let _ = run(&["ip", "netns", "del", ns]);
                }
            }
        }
        if let Ok(pids) = std::fs::read_to_string(procs_file(id)) {
            for pid in pids.split_whitespace() {
                let cmdline =
                    std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if cmdline.contains("metastore-") {
                    let _ = run(&["kill", "-KILL", pid]);
                }
            }
        }
        delete_links(id);
        delete_forward_rule(&format!("msr{id}"));
        let _ = std::fs::remove_file(procs_file(id));
        let _ = std::fs::remove_file(entry.path());
    }
}
