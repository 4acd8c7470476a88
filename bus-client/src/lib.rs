//! Streamfleet's bus client: how every process other than the node talks to the bus.
//!
//! It depends on the wire contract (`streamfleet-bus-schemas`) only — no log, no domain — so
//! a worker, a host agent, a dashboard or a bench compiles none of the server. It holds:
//! - [`NatsLogin`] and [`connect`]: a role, its password from the environment
//!   ([`NatsLogin::from_env`]), or an admitted host with its [`HostKey`]; `Debug` never prints
//!   the password or seed;
//! - [`CommandClient`]: commands in the envelope, [`CommandClient::submit`] retrying under the
//!   same id with a typed outcome ([`Refused`]), or the reply as it came;
//! - [`ask`]: service requests (token, redemption, host agents) with typed answers;
//! - [`Follower`]: every event in order, none skipped or twice, across reconnects and restarts;
//! - [`LogReader`]: pages of the log, a whole stream, the head;
//! - [`reply_inbox`]: for responders, the reply subject only when it is an inbox.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use streamfleet_bus_client::{connect, NatsLogin, Follower};
//! let client = connect(&NatsLogin::new("nats://127.0.0.1:4222", "auditor", "secret")).await?;
//! let mut follower = Follower::start(client, 1).await?;
//! let event = follower.next().await?;
//! println!("{} {}", event.position, String::from_utf8_lossy(&event.json));
//! # Ok(()) }
//! ```

mod admission;
mod commands;
mod follower;
mod host_key;
mod login;
mod reader;
mod request;
mod responder;

pub use admission::{AdmissionError, Admitter, NatsConfig, reload};
pub use commands::{CommandClient, Refused, SUBMIT_ATTEMPTS, SendError};
pub use follower::{FollowError, FollowedEvent, Follower, log_head};
pub use host_key::{HostKey, HostKeyError};
pub use login::{MissingPassword, NatsLogin, connect, password_variable};
pub use reader::{LogReader, Page, ReadError};
pub use request::{RequestError, ask, ask_raw};
pub use responder::reply_inbox;
