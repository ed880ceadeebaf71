//! The spans a traced request opens inside raft: `raft.propose` around the proposal (on the
//! member that proposes it, until it is applied there), `raft.apply` around the entry's apply
//! on that member, and `raft.read_index` around a linearizable read's confirmation.
//!
//! Apply runs on raft's state machine task, away from the request, so the proposing member
//! remembers each traced proposal's span by the request's origin until it is applied. Nothing
//! is made or remembered unless tracing is on and the request is traced.

use crate::command::Origin;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::LazyLock;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static PROPOSING: LazyLock<Mutex<HashMap<Origin, opentelemetry::Context>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// True inside a request that is traced.
fn traced() -> bool {
    metastore_cli::telemetry::enabled() && !Span::current().is_none()
}

/// The span of a linearizable read's confirmation.
pub fn read_index() -> Span {
    if traced() {
        tracing::info_span!("raft.read_index")
    } else {
        Span::none()
    }
}

/// The span of a proposal, remembered for its apply until the returned guard drops.
pub fn propose(origin: Option<Origin>) -> (Span, Proposing) {
    let span = if traced() {
        tracing::info_span!("raft.propose")
    } else {
        Span::none()
    };
    let origin = match origin {
        Some(o) if !span.is_none() => {
            PROPOSING.lock().insert(o, span.context());
            Some(o)
        }
        _ => None,
    };
    (span, Proposing(origin))
}

/// Forgets a proposal's span once the proposal is done (applied or failed).
pub struct Proposing(Option<Origin>);

impl Drop for Proposing {
    fn drop(&mut self) {
        if let Some(o) = self.0 {
            PROPOSING.lock().remove(&o);
        }
    }
}

/// The span of applying the entry of request `origin`, when this member proposed it while
/// tracing it; else no span.
pub fn apply(origin: Option<Origin>) -> Span {
    if !metastore_cli::telemetry::enabled() {
        return Span::none();
    }
    let Some(parent) = origin.and_then(|o| PROPOSING.lock().get(&o).cloned()) else {
        return Span::none();
    };
    let span = tracing::info_span!("raft.apply");
    let _ = span.set_parent(parent);
    span
}
