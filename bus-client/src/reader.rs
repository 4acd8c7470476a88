//! Reading the log through the node's read API (`sf.log.read`).
//!
//! Invariant: a read is answered from the durable log only; `head` is the last durable
//! position when the node served it, so everything at or below it is readable.

use async_nats::Client;
use streamfleet_bus_schemas::{EventEnvelope, ReadReply, ReadRequest, subjects};

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The read got no answer (no node, timeout, permission refused).
    #[error("log read not answered: {0}")]
    NoAnswer(String),
    /// The node refused it.
    #[error("log read refused ({code}): {detail}")]
    Refused {
        /// `malformed_request`, `invalid_range` or `unavailable`.
        code: String,
        /// What, for people.
        detail: String,
    },
    /// The answer is not what the contract says.
    #[error("unreadable log read reply: {0}")]
    Protocol(String),
}

/// One page of a read.
#[derive(Debug, Clone)]
pub struct Page {
    /// The last durable position when the read was served.
    pub head: u64,
    /// Where to continue, or none when the range is exhausted.
    pub next: Option<u64>,
    /// The events, in the order asked.
    pub events: Vec<EventEnvelope>,
}

/// Reads the log over NATS.
///
/// ```no_run
/// # async fn demo(client: async_nats::Client) -> Result<(), streamfleet_bus_client::ReadError> {
/// let reader = streamfleet_bus_client::LogReader::new(client);
/// let head = reader.head().await?;
/// let events = reader.stream("token-t1").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LogReader {
    client: Client,
}

/// Events asked for per page by [`LogReader::stream`].
const PAGE: u32 = 1000;

impl LogReader {
    /// A reader on `client`'s connection.
    pub fn new(client: Client) -> Self {
        LogReader { client }
    }

    /// One page, as asked.
    pub async fn read(&self, request: &ReadRequest) -> Result<Page, ReadError> {
        let body = serde_json::to_vec(request).map_err(|e| ReadError::Protocol(e.to_string()))?;
        let msg = self
            .client
            .request(subjects::LOG_READ, body.into())
            .await
            .map_err(|e| ReadError::NoAnswer(e.to_string()))?;
        match serde_json::from_slice::<ReadReply>(&msg.payload) {
            Ok(ReadReply::Ok { head, next, events }) => Ok(Page { head, next, events }),
            Ok(ReadReply::Error { code, detail }) => Err(ReadError::Refused { code, detail }),
            Err(e) => Err(ReadError::Protocol(e.to_string())),
        }
    }

    /// The log's head: the last durable position (0 for an empty log).
    pub async fn head(&self) -> Result<u64, ReadError> {
        Ok(self.read(&ReadRequest::all(1, 1)).await?.head)
    }

    /// Every event of one stream, oldest first.
    pub async fn stream(&self, stream: &str) -> Result<Vec<EventEnvelope>, ReadError> {
        let mut from = 1;
        let mut all = Vec::new();
        loop {
            let page = self
                .read(&ReadRequest {
                    stream: Some(stream.to_string()),
                    ..ReadRequest::all(from, PAGE)
                })
                .await?;
            all.extend(page.events);
            match page.next {
                Some(n) => from = n,
                None => return Ok(all),
            }
        }
    }
}
