//! Following every event over NATS: catch up from the log, then live, filling gaps.
//!
//! Invariant: [`Follower::next`] yields positions `from, from+1, from+2, …` — in order, none
//! skipped, none twice — whatever NATS drops, however late the follower starts, and across
//! reconnects and node restarts. Live messages are only a hint of what exists; any gap is read
//! from the log through the node's read API.

use async_nats::{Client, Message, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::time::Duration;
use streamfleet_bus_schemas::{EventEnvelope, ReadRequest, subjects};

/// Events asked for per catch-up read.
const CATCH_UP_BATCH: u32 = 2000;
/// Wait between read attempts while the node does not answer.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// One event as followed: its position and its CloudEvents JSON.
#[derive(Debug, Clone)]
pub struct FollowedEvent {
    /// Global position.
    pub position: u64,
    /// The event's JSON ([`EventEnvelope`]).
    pub json: Bytes,
}

impl FollowedEvent {
    /// Decodes the envelope.
    pub fn envelope(&self) -> Result<EventEnvelope, serde_json::Error> {
        serde_json::from_slice(&self.json)
    }
}

/// Why following stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// Subscribing failed (e.g. refused by the server's permissions).
    #[error("cannot subscribe: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// The node answered a read with an error.
    #[error("log read refused ({code}): {detail}")]
    Read {
        /// The reply's code.
        code: String,
        /// Its detail.
        detail: String,
    },
    /// A reply or event that is not what the contract says.
    #[error("unreadable message from the node: {0}")]
    Protocol(String),
    /// The NATS connection is closed for good.
    #[error("NATS subscription ended")]
    Closed,
    /// A read got no answer (no node, timeout, permission refused).
    #[error("log read not answered: {0}")]
    NoAnswer(String),
}

/// Asks the node for the log's head: the last durable position (0 for an empty log).
///
/// ```no_run
/// # async fn demo(client: async_nats::Client) -> Result<(), streamfleet_bus_client::FollowError> {
/// let head = streamfleet_bus_client::log_head(&client).await?;
/// # Ok(()) }
/// ```
pub async fn log_head(client: &Client) -> Result<u64, FollowError> {
    crate::LogReader::new(client.clone())
        .head()
        .await
        .map_err(|e| match e {
            crate::ReadError::NoAnswer(detail) => FollowError::NoAnswer(detail),
            crate::ReadError::Refused { code, detail } => FollowError::Read { code, detail },
            crate::ReadError::Protocol(detail) => FollowError::Protocol(detail),
        })
}

/// Follows the whole log from a position.
pub struct Follower {
    client: Client,
    /// Live events: every event subject, or only those the follower was started on.
    live: SelectAll<BoxStream<'static, Message>>,
    heads: Subscriber,
    next: u64,
    pending: VecDeque<FollowedEvent>,
    catching_up: bool,
    /// The next catch-up page, already asked for while the current one is consumed.
    prefetch: Option<(u64, tokio::task::JoinHandle<Result<Page, FollowError>>)>,
    /// Messages on event subjects that were not events (passed over).
    malformed: u64,
}

/// One page of a catch-up read: its events and where the next page starts, if any.
struct Page {
    events: Vec<FollowedEvent>,
    next: Option<u64>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Some((_, handle)) = self.prefetch.take() {
            handle.abort();
        }
    }
}

/// A [`streamfleet_bus_schemas::ReadReply`] whose events stay raw JSON (serde cannot keep raw
/// values inside an internally tagged enum, so the tag is a plain field here).
#[derive(Deserialize)]
struct RawReadReply<'a> {
    status: String,
    #[serde(borrow, default)]
    events: Vec<&'a RawValue>,
    #[serde(default)]
    next: Option<u64>,
    #[serde(default)]
    code: String,
    #[serde(default)]
    detail: String,
}

#[derive(Deserialize)]
struct PositionOnly {
    position: u64,
}

impl Follower {
    /// Starts following at `from` (1: everything). Subscribes to live events first, so nothing
    /// published while catching up is missed.
    pub async fn start(client: Client, from: u64) -> Result<Follower, FollowError> {
        Follower::start_on(client, from, &[subjects::EVENTS]).await
    }

    /// Like [`Follower::start`], but subscribes live only to `live_subjects` (e.g.
    /// `sf.evt.instance.>`, for a principal that may subscribe to nothing else). It still
    /// yields every position from the log: a live event past the next position, or a head
    /// past it, is the signal to read the log up to it, so an event of those subjects arrives
    /// at once and the others within a head's interval.
    pub async fn start_on(
        client: Client,
        from: u64,
        live_subjects: &[&str],
    ) -> Result<Follower, FollowError> {
        let mut live = SelectAll::new();
        for subject in live_subjects {
            live.push(client.subscribe(subject.to_string()).await?.boxed());
        }
        let heads = client.subscribe(subjects::LOG_HEAD).await?;
        // Make sure the server has the subscriptions before the first read; if the flush fails
        // the connection is down and the reads will wait for it anyway.
        let _ = client.flush().await;
        Ok(Follower {
            client,
            live,
            heads,
            next: from.max(1),
            pending: VecDeque::new(),
            catching_up: true,
            prefetch: None,
            malformed: 0,
        })
    }

    /// How many messages on event subjects were not events (no position header) and were
    /// passed over: a sign that something other than the node publishes there.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// The position the next event will have.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next event in global order; waits for it.
    pub async fn next(&mut self) -> Result<FollowedEvent, FollowError> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                if e.position == self.next {
                    self.next += 1;
                    return Ok(e);
                }
                if e.position > self.next {
                    // Not contiguous: drop what is buffered and read from the log again.
                    self.pending.clear();
                    self.catching_up = true;
                }
                continue;
            }
            if self.catching_up {
                let page = match self.prefetch.take() {
                    Some((from, handle)) if from == self.next => {
                        handle.await.map_err(|_| FollowError::Closed)??
                    }
                    Some((_, handle)) => {
                        handle.abort();
                        fetch(&self.client, self.next).await?
                    }
                    None => fetch(&self.client, self.next).await?,
                };
                if page.events.is_empty() {
                    self.catching_up = false;
                }
                if let Some(from) = page.next {
                    let client = self.client.clone();
                    self.prefetch = Some((
                        from,
                        tokio::spawn(async move { fetch(&client, from).await }),
                    ));
                }
                self.pending.extend(page.events);
                continue;
            }
            tokio::select! {
                msg = self.live.next() => {
                    let msg = msg.ok_or(FollowError::Closed)?;
                    let position = msg
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(subjects::HEADER_POSITION))
                        .and_then(|v| v.as_str().parse::<u64>().ok());
                    // Not an event of the node's (something else published on an event
                    // subject): reported and passed over; the log, not this message, says
                    // what comes next.
                    let Some(position) = position else {
                        self.malformed += 1;
                        tracing::warn!(subject = %msg.subject, bytes = msg.payload.len(), "message on an event subject without {}; ignored, reading the log", subjects::HEADER_POSITION);
                        self.catching_up = true;
                        continue;
                    };
                    if position == self.next {
                        self.next += 1;
                        return Ok(FollowedEvent { position, json: msg.payload });
                    }
                    if position > self.next {
                        tracing::debug!(expected = self.next, got = position, "gap in live events; reading the log");
                        self.catching_up = true;
                    }
                }
                msg = self.heads.next() => {
                    let msg = msg.ok_or(FollowError::Closed)?;
                    let head = std::str::from_utf8(&msg.payload).ok().and_then(|s| s.trim().parse::<u64>().ok());
                    if head.is_some_and(|h| h >= self.next) {
                        self.catching_up = true;
                    }
                }
            }
        }
    }
}

/// Reads a page of the log from `from`, retrying while the node does not answer.
async fn fetch(client: &Client, from: u64) -> Result<Page, FollowError> {
    let req = serde_json::to_vec(&ReadRequest::all(from, CATCH_UP_BATCH))
        .map_err(|e| FollowError::Protocol(e.to_string()))?;
    loop {
        match client.request(subjects::LOG_READ, req.clone().into()).await {
            Ok(msg) => return parse_batch(&msg.payload),
            Err(e) => {
                tracing::debug!(error = %e, "log read got no answer; retrying");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

fn parse_batch(payload: &[u8]) -> Result<Page, FollowError> {
    let reply: RawReadReply =
        serde_json::from_slice(payload).map_err(|e| FollowError::Protocol(e.to_string()))?;
    if reply.status != "ok" {
        return Err(FollowError::Read {
            code: reply.code,
            detail: reply.detail,
        });
    }
    let events = reply
        .events
        .into_iter()
        .map(|raw| {
            let p: PositionOnly = serde_json::from_str(raw.get())
                .map_err(|e| FollowError::Protocol(e.to_string()))?;
            Ok(FollowedEvent {
                position: p.position,
                json: Bytes::copy_from_slice(raw.get().as_bytes()),
            })
        })
        .collect::<Result<_, FollowError>>()?;
    Ok(Page {
        events,
        next: reply.next,
    })
}
