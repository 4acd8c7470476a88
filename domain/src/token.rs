//! Tokens: issued once, expiring, holding only the hash of their secret.

use crate::{Context, Rejection, non_empty};
use chrono::{DateTime, Duration, Utc};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::payloads::{IssueToken, TokenIssued};

/// Shortest token lifetime, seconds.
pub const MIN_TTL_SECONDS: u32 = 1;
/// Longest token lifetime, seconds.
pub const MAX_TTL_SECONDS: u32 = 3600;

/// A token's state.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenState {
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

pub(crate) fn decide_issue(
    c: &IssueToken,
    state: Option<&TokenState>,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    if state.is_some() {
        return Err(Rejection::TokenAlreadyIssued {
            token_id: c.token_id.clone(),
        });
    }
    non_empty("token_id", &c.token_id)?;
    non_empty("app_id", &c.app_id)?;
    non_empty("user_id", &c.user_id)?;
    if !(MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&c.ttl_seconds) {
        return Err(Rejection::TtlOutOfRange {
            ttl_seconds: c.ttl_seconds,
            min: MIN_TTL_SECONDS,
            max: MAX_TTL_SECONDS,
        });
    }
    if c.secret_sha256.len() != 64 || !c.secret_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Rejection::InvalidField {
            field: "secret_sha256",
            detail: "must be 64 hex digits".into(),
        });
    }
    Ok(vec![Event::TokenIssued(TokenIssued {
        token_id: c.token_id.clone(),
        app_id: c.app_id.clone(),
        user_id: c.user_id.clone(),
        client_ip: c.client_ip.clone(),
        secret_sha256: c.secret_sha256.to_ascii_lowercase(),
        expires_at: ctx.now + Duration::seconds(i64::from(c.ttl_seconds)),
    })])
}

pub(crate) fn evolve(e: &TokenIssued) -> TokenState {
    TokenState {
        expires_at: e.expires_at,
    }
}
