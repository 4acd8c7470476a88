//! Streamfleet's node and the clients that talk to it over NATS.
//!
//! The node is the only process that opens the event log. It
//! - answers commands ([`commands`]): parse the envelope, load the target stream's state, run
//!   the domain's `decide`, append with the expected version (retrying a bounded number of times
//!   when another writer won), reply accepted or rejected;
//! - publishes every event after its commit ([`publisher`]) on `sf.evt.<category>.<type>` with
//!   its position in the `Sf-Position` header, and announces the head on `sf.log.head`;
//! - serves reads of the log ([`read_api`]) on `sf.log.read`.
//!
//! Any other process uses [`CommandClient`] to send commands and [`Follower`] to receive every
//! event in order, without gaps or duplicates, across restarts and dropped connections.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use streamfleet_node::{connect, NatsLogin, Follower};
//! let client = connect(&NatsLogin::new("nats://127.0.0.1:4222", "auditor", "secret")).await?;
//! let mut follower = Follower::start(client, 1).await?;
//! let event = follower.next().await?;
//! println!("{} {}", event.position, String::from_utf8_lossy(&event.json));
//! # Ok(()) }
//! ```

mod client;
pub mod commands;
mod follower;
mod login;
mod node;
pub mod publisher;
pub mod read_api;

pub use client::{CommandClient, SendError};
pub use follower::{FollowError, FollowedEvent, Follower, log_head};
pub use login::{NatsLogin, ROLES, connect};
pub use node::{Node, NodeConfig, NodeError};
