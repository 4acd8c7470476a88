//! The keepers: every tick, compare the fleet with what it should be and send the commands
//! that close the gap.
//!
//! Invariant: each keeper is level-triggered and idempotent. What to ask for is decided by the
//! plain functions of [`reactions`] (no I/O); this loop only carries their [`Reaction`]s out.
//! Each command's id derives from what it reacts to (`lost/<session>`,
//! `release/<session>/<host>`, `drain/<host>/<version>`), so the same gap seen twice, by two
//! ticks or two worker processes, is closed once.

mod reactions;

use crate::Shared;
use crate::services::{launch, request_host};
use chrono::Utc;
use reactions::{Limits, Reaction};
use std::sync::Arc;
use std::time::Duration;
use streamfleet_bus_schemas::Command;
use streamfleet_bus_schemas::instance::TerminateInstance;

/// Runs every keeper each tick (half a heartbeat interval).
pub(crate) async fn run(shared: Arc<Shared>) {
    let tick = (shared.config.heartbeat_interval / 2).max(Duration::from_millis(50));
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let limits = Limits {
        lost_after: shared.config.lost_after(),
        launch_timeout: shared.config.launch_timeout,
    };
    loop {
        ticks.tick().await;
        let now = Utc::now();
        shared
            .fleet
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .forget_expired_tokens(now);
        // Each keeper reads the fleet afresh (its read guard dropped before any await), so it
        // sees whatever the follower has applied since the keeper before it.
        let asked = reactions::liveness(&shared.fleet(), now, limits);
        carry_out(&shared, asked).await;
        let asked = reactions::slots(&shared.fleet(), now, limits);
        carry_out(&shared, asked).await;
        let asked = reactions::rollouts(&shared.fleet(), now);
        carry_out(&shared, asked).await;
        let asked = reactions::buffers(&shared.fleet());
        carry_out(&shared, asked).await;
    }
}

/// Does what the reactions ask, in order.
async fn carry_out(shared: &Shared, reactions: Vec<Reaction>) {
    for reaction in reactions {
        carry_out_one(shared, reaction).await;
    }
}

/// Does what a reaction asks: the only place keepers touch the bus.
async fn carry_out_one(shared: &Shared, reaction: Reaction) {
    match reaction {
        Reaction::Send { key, command, then } => {
            let type_name = command.type_name();
            // A removed host launched as an instance ends with it (hosts a host agent started
            // on its own are no instances: `unknown_instance`, nothing to end).
            let instance = match &command {
                Command::RemoveHost(r) => Some(r.host_id.clone()),
                _ => None,
            };
            match shared.send_once(&key, command).await {
                Ok(_) => {
                    tracing::info!(%key, command = type_name, "keeper command recorded");
                    if let Some(tell) = then {
                        shared.tell(tell.subject, tell.body).await;
                    }
                    if let Some(host_id) = instance {
                        let end = Command::TerminateInstance(TerminateInstance {
                            instance_id: host_id.as_str().into(),
                        });
                        if let Err(refused) = shared
                            .send_once(&format!("terminate-instance/{host_id}"), end)
                            .await
                        {
                            tracing::debug!(host = %host_id, %refused, "no instance ended with the host");
                        }
                    }
                }
                Err(refused) => tracing::debug!(%key, %refused, "keeper command not recorded"),
            }
        }
        Reaction::Tell(tell) => shared.tell(tell.subject, tell.body).await,
        Reaction::RequestHost {
            region,
            app_id,
            version,
            reason,
        } => request_host(shared, &region, &app_id, version.as_deref(), &reason).await,
        Reaction::Launch {
            region,
            host_id,
            app_id,
            version,
        } => launch(shared, &region, &host_id, &app_id, &version).await,
    }
}
