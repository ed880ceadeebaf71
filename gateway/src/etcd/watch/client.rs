//! What a client stream's session and its watcher tasks share: the channel of replies to the
//! client, and the answer a watcher gives to a progress question.

use metastore_proto::etcdserverpb::{ResponseHeader, WatchResponse};
use tokio::sync::mpsc;
use tonic::Status;

/// Replies to one client watch stream.
pub(super) type ClientTx = mpsc::Sender<Result<WatchResponse, Status>>;

/// The client stream is gone: nothing more can be sent on it.
pub(super) struct ClientGone;

/// Where a watcher stands: `None` header means it could not say.
pub(super) struct ProgressReply {
    pub(super) header: Option<ResponseHeader>,
    pub(super) synced: bool,
}
