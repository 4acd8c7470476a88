//! Heartbeats: per host and per session, the last report and how many; liveness on query.
//!
//! Invariant: stored rows hold only what events said (reports, ends, removals); "late" depends
//! on the clock, so it is computed when a row is served ([`host_liveness`],
//! [`session_liveness`]), never stored.

use super::View;
use crate::pb::{HostBeatRow, Liveness, LivenessCounts, SessionBeatRow, StreamStats};
use crate::rows::{StoredTable, Table, time_of, timestamp};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::Duration;
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::payloads::{HostRemovalReason, SessionEndReason};

/// Host and session heartbeat rows.
#[derive(Debug, Clone)]
pub struct HeartbeatsView {
    /// By host id.
    pub hosts: Table<HostBeatRow>,
    /// By session id.
    pub sessions: Table<SessionBeatRow>,
}

impl Default for HeartbeatsView {
    fn default() -> Self {
        HeartbeatsView {
            hosts: Table::new("host_beats"),
            sessions: Table::new("session_beats"),
        }
    }
}

impl View for HeartbeatsView {
    const NAME: &'static str = "heartbeats";

    fn apply(&mut self, _position: u64, time: DateTime<Utc>, event: &Event) {
        let at = Some(timestamp(time));
        match event {
            Event::HostRegistered(e) => self.hosts.upsert(&e.host_id, |r| {
                r.host_id = e.host_id.to_string();
                r.region = e.region.to_string();
                r.app_id = e.app_id.to_string();
                r.registered_at = at;
                r.removed = false;
                r.lost = false;
            }),
            Event::HeartbeatReceived(e) => {
                self.hosts.upsert(&e.host_id, |r| {
                    r.host_id = e.host_id.to_string();
                    r.last_sent_at = Some(timestamp(e.sent_at));
                    r.last_received_at = at;
                    r.sessions_reported = u32::try_from(e.sessions.len()).unwrap_or(u32::MAX);
                    r.reports += 1;
                });
                for beat in &e.sessions {
                    self.sessions.upsert(&beat.session_id, |s| {
                        s.session_id = beat.session_id.to_string();
                        s.host_id = e.host_id.to_string();
                        s.since = s.since.or(at);
                        s.last_sent_at = Some(timestamp(e.sent_at));
                        s.last_received_at = at;
                        s.heartbeats += 1;
                        if let Some(st) = &beat.stats {
                            s.last_stats = Some(StreamStats {
                                bitrate_kbps: st.bitrate_kbps,
                                fps: st.fps,
                                rtt_ms: st.rtt_ms,
                                loss_permille: st.loss_permille,
                                keyframes: st.keyframes,
                            });
                        }
                    });
                }
            }
            Event::SessionProvisioned(e) => self.sessions.upsert(&e.session_id, |s| {
                s.session_id = e.session_id.to_string();
                if s.host_id.is_empty() {
                    s.host_id = e.host_id.to_string();
                }
                s.since = s.since.or(at);
            }),
            Event::SessionEnded(e) => self.sessions.upsert(&e.session_id, |s| {
                s.session_id = e.session_id.to_string();
                if s.host_id.is_empty() {
                    s.host_id = e.host_id.to_string();
                }
                s.since = s.since.or(at);
                s.ended = true;
                s.lost = e.reason == SessionEndReason::Lost;
            }),
            Event::HostRemoved(e) => self.hosts.upsert(&e.host_id, |r| {
                r.host_id = e.host_id.to_string();
                r.removed = true;
                r.lost = e.reason == HostRemovalReason::Lost;
            }),
            _ => {}
        }
    }

    fn tables_mut(&mut self) -> Vec<&mut dyn StoredTable> {
        vec![&mut self.hosts, &mut self.sessions]
    }
}

/// Liveness of something last heard of at `last`: late after two intervals.
fn liveness_at(
    last: Option<&prost_types::Timestamp>,
    now: DateTime<Utc>,
    interval: Duration,
) -> (Liveness, i64) {
    let age_ms = last
        .and_then(time_of)
        .map(|t| (now - t).num_milliseconds().max(0))
        .unwrap_or(0);
    let late_after = i64::try_from(interval.as_millis().saturating_mul(2)).unwrap_or(i64::MAX);
    if age_ms > late_after {
        (Liveness::Late, age_ms)
    } else {
        (Liveness::Ok, age_ms)
    }
}

/// A host's liveness at `now` and the age of its last report (or registration), in ms.
pub fn host_liveness(row: &HostBeatRow, now: DateTime<Utc>, interval: Duration) -> (Liveness, i64) {
    let (live, age) = liveness_at(
        row.last_received_at.as_ref().or(row.registered_at.as_ref()),
        now,
        interval,
    );
    match (row.lost, row.removed) {
        (true, _) => (Liveness::Lost, age),
        (false, true) => (Liveness::Gone, age),
        _ => (live, age),
    }
}

/// A session's liveness at `now` and the age of its last heartbeat (or provisioning), in ms.
pub fn session_liveness(
    row: &SessionBeatRow,
    now: DateTime<Utc>,
    interval: Duration,
) -> (Liveness, i64) {
    let (live, age) = liveness_at(
        row.last_received_at.as_ref().or(row.since.as_ref()),
        now,
        interval,
    );
    match (row.lost, row.ended) {
        (true, _) => (Liveness::Lost, age),
        (false, true) => (Liveness::Gone, age),
        _ => (live, age),
    }
}

impl HeartbeatsView {
    /// The (region, app) of a host, when it registered.
    pub fn host_place(&self, host_id: &str) -> (&str, &str) {
        self.hosts
            .get(host_id)
            .map(|h| (h.region.as_str(), h.app_id.as_str()))
            .unwrap_or(("", ""))
    }

    /// Liveness counts per region and per app at `now` (sessions count where their host is).
    /// Hosts and sessions no longer watched (removed, ended) are left out.
    pub fn counts(
        &self,
        now: DateTime<Utc>,
        interval: Duration,
    ) -> (Vec<LivenessCounts>, Vec<LivenessCounts>) {
        let mut regions: BTreeMap<String, LivenessCounts> = BTreeMap::new();
        let mut apps: BTreeMap<String, LivenessCounts> = BTreeMap::new();
        let mut add = |region: &str, app: &str, f: &dyn Fn(&mut LivenessCounts)| {
            for (map, key) in [(&mut regions, region), (&mut apps, app)] {
                let c = map
                    .entry(key.to_string())
                    .or_insert_with(|| LivenessCounts {
                        key: key.to_string(),
                        ..Default::default()
                    });
                f(c);
            }
        };
        for (_, h) in self.hosts.iter() {
            let (live, _) = host_liveness(h, now, interval);
            add(&h.region, &h.app_id, &|c| match live {
                Liveness::Ok => c.hosts_ok += 1,
                Liveness::Late => c.hosts_late += 1,
                Liveness::Lost => c.hosts_lost += 1,
                _ => {}
            });
        }
        for (_, s) in self.sessions.iter() {
            let (live, _) = session_liveness(s, now, interval);
            let (region, app) = self.host_place(&s.host_id);
            add(region, app, &|c| match live {
                Liveness::Ok => c.sessions_ok += 1,
                Liveness::Late => c.sessions_late += 1,
                Liveness::Lost => c.sessions_lost += 1,
                _ => {}
            });
        }
        (
            regions.into_values().collect(),
            apps.into_values().collect(),
        )
    }
}
