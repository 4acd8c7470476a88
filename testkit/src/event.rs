//! Waiting for an event.
//!
//! Invariant: [`wait_for`] looks at every followed event in order and returns the first that
//! satisfies the predicate; it gives up only at the deadline, naming what it waited for.

use std::time::Duration;
use streamfleet_bus_client::{FollowError, FollowedEvent, Follower};

/// Why the event did not come.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The deadline passed first.
    #[error("no event {what} within {after:?} (followed up to position {position})")]
    Deadline {
        /// What was waited for.
        what: String,
        /// The deadline.
        after: Duration,
        /// The next position the follower would have read.
        position: u64,
    },
    /// Following failed.
    #[error("following the log while waiting for {what}: {error}")]
    Follow {
        /// What was waited for.
        what: String,
        /// Why.
        error: FollowError,
    },
}

/// The next event of `follower` for which `pred` holds, within `after`.
pub async fn wait_for(
    follower: &mut Follower,
    what: &str,
    after: Duration,
    mut pred: impl FnMut(&FollowedEvent) -> bool,
) -> Result<FollowedEvent, WaitError> {
    let deadline = tokio::time::Instant::now() + after;
    loop {
        match tokio::time::timeout_at(deadline, follower.next()).await {
            Err(_) => {
                return Err(WaitError::Deadline {
                    what: what.to_string(),
                    after,
                    position: follower.position(),
                });
            }
            Ok(Err(error)) => {
                return Err(WaitError::Follow {
                    what: what.to_string(),
                    error,
                });
            }
            Ok(Ok(event)) if pred(&event) => return Ok(event),
            Ok(Ok(_)) => {}
        }
    }
}
