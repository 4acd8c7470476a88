//! Streamfleet's workers: the services and keepers that turn requests and events into commands.
//!
//! Invariant: workers decide nothing on their own authority. Each of them reads the fleet as
//! folded from the log ([`fleet::Fleet`]) and sends commands; the node's deciders accept or
//! refuse them, and the log is the only record. Reactions to state are level-triggered (a
//! keeper looks at the state each tick and asks for what is missing, with command ids derived
//! from what it reacts to), so a restarted worker repeats nothing twice and misses nothing.
//!
//! What runs in [`run`]:
//! - the **token service** (`sf.svc.token.request`): mints signed tokens, records `IssueToken`;
//! - the **redemption node** (`sf.svc.redeem`): checks a token's signature, ranks regions
//!   nearest first, hands it to that region's host-management service;
//! - a **host-management service** per region (`sf.svc.hms.<region>.redeem`): redeems the
//!   token, places the session, has the host's agent start it, records `ProvisionSession`;
//! - the **consistency checker**: compares each heartbeat report with the log, opens
//!   discrepancies, asks the host, records the resolution;
//! - the **keepers**, every tick: lost sessions and hosts, slot release, the buffer of idle
//!   hosts, and rollouts of new versions.
//!
//! ```no_run
//! # async fn demo(config: streamfleet_workers::WorkersConfig) -> Result<(), streamfleet_workers::WorkersError> {
//! streamfleet_workers::run(config, |_front_door| println!("ready"), async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod consistency;
pub mod fleet;
pub mod front_door;
mod keepers;
pub mod node_watch;
mod services;
pub mod token;

use chrono::{DateTime, Utc};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use streamfleet_bus_client::{CommandClient, FollowError, Follower, NatsLogin};
use streamfleet_bus_schemas::ids::HostId;
use streamfleet_bus_schemas::principal::Role;
use streamfleet_bus_schemas::{Command, Event};
use streamfleet_domain::placement::{IpLocation, Region};
use tokio::sync::Notify;

pub use fleet::Fleet;
pub use front_door::FrontDoorConfig;
pub use node_watch::NodeWatchConfig;
pub use token::TokenKey;

/// What the workers need to know.
#[derive(Debug, Clone)]
pub struct WorkersConfig {
    /// NATS login (the `worker` user).
    pub login: NatsLogin,
    /// The token signing key.
    pub token_key: TokenKey,
    /// Regions that take redemptions (each gets a host-management service here).
    pub regions: Vec<Region>,
    /// Where client IP prefixes are.
    pub locations: Vec<IpLocation>,
    /// How often hosts send heartbeats.
    pub heartbeat_interval: Duration,
    /// Heartbeat intervals without a heartbeat before a session or host is declared lost.
    pub lost_after_intervals: u32,
    /// How long a requested host may take to register before it is given up.
    pub launch_timeout: Duration,
    /// The redemption node's HTTPS front door, when it has one.
    pub front_door: Option<FrontDoorConfig>,
}

impl WorkersConfig {
    /// How long without heartbeats makes a session or host lost.
    pub fn lost_after(&self) -> Duration {
        self.heartbeat_interval * self.lost_after_intervals.max(1)
    }
}

/// Why the workers stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    /// NATS refused the connection or a subscription.
    #[error("NATS: {0}")]
    Nats(String),
    /// Following the log failed for good.
    #[error("following the log: {0}")]
    Follow(#[from] FollowError),
    /// The front door could not listen.
    #[error("front door: {0}")]
    FrontDoor(std::io::Error),
}

pub(crate) use streamfleet_bus_client::Refused;

/// What every worker shares: the connection, the fleet picture and its change signal.
pub(crate) struct Shared {
    pub client: async_nats::Client,
    pub commands: CommandClient,
    pub fleet: RwLock<Fleet>,
    pub changed: Notify,
    pub config: WorkersConfig,
    /// Slots this process is placing right now, by host: counted as taken by the next
    /// placement, so concurrent redemptions spread over hosts (and host streams) instead of all
    /// racing for the one the fleet shows free.
    pub placing: std::sync::Mutex<std::collections::BTreeMap<HostId, u32>>,
}

/// Namespace of the command ids the workers derive from what they react to.
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5f1e_e7a0_0000_4000_8000_7374_7265_616d);

impl Shared {
    /// Reads the fleet (never held across an await).
    pub fn fleet(&self) -> std::sync::RwLockReadGuard<'_, Fleet> {
        self.fleet.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a command with a fresh id.
    pub async fn send(
        &self,
        command: Command,
    ) -> Result<Vec<streamfleet_bus_schemas::RecordedEvent>, Refused> {
        self.send_with_id(uuid::Uuid::now_v7(), command).await
    }

    /// Sends a command whose id derives from `key`: sending it again (after a restart, or on
    /// the next tick) is deduplicated by the node.
    pub async fn send_once(
        &self,
        key: &str,
        command: Command,
    ) -> Result<Vec<streamfleet_bus_schemas::RecordedEvent>, Refused> {
        self.send_with_id(uuid::Uuid::new_v5(&ID_NAMESPACE, key.as_bytes()), command)
            .await
    }

    async fn send_with_id(
        &self,
        id: uuid::Uuid,
        command: Command,
    ) -> Result<Vec<streamfleet_bus_schemas::RecordedEvent>, Refused> {
        self.commands.submit(id, &command).await
    }

    /// Sends a request to a host's agent and decodes its JSON answer.
    pub async fn ask<T: serde::de::DeserializeOwned>(
        &self,
        subject: String,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<T, String> {
        streamfleet_bus_client::ask_raw(&self.client, &subject, body, Some(timeout))
            .await
            .map_err(|e| e.to_string())
    }

    /// Publishes a request whose answer does not matter (best effort).
    pub async fn tell(&self, subject: String, body: Vec<u8>) {
        if let Err(error) = self.client.publish(subject.clone(), body.into()).await {
            tracing::warn!(%subject, %error, "could not tell a host agent");
        }
    }
}

/// The log's head when asked: the position the workers must reach before serving. Waits for a
/// node to answer.
async fn log_head(client: &async_nats::Client) -> Result<u64, WorkersError> {
    loop {
        match streamfleet_bus_client::log_head(client).await {
            Ok(head) => return Ok(head),
            Err(FollowError::NoAnswer(error)) => {
                tracing::info!(%error, "waiting for the node to answer log reads");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(other) => return Err(WorkersError::Follow(other)),
        }
    }
}

/// Runs every worker until `shutdown` resolves: catches up on the log first, then serves
/// (and calls `ready`).
pub async fn run(
    config: WorkersConfig,
    ready: impl FnOnce(Option<std::net::SocketAddr>),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), WorkersError> {
    let client = streamfleet_bus_client::connect(&config.login)
        .await
        .map_err(|e| WorkersError::Nats(e.to_string()))?;
    let shared = Arc::new(Shared {
        commands: CommandClient::new(client.clone(), Role::Worker, "streamfleet/workers"),
        client: client.clone(),
        fleet: RwLock::new(Fleet::default()),
        changed: Notify::new(),
        config,
        placing: std::sync::Mutex::new(std::collections::BTreeMap::new()),
    });
    let head = log_head(&client).await?;
    let mut follower = Follower::start(client.clone(), 1).await?;
    while follower.position() <= head {
        apply_next(&shared, &mut follower, false).await?;
    }
    tracing::info!(position = head, "workers caught up; serving");
    let mut tasks = services::start(shared.clone()).await?;
    tasks.push(tokio::spawn(keepers::run(shared.clone())));
    let door = match shared.config.front_door.clone() {
        Some(door) => {
            let (addr, task) = front_door::start(shared.clone(), door)
                .await
                .map_err(WorkersError::FrontDoor)?;
            tracing::info!(%addr, "redemption front door listening");
            tasks.push(task);
            Some(addr)
        }
        None => None,
    };
    ready(door);
    let following = async {
        loop {
            apply_next(&shared, &mut follower, true).await?;
        }
    };
    let outcome = tokio::select! {
        r = following => r,
        () = shutdown => Ok(()),
    };
    for t in tasks {
        t.abort();
    }
    let _ = client.flush().await;
    outcome
}

/// Applies the next event to the fleet; when `live`, reacts to heartbeat reports.
async fn apply_next(
    shared: &Arc<Shared>,
    follower: &mut Follower,
    live: bool,
) -> Result<(), WorkersError> {
    let followed = follower.next().await?;
    let envelope = match followed.envelope() {
        Ok(e) => e,
        Err(error) => {
            tracing::error!(position = followed.position, %error, "unreadable event; skipped");
            return Ok(());
        }
    };
    let time: DateTime<Utc> = envelope.body.time;
    let event = match Event::from_parts(&envelope.body.event_type, envelope.body.data) {
        Ok(e) => e,
        Err(error) => {
            tracing::error!(position = followed.position, %error, "event of an unknown shape; skipped");
            return Ok(());
        }
    };
    let findings = match (&event, live) {
        (Event::HeartbeatReceived(report), true) => shared.fleet().check_report(report),
        _ => Vec::new(),
    };
    shared
        .fleet
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .apply(followed.position, time, &event);
    shared.changed.notify_waiters();
    // A customer hears of their migration on their own subject.
    if live && let Event::CustomerNotified(notice) = &event {
        let subject = streamfleet_bus_schemas::subjects::customer_notice(&notice.customer);
        let body = serde_json::to_vec(notice).unwrap_or_default();
        shared.tell(subject, body).await;
    }
    if let Event::HeartbeatReceived(report) = &event {
        for finding in findings {
            tokio::spawn(consistency::resolve(
                shared.clone(),
                report.host_id.clone(),
                followed.position,
                finding,
            ));
        }
    }
    Ok(())
}
