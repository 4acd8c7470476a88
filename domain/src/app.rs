//! Apps: registered once (first version, what a host launches, what it needs), then versions
//! are released in increasing order, each saying whether it is urgent. Every command that names
//! an app ([`crate::app_of`]) needs it registered: the node hands its registration in as
//! [`Context::app`].

use crate::{Context, Rejection, non_empty};
use chrono::Duration;
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::ids::AppId;
use streamfleet_bus_schemas::payloads::{
    AppRegistered, BufferTargetSet, HostRequirements, RegisterApp, ReleaseVersion, SetBufferTarget,
    VersionReleased,
};

/// Longest notice of an urgent release, seconds.
pub const MAX_NOTICE_SECONDS: u32 = 86_400;

/// An app's state: its registration and current version.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AppState {
    /// The app.
    pub app_id: AppId,
    /// The current version.
    pub version: String,
    /// What a host launches (empty for an app released before apps were registered).
    pub image: String,
    /// What a host must offer.
    pub requirements: HostRequirements,
}

/// The registration of `app_id` in `ctx`, or `unknown_app`.
pub(crate) fn registered<'a>(ctx: &'a Context, app_id: &AppId) -> Result<&'a AppState, Rejection> {
    ctx.app
        .as_ref()
        .filter(|app| &app.app_id == app_id)
        .ok_or_else(|| Rejection::UnknownApp {
            app_id: app_id.clone(),
        })
}

pub(crate) fn decide_register(
    c: &RegisterApp,
    state: Option<&AppState>,
) -> Result<Vec<Event>, Rejection> {
    if state.is_some() {
        return Err(Rejection::AppAlreadyRegistered {
            app_id: c.app_id.clone(),
        });
    }
    non_empty("app_id", &c.app_id)?;
    non_empty("image", &c.image)?;
    parse_version(&c.version)?;
    Ok(vec![Event::AppRegistered(AppRegistered {
        app_id: c.app_id.clone(),
        version: c.version.clone(),
        image: c.image.clone(),
        requirements: c.requirements.clone(),
    })])
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
    let Some(app) = state else {
        return Err(Rejection::UnknownApp {
            app_id: c.app_id.clone(),
        });
    };
    let new = parse_version(&c.version)?;
    if new <= parse_version(&app.version)? {
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
        previous: Some(app.version.clone()),
        urgent: c.urgent,
        deadline,
    })])
}

pub(crate) fn evolve_registered(e: &AppRegistered) -> AppState {
    AppState {
        app_id: e.app_id.clone(),
        version: e.version.clone(),
        image: e.image.clone(),
        requirements: e.requirements.clone(),
    }
}

/// A release moves the version. A release with no registration before it (a log from before
/// apps were registered) stands for one, with no image and no requirements.
pub(crate) fn evolve_released(state: Option<AppState>, e: &VersionReleased) -> AppState {
    match state {
        Some(app) => AppState {
            version: e.version.clone(),
            ..app
        },
        None => AppState {
            app_id: e.app_id.clone(),
            version: e.version.clone(),
            image: String::new(),
            requirements: HostRequirements::default(),
        },
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
