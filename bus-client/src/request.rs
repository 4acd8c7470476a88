//! Service requests: a JSON body out on a subject, a typed JSON answer back, within a deadline.
//!
//! Used for everything on the bus that is not a command or a log read: the token service,
//! redemption, a region's host-management service, a host agent's verbs.

use async_nats::Client;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request could not be encoded.
    #[error("{subject}: cannot encode the request: {detail}")]
    Encode {
        /// Where it was going.
        subject: String,
        /// The encoder's message.
        detail: String,
    },
    /// NATS delivered no answer (no responder, timeout, permission refused).
    #[error("{subject}: {detail}")]
    NoAnswer {
        /// Where it was sent.
        subject: String,
        /// NATS's message.
        detail: String,
    },
    /// The answer is not of the expected shape.
    #[error("{subject}: unreadable answer: {detail}")]
    Unreadable {
        /// Where it was sent.
        subject: String,
        /// The decoder's message.
        detail: String,
    },
}

/// Sends `body` (already JSON) on `subject` and decodes the answer as `T`; `timeout` of `None`
/// is the connection's default.
pub async fn ask_raw<T: DeserializeOwned>(
    client: &Client,
    subject: &str,
    body: Vec<u8>,
    timeout: Option<Duration>,
) -> Result<T, RequestError> {
    let request = async_nats::Request::new()
        .payload(body.into())
        .timeout(timeout);
    let msg = client
        .send_request(subject.to_string(), request)
        .await
        .map_err(|e| RequestError::NoAnswer {
            subject: subject.to_string(),
            detail: e.to_string(),
        })?;
    serde_json::from_slice(&msg.payload).map_err(|e| RequestError::Unreadable {
        subject: subject.to_string(),
        detail: e.to_string(),
    })
}

/// Sends `request` as JSON on `subject` and decodes the answer as `T`.
///
/// ```no_run
/// # async fn demo(client: async_nats::Client) -> Result<(), streamfleet_bus_client::RequestError> {
/// use streamfleet_bus_schemas::{services::{TokenReply, TokenRequest}, subjects};
/// let request = TokenRequest { app_id: "chess".into(), user_id: "u1".into(), client_ip: Some("10.1.2.3".into()), group_id: None, ttl_seconds: None };
/// let reply: TokenReply = streamfleet_bus_client::ask(&client, subjects::TOKEN_REQUEST, &request, None).await?;
/// # Ok(()) }
/// ```
pub async fn ask<Q: Serialize, T: DeserializeOwned>(
    client: &Client,
    subject: &str,
    request: &Q,
    timeout: Option<Duration>,
) -> Result<T, RequestError> {
    let body = serde_json::to_vec(request).map_err(|e| RequestError::Encode {
        subject: subject.to_string(),
        detail: e.to_string(),
    })?;
    ask_raw(client, subject, body, timeout).await
}
