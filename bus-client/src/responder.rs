//! Answering requests: where an answer may go.
//!
//! Invariant: a responder (the node, a worker's service, a host agent) publishes an answer only
//! to a reply inbox ([`streamfleet_bus_schemas::subjects::is_inbox`]). The requester chooses
//! the reply subject, and the responder publishes there with its own rights — which include
//! subjects the requester may not publish on (a host's terminate subject, an event subject). A
//! request naming any other reply subject is logged and not answered.

use async_nats::{Message, Subject};
use streamfleet_bus_schemas::subjects::is_inbox;

/// The subject to answer `msg` on: its reply subject when that is an inbox; `None` when it has
/// none or names something else (logged as a warning).
pub fn reply_inbox(msg: &Message) -> Option<Subject> {
    let reply = msg.reply.as_ref()?;
    if is_inbox(reply) {
        Some(reply.clone())
    } else {
        tracing::warn!(
            subject = %msg.subject,
            reply = %reply,
            "request names a reply subject that is not an inbox; not answered"
        );
        None
    }
}
