//! Streamfleet's test kit: the real parts a test or a bench stands up, each in one place.
//!
//! - [`NatsServer`]: `nats-server` with the project's `nats.conf` on a free port, a temporary
//!   JetStream store and a fresh password per role; killed on drop.
//! - [`Link`]: a network namespace joined to this one by a veth pair with addresses, a route,
//!   and a shaped host → namespace direction (rate cap, random loss); removed on drop.
//! - [`SmallDisk`]: a tmpfs of a few MiB to fill to the last byte and free again.
//! - [`wait_for`]: the next followed event that satisfies a predicate, within a deadline.
//!
//! Nothing here sleeps to synchronise: servers are ready when they say so on stderr, events are
//! waited for as they arrive.

mod disk;
mod event;
mod link;
mod nats;

pub use disk::SmallDisk;
pub use event::{WaitError, wait_for};
pub use link::{Link, LinkError};
pub use nats::{NatsServer, StartError, free_port};
