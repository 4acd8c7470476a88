//! Request/reply services beside the command API: tokens for entitlement services, redemption
//! for clients, and what the control plane asks of host agents. Every reply is either the
//! answer or a [`ServiceError`] with a stable `code` a client can show.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Secret;
use crate::ids::{AppId, GroupId, HostId, RegionId, SessionId, TokenId, UserId};

/// A failed service request. `code` is stable; `message` says it in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceError {
    /// `malformed`, `forged`, `unknown`, `expired`, `already_used`, `ip_mismatch`, `invalid`,
    /// `no_capacity`, `unavailable`, `unauthorized`, `not_found`, `unknown_app` (a token for an
    /// app that was never registered).
    pub code: String,
    /// What went wrong.
    pub message: String,
}

impl ServiceError {
    /// An error.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ServiceError {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// Ask for a session token (entitlement service → token service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The app.
    pub app_id: AppId,
    /// The entitled user.
    pub user_id: UserId,
    /// Bind the token to this client IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// Place the session with the others of this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupId>,
    /// Lifetime, seconds (default 60, at most 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u32>,
}

/// A minted token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokenGrant {
    /// The token to hand to the client (secret; only its hash is recorded).
    pub token: Secret,
    /// Its id.
    pub token_id: TokenId,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// The token service's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TokenReply {
    /// Issued.
    Issued(TokenGrant),
    /// Refused.
    Error(ServiceError),
}

/// Redeem a token (client → redemption node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Redemption {
    /// The token.
    pub token: Secret,
    /// The client's IP.
    pub client_ip: String,
    /// Latencies the client measured to regions, ms (optional; preferred over location).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latencies_ms: Vec<RegionLatency>,
}

/// A redemption at the front door (`POST /redeem` over HTTPS on the redemption node): the
/// client's address is the connection's own (or a trusted proxy's `X-Forwarded-For`), never a
/// field the client fills in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DoorRedemption {
    /// The token.
    pub token: Secret,
    /// Latencies the client measured to regions, ms (optional; preferred over location).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latencies_ms: Vec<RegionLatency>,
}

/// A measured latency to a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionLatency {
    /// The region.
    pub region: RegionId,
    /// Round trip, ms.
    pub ms: u32,
}

/// A region in a redemption's order of preference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RankedRegion {
    /// The region.
    pub region: RegionId,
    /// Why it ranks there.
    pub reason: String,
}

/// A redemption whose token signature checked out, routed to a region's host-management
/// service (redemption node → HMS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionRedemption {
    /// The token's id.
    pub token_id: TokenId,
    /// Hex BLAKE3 of the token.
    pub token_hash: String,
    /// The client's IP.
    pub client_ip: String,
    /// Every region, nearest first; the first is the one routed to.
    pub regions: Vec<RankedRegion>,
}

/// Where the client's session runs, and how to get in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionGrant {
    /// The session.
    pub session_id: SessionId,
    /// Its region.
    pub region: RegionId,
    /// Its host.
    pub host_id: HostId,
    /// Where to connect.
    pub address: String,
    /// The host's control (signalling) port.
    pub control_port: u16,
    /// Whether the control port speaks HTTPS (verify it against the installation's authority):
    /// the WHEP endpoint is `https://address:control_port/sessions/<id>/whep`, else `http://`.
    #[serde(default)]
    pub control_tls: bool,
    /// Session credentials: present them as a bearer token to the host. Never logged.
    pub credentials: Secret,
    /// Why the redemption went to the region it went to.
    pub route_reason: String,
    /// Why this host.
    pub placement_reason: String,
    /// The previous session whose saved state was handed over, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<SessionId>,
}

impl SessionGrant {
    /// The session's WHEP endpoint on its host: `https://address:port/sessions/<id>/whep` (or
    /// `http://` when the host's control port is plain).
    ///
    /// ```
    /// # use streamfleet_bus_schemas::services::SessionGrant;
    /// let grant = SessionGrant {
    ///     session_id: "s1".into(), region: "eu".into(), host_id: "h1".into(),
    ///     address: "10.0.0.2".into(), control_port: 7000, control_tls: true,
    ///     credentials: "c".into(), route_reason: String::new(), placement_reason: String::new(),
    ///     restored_from: None,
    /// };
    /// assert_eq!(grant.whep_url(), "https://10.0.0.2:7000/sessions/s1/whep");
    /// ```
    pub fn whep_url(&self) -> String {
        format!(
            "{}://{}:{}/sessions/{}/whep",
            if self.control_tls { "https" } else { "http" },
            self.address,
            self.control_port,
            self.session_id
        )
    }
}

/// The answer to a redemption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RedemptionReply {
    /// Provisioned.
    Provisioned(SessionGrant),
    /// Refused, with a reason the client can show.
    Error(ServiceError),
}

/// Start a session on a host (HMS → host agent). The agent answers [`AgentReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSession {
    /// The session.
    pub session_id: SessionId,
    /// The app.
    pub app_id: AppId,
    /// The user.
    pub user_id: UserId,
    /// The credentials the client will present.
    pub credentials: Secret,
    /// State saved by the user's previous session of this app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_state: Option<String>,
}

/// Stop one session on a host (stray or lost session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopSession {
    /// The session.
    pub session_id: SessionId,
    /// Why.
    pub reason: String,
}

/// An urgent version's termination notice: save state and end sessions before the deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TerminationNotice {
    /// When the host is terminated.
    pub deadline: DateTime<Utc>,
    /// The version replacing it.
    pub new_version: String,
}

/// What a host actually runs, as its agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HostActualState {
    /// The host.
    pub host_id: HostId,
    /// The sessions it runs.
    pub sessions: Vec<SessionId>,
}

/// Make a simulated host's local state diverge from the log, as a real host's can (a stray
/// process, a session that died silently): for exercising reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InjectFault {
    /// Start running (and reporting) a session the control plane never provisioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stray_session: Option<SessionId>,
    /// Silently drop a session the host runs (no end reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_session: Option<SessionId>,
}

/// A host agent's answer to any request addressed to one of its hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AgentReply {
    /// Done.
    Ok {
        /// The host's actual sessions after the request.
        state: HostActualState,
    },
    /// Refused.
    Error(ServiceError),
}

macro_rules! error_reply {
    ($($reply:ident),+) => {$(
        impl From<ServiceError> for $reply {
            fn from(e: ServiceError) -> Self {
                $reply::Error(e)
            }
        }
    )+};
}

error_reply!(TokenReply, RedemptionReply, AgentReply);
