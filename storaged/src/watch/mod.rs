//! The watch hub: fed by the apply path, it streams every committed change to the watchers
//! whose range it touches.
//!
//! - `hub`: the registry of watchers and the live fan-out, run inside each commit.
//! - `watcher`: one task per watcher that catches it up from history, then relays live
//!   events, and answers progress questions in order with the events.
//!
//! A watcher is either *synced* (gets live events from the hub) or *catching up* (reads
//! history from MVCC). The switch to synced happens under the store's read lock, so no commit
//! falls between the last history read and the first live event: no gap, no duplicate. A
//! watcher whose live queue fills is moved back to catching up; it never blocks a commit.

mod hub;
mod watcher;

pub use hub::WatchHub;
pub use watcher::spawn;
