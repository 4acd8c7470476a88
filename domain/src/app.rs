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
#[derive(Debug, Clone, PartialEq)]
pub struct AppState {
    /// The current version.
    pub version: String,
}

/// A version as numbers: `2.10.1` → `[2, 10, 1]`, compared element by element.
pub fn parse_version(version: &str) -> Result<Vec<u64>, Rejection> {
    version
        .split('.')
        .map(|part| part.parse::<u64>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Rejection::InvalidField {
            field: "version",
            detail: format!("`{version}` is not dotted numbers like `2.1.0`"),
        })
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
