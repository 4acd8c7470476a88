//! Sessions: who, what, where and why, from redemption to end.
//!
//! Invariant: a row is keyed by session id and joins TokenRedeemed (route reason), which comes
//! first, with SessionProvisioned and SessionEnded; the credential hash is never stored.

use super::{View, host_port};
use crate::pb::{SessionRow, SessionStatus};
use crate::rows::{StoredTable, Table, timestamp};
use crate::views::consistency::serde_name;
use chrono::{DateTime, Utc};
use streamfleet_bus_schemas::Event;

/// Session rows.
#[derive(Debug, Clone)]
pub struct SessionsView {
    /// By session id.
    pub sessions: Table<SessionRow>,
}

impl Default for SessionsView {
    fn default() -> Self {
        SessionsView {
            sessions: Table::new("sessions"),
        }
    }
}

impl View for SessionsView {
    const NAME: &'static str = "sessions";

    fn apply(&mut self, _position: u64, time: DateTime<Utc>, event: &Event) {
        let at = Some(timestamp(time));
        match event {
            Event::TokenRedeemed(e) => self.sessions.upsert(&e.session_id, |s| {
                s.session_id = e.session_id.to_string();
                s.token_id = e.token_id.to_string();
                s.user_id = e.user_id.to_string();
                s.app_id = e.app_id.to_string();
                s.group_id = e.group_id.as_deref().unwrap_or_default().to_string();
                s.region = e.region.to_string();
                s.route_reason.clone_from(&e.route_reason);
                s.redeemed_at = at;
                if s.status() == SessionStatus::Unspecified {
                    s.set_status(SessionStatus::Redeemed);
                }
            }),
            Event::SessionProvisioned(e) => self.sessions.upsert(&e.session_id, |s| {
                s.session_id = e.session_id.to_string();
                s.token_id = e.token_id.to_string();
                s.user_id = e.user_id.to_string();
                s.app_id = e.app_id.to_string();
                s.group_id = e.group_id.as_deref().unwrap_or_default().to_string();
                s.region = e.region.to_string();
                s.host_id = e.host_id.to_string();
                s.connect_to = host_port(&e.address, e.control_port);
                s.placement_reason.clone_from(&e.placement_reason);
                s.restored_from = e.restored_from.as_deref().unwrap_or_default().to_string();
                s.provisioned_at = at;
                if s.status() != SessionStatus::Ended {
                    s.set_status(SessionStatus::Active);
                }
            }),
            Event::SessionEnded(e) => self.sessions.upsert(&e.session_id, |s| {
                s.session_id = e.session_id.to_string();
                if s.host_id.is_empty() {
                    s.host_id = e.host_id.to_string();
                }
                s.set_status(SessionStatus::Ended);
                s.ended_at = at;
                s.end_reason = serde_name(&e.reason);
            }),
            _ => {}
        }
    }

    fn tables_mut(&mut self) -> Vec<&mut dyn StoredTable> {
        vec![&mut self.sessions]
    }
}
