//! Tokens: issued once, expiring, holding only the token's hash; redeemed at most once, before
//! expiry, with the very token issued, from the bound client IP.

use crate::{Context, Rejection, non_empty};
use chrono::Duration;
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::ids::SessionId;
use streamfleet_bus_schemas::payloads::{IssueToken, RedeemToken, TokenIssued, TokenRedeemed};

/// Shortest token lifetime, seconds.
pub const MIN_TTL_SECONDS: u32 = 1;
/// Longest token lifetime, seconds.
pub const MAX_TTL_SECONDS: u32 = 3600;
/// Lifetime when the entitlement service asks for none, seconds.
pub const DEFAULT_TTL_SECONDS: u32 = 60;

/// A token's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenState {
    /// The issue event.
    pub issued: TokenIssued,
    /// The session it was redeemed for, once redeemed.
    pub redeemed_for: Option<SessionId>,
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
    hex_hash("token_hash", &c.token_hash)?;
    Ok(vec![Event::TokenIssued(TokenIssued {
        token_id: c.token_id.clone(),
        app_id: c.app_id.clone(),
        user_id: c.user_id.clone(),
        client_ip: c.client_ip.clone(),
        group_id: c.group_id.clone(),
        token_hash: c.token_hash.to_ascii_lowercase(),
        expires_at: ctx.now + Duration::seconds(i64::from(c.ttl_seconds)),
    })])
}

pub(crate) fn decide_redeem(
    c: &RedeemToken,
    state: Option<&TokenState>,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    let Some(token) = state else {
        return Err(Rejection::TokenUnknown {
            token_id: c.token_id.clone(),
        });
    };
    let issued = &token.issued;
    if !issued.token_hash.eq_ignore_ascii_case(&c.token_hash) {
        return Err(Rejection::TokenForged {
            token_id: c.token_id.clone(),
        });
    }
    if let Some(session_id) = &token.redeemed_for {
        return Err(Rejection::TokenAlreadyRedeemed {
            token_id: c.token_id.clone(),
            session_id: session_id.clone(),
        });
    }
    if ctx.now >= issued.expires_at {
        return Err(Rejection::TokenExpired {
            token_id: c.token_id.clone(),
            expired_at: issued.expires_at,
        });
    }
    if let Some(bound) = &issued.client_ip
        && bound != &c.client_ip
    {
        return Err(Rejection::ClientIpMismatch {
            bound: bound.clone(),
            presented: c.client_ip.clone(),
        });
    }
    non_empty("session_id", &c.session_id)?;
    non_empty("region", &c.region)?;
    Ok(vec![Event::TokenRedeemed(TokenRedeemed {
        token_id: c.token_id.clone(),
        session_id: c.session_id.clone(),
        app_id: issued.app_id.clone(),
        user_id: issued.user_id.clone(),
        group_id: issued.group_id.clone(),
        client_ip: c.client_ip.clone(),
        region: c.region.clone(),
        route_reason: c.route_reason.clone(),
    })])
}

pub(crate) fn evolve_issued(e: &TokenIssued) -> TokenState {
    TokenState {
        issued: e.clone(),
        redeemed_for: None,
    }
}

pub(crate) fn evolve_redeemed(mut s: TokenState, e: &TokenRedeemed) -> TokenState {
    s.redeemed_for = Some(e.session_id.clone());
    s
}

/// Checks a hex 256-bit hash field.
pub(crate) fn hex_hash(field: &'static str, value: &str) -> Result<(), Rejection> {
    if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Rejection::InvalidField {
            field,
            detail: "must be 64 hex digits".into(),
        });
    }
    Ok(())
}
