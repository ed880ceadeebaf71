//! The recorded history of one fault-injection run: what every client asked, when, and what it
//! was told. The harness (`tests/robustness`) writes it; the checks in this crate read it.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

pub type Key = String;
pub type Value = String;
/// Nanoseconds since the run started (monotonic clock).
pub type Time = u64;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum KvInput {
    Get {
        key: Key,
    },
    Put {
        key: Key,
        value: Value,
    },
    Delete {
        key: Key,
    },
    /// Txn: if the key's value == expect (None = key absent) then put `new`.
    Cas {
        key: Key,
        expect: Option<Value>,
        new: Value,
    },
}

impl KvInput {
    /// The one key this operation touches.
    pub fn key(&self) -> &str {
        match self {
            KvInput::Get { key }
            | KvInput::Put { key, .. }
            | KvInput::Delete { key }
            | KvInput::Cas { key, .. } => key,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum KvOutput {
    Get {
        value: Option<Value>,
        revision: i64,
    },
    Put {
        revision: i64,
    },
    Delete {
        deleted: i64,
        revision: i64,
    },
    Cas {
        succeeded: bool,
        revision: i64,
    },
    /// Definitely had no effect (e.g. error that certainly was not applied).
    Failed {
        error: String,
    },
    /// Outcome unknown (timeout, leader changed, connection lost after send): may or may not
    /// have taken effect, at any time after invoke.
    Unknown {
        error: String,
    },
}

impl KvOutput {
    /// The revision the response carried, if it is an acknowledged response.
    pub fn revision(&self) -> Option<i64> {
        match self {
            KvOutput::Get { revision, .. }
            | KvOutput::Put { revision }
            | KvOutput::Delete { revision, .. }
            | KvOutput::Cas { revision, .. } => Some(*revision),
            KvOutput::Failed { .. } | KvOutput::Unknown { .. } => None,
        }
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, KvOutput::Unknown { .. })
    }

    pub fn is_failed(&self) -> bool {
        matches!(self, KvOutput::Failed { .. })
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct KvOp {
    pub client: u64,
    pub invoke: Time,
    pub complete: Time,
    pub input: KvInput,
    pub output: KvOutput,
}

impl KvOp {
    pub fn key(&self) -> &str {
        self.input.key()
    }

    /// If this acknowledged operation wrote (created a new revision), that revision.
    pub fn write_revision(&self) -> Option<i64> {
        match (&self.input, &self.output) {
            (KvInput::Put { .. }, KvOutput::Put { revision }) => Some(*revision),
            (KvInput::Delete { .. }, KvOutput::Delete { deleted, revision }) if *deleted > 0 => {
                Some(*revision)
            }
            (
                KvInput::Cas { .. },
                KvOutput::Cas {
                    succeeded,
                    revision,
                },
            ) if *succeeded => Some(*revision),
            _ => None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub revision: i64,
    pub key: Key,
    pub is_put: bool,
    pub value: Value,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum WatchItem {
    Created {
        at: Time,
        revision: i64,
        start_revision: i64,
    },
    Events {
        at: Time,
        header_revision: i64,
        events: Vec<WatchEvent>,
    },
    Progress {
        at: Time,
        revision: i64,
    },
    Canceled {
        at: Time,
        reason: String,
        compact_revision: i64,
    },
}

/// One watch stream (a client may open a new stream to resume after an error; each stream is
/// one WatchLog, with `start_revision` = the start revision it asked for, 0 = "from now").
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WatchLog {
    pub watcher: u64,
    pub key_prefix: Key,
    pub start_revision: i64,
    pub items: Vec<WatchItem>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LockHold {
    pub client: u64,
    /// The acquire call completed.
    pub acquired: Time,
    /// The release was invoked; None = never released (crash/unknown).
    pub released: Option<Time>,
    /// Create revision of the lock key.
    pub fencing: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CounterIncrement {
    pub client: u64,
    pub invoke: Time,
    pub complete: Time,
    pub fencing: i64,
    pub new_value: i64,
    /// false = unknown outcome.
    pub acknowledged: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub kv: Vec<KvOp>,
    pub watches: Vec<WatchLog>,
    pub locks: Vec<LockHold>,
    pub increments: Vec<CounterIncrement>,
    /// Every event of the watched prefix in revision order as read at the end (ground truth;
    /// from a watch from revision 1 after the run, no compaction during the run).
    pub final_events: Vec<WatchEvent>,
    pub final_counter: Option<i64>,
}

impl History {
    /// Writes the history as one JSON document.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut out = BufWriter::new(File::create(path)?);
        serde_json::to_writer(&mut out, self)?;
        out.write_all(b"\n")?;
        out.flush()
    }

    /// Reads a history written by [`History::save`].
    pub fn load(path: &Path) -> std::io::Result<History> {
        let input = BufReader::new(File::open(path)?);
        Ok(serde_json::from_reader(input)?)
    }
}

/// `12.345678s`: a run-relative time for messages.
pub fn fmt_time(t: Time) -> String {
    if t == Time::MAX {
        return "inf".to_string();
    }
    format!("{}.{:09}s", t / 1_000_000_000, t % 1_000_000_000)
}

fn fmt_value(v: &Option<Value>) -> String {
    match v {
        Some(v) => format!("{v:?}"),
        None => "<absent>".to_string(),
    }
}

/// One line describing an operation, for violation details.
pub fn fmt_op(op: &KvOp) -> String {
    let input = match &op.input {
        KvInput::Get { .. } => "get".to_string(),
        KvInput::Put { value, .. } => format!("put {value:?}"),
        KvInput::Delete { .. } => "delete".to_string(),
        KvInput::Cas { expect, new, .. } => format!("cas {} -> {new:?}", fmt_value(expect)),
    };
    let output = match &op.output {
        KvOutput::Get { value, revision } => format!("{} @rev {revision}", fmt_value(value)),
        KvOutput::Put { revision } => format!("ok @rev {revision}"),
        KvOutput::Delete { deleted, revision } => format!("deleted {deleted} @rev {revision}"),
        KvOutput::Cas {
            succeeded,
            revision,
        } => format!(
            "{} @rev {revision}",
            if *succeeded { "succeeded" } else { "failed" }
        ),
        KvOutput::Failed { error } => format!("FAILED ({error})"),
        KvOutput::Unknown { error } => format!("UNKNOWN ({error})"),
    };
    let complete = if op.output.is_unknown() {
        format!("({})", fmt_time(op.complete))
    } else {
        fmt_time(op.complete)
    };
    format!(
        "client {} [{} .. {}] {:?}: {input} => {output}",
        op.client,
        fmt_time(op.invoke),
        complete,
        op.key()
    )
}
