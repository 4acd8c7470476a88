//! Streamfleet's node: the one process that opens the event log.
//!
//! The node is the only process that opens the event log. It
//! - answers commands ([`commands`]): parse the envelope, load the target stream's state, run
//!   the domain's `decide`, append with the expected version (retrying a bounded number of times
//!   when another writer won), reply accepted or rejected;
//! - publishes every event after its commit ([`publisher`]) on `sf.evt.<category>.<type>` with
//!   its position in the `Sf-Position` header, and announces the head on `sf.log.head`;
//! - serves reads of the log ([`read_api`]) on `sf.log.read`;
//! - answers `sf.log.health` ([`health`]): serving, or degraded and why — a full disk refuses
//!   commands as `storage_full` while reads go on, and recording resumes once space is freed;
//! - signs checkpoints of the chain head (`checkpoints.rs`): every `checkpoint_every` events and
//!   on stop, into `checkpoints.jsonl` beside the log and on `sf.log.checkpoint`.
//!
//! Every other process talks to it through `streamfleet-bus-client`, never through this crate.

mod checkpoints;
pub mod commands;
pub mod health;
mod node;
pub mod publisher;
pub mod read_api;

pub use node::{Node, NodeConfig, NodeError};
