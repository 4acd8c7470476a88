//! Apps: versions are released in increasing order; each release says whether it is urgent.

use crate::{Context, Rejection, non_empty};
use chrono::Duration;
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::payloads::{
    BufferTargetSet, ReleaseVersion, SetBufferTarget, VersionReleased,
};

/// Longest notice of an urgent release, seconds.
pub const MAX_NOTICE_SECONDS: u32 = 86_400;

/// An app's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AppState {
    /// The current version.
    pub version: String,
}

/// A version as numbers, trailing zeros dropped: `2.10.1` → `[2, 10, 1]`, `1.2.0` → `[1, 2]`,
/// so versions compare element by element and `1.2` equals `1.2.0`.
pub fn parse_version(version: &str) -> Result<Vec<u64>, Rejection> {
    let bad = || Rejection::InvalidField {
        field: "version",
        detail: format!("`{version}` is not dotted numbers like `2.1.0`"),
    };
    let mut parts = version
        .split('.')
        .map(|part| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse::<u64>().map_err(|_| bad())
        })
        .collect::<Result<Vec<_>, _>>()?;
    while parts.last() == Some(&0) {
        parts.pop();
    }
    Ok(parts)
}

pub(crate) fn decide_release(
    c: &ReleaseVersion,
    state: Option<&AppState>,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    non_empty("app_id", &c.app_id)?;
    let new = parse_version(&c.version)?;
    if let Some(app) = state
        && new <= parse_version(&app.version)?
    {
        return Err(Rejection::VersionNotNewer {
            current: app.version.clone(),
            requested: c.version.clone(),
        });
    }
    let deadline = if c.urgent {
        if !(1..=MAX_NOTICE_SECONDS).contains(&c.notice_seconds) {
            return Err(Rejection::InvalidField {
                field: "notice_seconds",
                detail: format!(
                    "{} is outside 1..={MAX_NOTICE_SECONDS} for an urgent release",
                    c.notice_seconds
                ),
            });
        }
        Some(ctx.now + Duration::seconds(i64::from(c.notice_seconds)))
    } else {
        None
    };
    Ok(vec![Event::VersionReleased(VersionReleased {
        app_id: c.app_id.clone(),
        version: c.version.clone(),
        previous: state.map(|a| a.version.clone()),
        urgent: c.urgent,
        deadline,
    })])
}

pub(crate) fn evolve(e: &VersionReleased) -> AppState {
    AppState {
        version: e.version.clone(),
    }
}

/// Most idle buffer hosts a region may keep for one app.
pub const MAX_BUFFER_HOSTS: u32 = 1024;

pub(crate) fn decide_buffer_target(c: &SetBufferTarget) -> Result<Vec<Event>, Rejection> {
    non_empty("region", &c.region)?;
    non_empty("app_id", &c.app_id)?;
    if c.idle_hosts > MAX_BUFFER_HOSTS {
        return Err(Rejection::InvalidField {
            field: "idle_hosts",
            detail: format!("{} is more than {MAX_BUFFER_HOSTS}", c.idle_hosts),
        });
    }
    Ok(vec![Event::BufferTargetSet(BufferTargetSet {
        region: c.region.clone(),
        app_id: c.app_id.clone(),
        idle_hosts: c.idle_hosts,
    })])
}
