//! NATS subjects. Commands: `sf.cmd.<aggregate>.<verb>`; events: `sf.evt.<category>.<EventType>`;
//! the log's read API: `sf.log.read`; the node's head announcements: `sf.log.head`.

/// Prefix of every command subject; the node subscribes to `sf.cmd.>`.
pub const COMMANDS: &str = "sf.cmd.>";
/// Prefix of every event subject; a follower of everything subscribes to `sf.evt.>`.
pub const EVENTS: &str = "sf.evt.>";
/// Request/reply: read a range of the log ([`crate::ReadRequest`] → [`crate::ReadReply`]).
pub const LOG_READ: &str = "sf.log.read";
/// Published by the node on start and every second: the last durable position (a decimal
/// number as the payload), so idle followers notice events they missed.
pub const LOG_HEAD: &str = "sf.log.head";

/// Header carrying an event's global position on its event subject.
pub const HEADER_POSITION: &str = "Sf-Position";
/// Header carrying an event's stream version on its event subject.
pub const HEADER_STREAM_VERSION: &str = "Sf-Stream-Version";

/// The subject an event of `event_type` on `stream` is published on.
///
/// ```
/// assert_eq!(
///     streamfleet_bus_schemas::subjects::event("session-7", "HeartbeatReceived"),
///     "sf.evt.session.HeartbeatReceived"
/// );
/// ```
pub fn event(stream: &str, event_type: &str) -> String {
    format!("sf.evt.{}.{}", crate::category_of(stream), event_type)
}
