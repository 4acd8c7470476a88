//! The node's health on `sf.log.health`: serving, or degraded and why (a full disk).
//!
//! Invariant: the answer is the log's own health at the moment of asking, never a cached guess.
//! Changes are logged where they happen, by the log's writer.

use async_nats::Client;
use futures::StreamExt;
use streamfleet_bus_schemas::{HealthStatus, NodeHealth};
use streamfleet_eventlog::{EventLog, Health};

/// The log's health as the node reports it.
pub fn of(log: &EventLog) -> NodeHealth {
    let (status, problem) = match log.health() {
        Health::Serving => (HealthStatus::Serving, None),
        Health::StorageFull { detail } => (
            HealthStatus::Degraded,
            Some(format!("storage full ({detail})")),
        ),
        Health::StorageFailing { detail } => (
            HealthStatus::Degraded,
            Some(format!("storage failing ({detail})")),
        ),
    };
    NodeHealth {
        status,
        problem,
        head: log.head(),
    }
}

/// Answers every request on `subscriber` with [`of`].
pub async fn serve(client: Client, mut requests: async_nats::Subscriber, log: EventLog) {
    while let Some(msg) = requests.next().await {
        let Some(to) = streamfleet_bus_client::reply_inbox(&msg) else {
            continue;
        };
        match serde_json::to_vec(&of(&log)) {
            Ok(body) => {
                if let Err(e) = client.publish(to, body.into()).await {
                    tracing::warn!(error = %e, "health reply not sent");
                }
            }
            Err(e) => tracing::error!(error = %e, "health not serializable"),
        }
    }
}
