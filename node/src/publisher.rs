//! Publishing events after their commit, and announcing the head.
//!
//! Invariant: events are published in global order, each only after it is durable. Publication
//! is at most once (core NATS); followers fill any gap from the log, and the head announcement
//! every [`HEAD_INTERVAL`] lets an idle follower notice events it missed.

use async_nats::{Client, HeaderMap};
use serde::Deserialize;
use std::time::Duration;
use streamfleet_bus_schemas::subjects;
use streamfleet_eventlog::{EventLog, StoredEvent};

/// The `source` of every event the node records.
pub const EVENT_SOURCE: &str = "streamfleet/node";
/// How often the node announces its head on `sf.log.head`.
pub const HEAD_INTERVAL: Duration = Duration::from_secs(1);
/// How long the publisher waits before reading again after a failed read.
const READ_RETRY: Duration = Duration::from_millis(200);

#[derive(Deserialize)]
struct Route<'a> {
    #[serde(rename = "type", borrow)]
    event_type: &'a str,
    #[serde(borrow)]
    subject: &'a str,
}

/// The subject and headers an event is published with.
pub fn route(e: &StoredEvent) -> Result<(String, HeaderMap), serde_json::Error> {
    let r: Route = serde_json::from_slice(&e.body)?;
    let mut headers = HeaderMap::new();
    headers.insert(subjects::HEADER_POSITION, e.position.to_string().as_str());
    headers.insert(
        subjects::HEADER_STREAM_VERSION,
        e.stream_version.to_string().as_str(),
    );
    Ok((subjects::event(r.subject, r.event_type), headers))
}

/// Publishes every event from the current head on, forever (until the log closes).
pub async fn publish_events(client: Client, log: EventLog) {
    let mut sub = log.subscribe(log.head() + 1);
    loop {
        let e = match sub.next().await {
            Ok(e) => e,
            Err(streamfleet_eventlog::ReadError::Closed) => {
                tracing::info!("event publisher stops: the log closed");
                return;
            }
            Err(err) => {
                // A storage failure (the log reopening after a full disk): the subscription is
                // where it was, so the same event is read again.
                tracing::warn!(error = %err, "event publisher cannot read the log; retrying");
                tokio::time::sleep(READ_RETRY).await;
                continue;
            }
        };
        match route(&e) {
            Ok((subject, headers)) => {
                if let Err(err) = client
                    .publish_with_headers(subject, headers, e.envelope_json().into())
                    .await
                {
                    // Followers will read it from the log.
                    tracing::warn!(position = e.position, error = %err, "event not published");
                }
            }
            Err(err) => {
                tracing::error!(position = e.position, error = %err, "stored event has no routable type/subject")
            }
        }
    }
}

/// Announces the head on start and every [`HEAD_INTERVAL`].
pub async fn announce_head(client: Client, log: EventLog) {
    let mut tick = tokio::time::interval(HEAD_INTERVAL);
    loop {
        tick.tick().await;
        if let Err(err) = client
            .publish(subjects::LOG_HEAD, log.head().to_string().into())
            .await
        {
            tracing::warn!(error = %err, "head not announced");
        }
    }
}
