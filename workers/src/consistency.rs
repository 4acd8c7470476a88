//! Resolving a discrepancy between a heartbeat report and the log: open it, ask the host what
//! it actually runs, correct whichever side is wrong, record the resolution.
//!
//! Invariant: every discrepancy opened here is resolved or left open for a retry; the log is
//! corrected only by commands (a session the host does not run is ended `reconciled`), the host
//! only by requests (a session the log does not place there is stopped on the host).

use crate::fleet::Finding;
use crate::{Refused, Shared};
use std::sync::Arc;
use std::time::Duration;
use streamfleet_bus_schemas::ids::HostId;
use streamfleet_bus_schemas::payloads::{
    DiscrepancyKind, EndSession, OpenDiscrepancy, ResolveDiscrepancy, SessionEndReason,
};
use streamfleet_bus_schemas::services::{AgentReply, StopSession};
use streamfleet_bus_schemas::{Command, subjects};

const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens, investigates and resolves one finding from the report at `position`.
pub(crate) async fn resolve(shared: Arc<Shared>, host_id: HostId, position: u64, finding: Finding) {
    let discrepancy_id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("{position}/{}/{:?}", finding.session_id, finding.kind).as_bytes(),
    )
    .simple()
    .to_string();
    let open = Command::OpenDiscrepancy(OpenDiscrepancy {
        discrepancy_id: discrepancy_id.clone(),
        host_id: host_id.clone(),
        session_id: finding.session_id.clone(),
        kind: finding.kind,
        detail: finding.detail.clone(),
    });
    if let Err(refused) = shared
        .send_once(&format!("open/{discrepancy_id}"), open)
        .await
    {
        tracing::warn!(%discrepancy_id, %refused, "could not open a discrepancy");
        return;
    }
    tracing::info!(%discrepancy_id, host = %host_id, session = %finding.session_id, kind = ?finding.kind, "discrepancy opened");
    let actual = shared
        .ask::<AgentReply>(subjects::host(&host_id, "state"), Vec::new(), ASK_TIMEOUT)
        .await;
    let runs = match &actual {
        Ok(AgentReply::Ok { state }) => Some(state.sessions.contains(&finding.session_id)),
        Ok(AgentReply::Error(e)) => {
            tracing::warn!(host = %host_id, code = %e.code, "host refused a state request");
            None
        }
        Err(error) => {
            tracing::warn!(host = %host_id, %error, "host did not answer a state request");
            None
        }
    };
    let resolution = match (finding.kind, runs) {
        (_, None) => "host did not answer; left to the liveness keeper".to_string(),
        (DiscrepancyKind::MissingFromReport, Some(true)) => {
            "host runs the session; its report missed it; nothing to correct".to_string()
        }
        (DiscrepancyKind::MissingFromReport, Some(false)) => {
            let end = Command::EndSession(EndSession {
                session_id: finding.session_id.clone(),
                host_id: host_id.clone(),
                reason: SessionEndReason::Reconciled,
                saved_state: None,
            });
            match shared
                .send_once(&format!("reconcile/{discrepancy_id}"), end)
                .await
            {
                Ok(_) => {
                    "host does not run the session: recorded it as ended (reconciled)".to_string()
                }
                Err(Refused::Rejected { rule, .. }) if rule == "session_already_ended" => {
                    "host does not run the session, which had meanwhile ended".to_string()
                }
                Err(refused) => {
                    format!("host does not run the session; ending it failed: {refused}")
                }
            }
        }
        (_, Some(true)) => {
            let stop = StopSession {
                session_id: finding.session_id.clone(),
                reason: finding.detail.clone(),
            };
            let body = serde_json::to_vec(&stop).unwrap_or_default();
            match shared
                .ask::<AgentReply>(subjects::host(&host_id, "stop-session"), body, ASK_TIMEOUT)
                .await
            {
                Ok(AgentReply::Ok { .. }) => {
                    "host ran a session the log does not place there: stopped it on the host"
                        .to_string()
                }
                Ok(AgentReply::Error(e)) => {
                    format!("host ran the session and refused to stop it: {}", e.message)
                }
                Err(error) => format!("host ran the session; stopping it failed: {error}"),
            }
        }
        (_, Some(false)) => "host no longer runs the session; nothing to correct".to_string(),
    };
    let resolve = Command::ResolveDiscrepancy(ResolveDiscrepancy {
        discrepancy_id: discrepancy_id.clone(),
        host_runs_session: runs.unwrap_or(false),
        resolution: resolution.clone(),
    });
    match shared
        .send_once(&format!("resolve/{discrepancy_id}"), resolve)
        .await
    {
        Ok(_) => tracing::info!(%discrepancy_id, %resolution, "discrepancy resolved"),
        Err(refused) => tracing::warn!(%discrepancy_id, %refused, "could not record a resolution"),
    }
}
