//! What a storage request is, decided once, and whether it is well formed.
//!
//! - [`class`]: [`classify`] turns a request into a [`Class`] (read or write, serializable,
//!   idempotent, leader work or any member). The gateway routes and retries by it; storaged
//!   forwards and serves by it. Nobody else inspects ops to decide those things.
//! - [`validate`]: etcd's request checks ([`Invalid`]). The gateway runs them at the edge with
//!   its configured [`Limits`]; storaged runs them again before proposing (its port can be
//!   reached directly) and, with the fixed [`Limits::APPLY`], on every entry it applies, so
//!   no entry can make members disagree.

pub mod class;
pub mod validate;

pub use class::{Access, Class, classify};
pub use validate::{Invalid, Limits};
