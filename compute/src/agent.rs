//! The compute host's agent: registers the host, follows the log's instance events, carries
//! out those about its instances with its driver, and reports back what only it can see.
//!
//! Invariant: the agent acts on an event once. On start it folds the whole history without
//! acting, then reconciles what runs with what the log says (re-adopting running instances
//! instead of booting them twice, ending what should not run, reporting as failed what should
//! run and is gone), and only then acts on new events. Each instance's actions run in log order
//! (one queue per instance); different instances' run side by side.

use crate::driver::{Driver, Happening, InstanceSpec};
use crate::migration::{MigrationSettings, Mover};
use std::collections::HashMap;
use std::sync::Arc;
use streamfleet_bus_client::{CommandClient, FollowError, Follower, log_head};
use streamfleet_bus_schemas::compute::Hypervisor;
use streamfleet_bus_schemas::ids::{HostId, InstanceId, RegionId};
use streamfleet_bus_schemas::instance::{
    ChangeCause, InstanceReport, RegisterComputeHost, ReportInstance, Volume,
};
use streamfleet_bus_schemas::principal::Role;
use streamfleet_bus_schemas::{Command, Event};
use streamfleet_domain::instance::{InstanceState, InstanceStatus};
use streamfleet_domain::{State, evolve};
use tokio::sync::mpsc;
use uuid::Uuid;

/// What the host offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOffer {
    /// The host.
    pub host_id: HostId,
    /// Its region.
    pub region: RegionId,
    /// Cpus for instances.
    pub cpus: u32,
    /// Memory for instances, in MiB.
    pub memory_mib: u32,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The host could not register.
    #[error("registering the host failed: {0}")]
    Register(String),
    /// Following the log failed for good.
    #[error("following the log failed: {0}")]
    Follow(#[from] FollowError),
}

/// One thing to do for one instance.
#[derive(Debug, Clone)]
enum Action {
    Launch,
    Stop,
    Reboot,
    Terminate,
    AttachVolume(Volume),
    DetachVolume(String),
    AttachNetwork(String),
    DetachNetwork(String),
    Snapshot(String),
    /// After a restart: take over what runs, or say it is gone.
    Reconcile,
}

fn spec_of(id: &InstanceId, s: &InstanceState) -> InstanceSpec {
    InstanceSpec {
        instance_id: id.clone(),
        image: s.image.clone(),
        cpus: s.cpus,
        memory_mib: s.memory_mib,
        addresses: s.addresses.clone(),
        volumes: s.volumes.clone(),
        networks: s.networks.clone(),
    }
}

/// What a live event asks of this host's driver.
fn action_of(event: &Event) -> Option<Action> {
    Some(match event {
        Event::InstancePlaced(_) | Event::InstanceStarted(_) => Action::Launch,
        Event::InstanceStopped(e) if e.by == ChangeCause::Command => Action::Stop,
        Event::InstanceRebooted(e) if e.by == ChangeCause::Command => Action::Reboot,
        Event::InstanceTerminated(_) => Action::Terminate,
        Event::VolumeAttached(e) => Action::AttachVolume(e.volume.clone()),
        Event::VolumeDetached(e) => Action::DetachVolume(e.volume_id.clone()),
        Event::NetworkAttached(e) => Action::AttachNetwork(e.network_id.clone()),
        Event::NetworkDetached(e) => Action::DetachNetwork(e.network_id.clone()),
        Event::SnapshotTaken(e) => Action::Snapshot(e.snapshot_id.clone()),
        _ => return None,
    })
}

/// Runs the agent of `offer`'s host with `driver` until the log cannot be followed any more;
/// `ready` is called once the host is registered and follows the log. `client` is logged in as the `launcher` role.
pub async fn run<D: Driver>(
    driver: Arc<D>,
    client: async_nats::Client,
    offer: HostOffer,
    ready: impl FnOnce(),
) -> Result<(), AgentError> {
    run_with(driver, client, offer, MigrationSettings::default(), ready).await
}

/// [`run`], with the migrations' waiting times.
pub async fn run_with<D: Driver>(
    driver: Arc<D>,
    client: async_nats::Client,
    offer: HostOffer,
    settings: MigrationSettings,
    ready: impl FnOnce(),
) -> Result<(), AgentError> {
    let commands = CommandClient::new(
        client.clone(),
        Role::Launcher,
        format!("compute/{}", offer.host_id),
    );
    let register = Command::RegisterComputeHost(RegisterComputeHost {
        host_id: offer.host_id.clone(),
        region: offer.region.clone(),
        hypervisor: driver.hypervisor(),
        cpus: offer.cpus,
        memory_mib: offer.memory_mib,
        detail: driver.detail(),
    });
    commands
        .submit(Uuid::now_v7(), &register)
        .await
        .map_err(|e| AgentError::Register(e.to_string()))?;
    tracing::info!(host = %offer.host_id, hypervisor = %driver.hypervisor(), "compute host registered");

    let reporter = Reporter {
        commands: commands.clone(),
        host_id: offer.host_id.clone(),
    };
    let mover = Mover::new(
        driver.clone(),
        reporter.clone(),
        offer.host_id.clone(),
        settings,
    );
    {
        let (driver, reporter, mover) = (driver.clone(), reporter.clone(), mover.clone());
        tokio::spawn(async move {
            loop {
                let (id, happening) = driver.next_happening().await;
                let report = match happening {
                    Happening::GuestRebooted(r) => InstanceReport::GuestRebooted { pid: r.pid },
                    Happening::GuestPoweredOff => InstanceReport::GuestPoweredOff,
                    Happening::Gone(reason) => InstanceReport::Failed { reason },
                    Happening::RebootHeld { at } => {
                        if mover.reboot_held(&id, at).await {
                            continue;
                        }
                        // Its migration ended meanwhile: nothing moves it; say it is halted.
                        driver.hold_reboots(&id, false);
                        InstanceReport::Failed {
                            reason: "the guest rebooted as its migration ended; start it again"
                                .into(),
                        }
                    }
                };
                reporter.report(&id, report).await;
            }
        });
    }

    let head = log_head(&client).await?;
    // Live only what a launcher may see; the rest of the log comes through reads.
    let mut follower = Follower::start_on(
        client,
        1,
        &[
            streamfleet_bus_schemas::subjects::INSTANCE_EVENTS,
            streamfleet_bus_schemas::subjects::COMPUTE_EVENTS,
            streamfleet_bus_schemas::subjects::MIGRATION_EVENTS,
        ],
    )
    .await?;
    // Registered and following: whatever is recorded from now on is carried out live, what was
    // recorded before by the reconciliation once the history is folded.
    ready();
    let mut instances: HashMap<InstanceId, InstanceState> = HashMap::new();
    let mut queues: HashMap<InstanceId, mpsc::UnboundedSender<(Action, InstanceState)>> =
        HashMap::new();
    let mut reconciled = head == 0;
    if reconciled {
        tracing::info!(host = %offer.host_id, "empty log: nothing to re-adopt");
    }
    loop {
        let followed = follower.next().await?;
        let position = followed.position;
        let Ok(envelope) = followed.envelope() else {
            continue;
        };
        let body = envelope.body;
        let category = streamfleet_bus_schemas::category_of(&body.subject);
        if category == "migration" {
            // The stream is `migration-<id>`.
            if let Some(id) = body.subject.strip_prefix("migration-")
                && let Ok(event) = Event::from_parts(&body.event_type, body.data)
            {
                mover.follow(id.into(), &event, position, reconciled);
            }
        } else if category == "instance"
            && let Ok(event) = Event::from_parts(&body.event_type, body.data)
            && let Some(id) = instance_of(&event)
        {
            let before = instances
                .remove(&id)
                .map(State::Instance)
                .unwrap_or_default();
            if let State::Instance(now) = evolve(before, &event) {
                let mine = now.host_id == offer.host_id;
                if reconciled
                    && mine
                    && let Some(action) = action_of(&event)
                {
                    enqueue(
                        &mut queues,
                        &driver,
                        &reporter,
                        &mover,
                        &id,
                        action,
                        now.clone(),
                    );
                }
                // Every instance is kept: one may move here.
                instances.insert(id, now);
            }
        }
        if !reconciled && position >= head {
            reconciled = true;
            let mine: Vec<(InstanceId, InstanceState)> = instances
                .iter()
                .filter(|(_, s)| s.host_id == offer.host_id)
                .map(|(id, s)| (id.clone(), s.clone()))
                .collect();
            tracing::info!(host = %offer.host_id, instances = mine.len(), "caught up with the log; reconciling");
            for (id, state) in mine {
                enqueue(
                    &mut queues,
                    &driver,
                    &reporter,
                    &mover,
                    &id,
                    Action::Reconcile,
                    state,
                );
            }
            mover.resume_all();
        }
    }
}

fn instance_of(event: &Event) -> Option<InstanceId> {
    let data = event.to_data();
    let id = data.get("instance_id")?.as_str()?;
    Some(InstanceId::from(id))
}

/// Hands an action to the instance's queue, starting its worker on first use.
fn enqueue<D: Driver>(
    queues: &mut HashMap<InstanceId, mpsc::UnboundedSender<(Action, InstanceState)>>,
    driver: &Arc<D>,
    reporter: &Reporter,
    mover: &Arc<Mover<D>>,
    id: &InstanceId,
    action: Action,
    state: InstanceState,
) {
    let queue = queues.entry(id.clone()).or_insert_with(|| {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Action, InstanceState)>();
        let (driver, reporter, mover, id) =
            (driver.clone(), reporter.clone(), mover.clone(), id.clone());
        tokio::spawn(async move {
            while let Some((action, state)) = rx.recv().await {
                carry_out(driver.as_ref(), &reporter, &mover, &id, action, &state).await;
            }
        });
        tx
    });
    let _ = queue.send((action, state));
}

async fn carry_out<D: Driver>(
    driver: &D,
    reporter: &Reporter,
    mover: &Mover<D>,
    id: &InstanceId,
    action: Action,
    state: &InstanceState,
) {
    let spec = spec_of(id, state);
    let hypervisor: Hypervisor = driver.hypervisor();
    tracing::debug!(instance = %id, ?action, %hypervisor, "carrying out");
    match action {
        Action::Launch => reporter.booted(id, driver.launch(&spec).await, "").await,
        // Synced for a migration: the reboot is the move.
        Action::Reboot if mover.reboot_by_command(&spec).await => {}
        Action::Reboot => {
            let booted = driver.reboot(&spec).await;
            reporter.booted(id, booted, "reboot: ").await
        }
        Action::Stop => {
            if let Err(e) = driver.stop(&spec).await {
                tracing::warn!(instance = %id, error = %e, "stop failed");
            }
        }
        Action::Terminate => {
            if let Err(e) = driver.terminate(&spec).await {
                tracing::warn!(instance = %id, error = %e, "terminate left something behind");
            }
        }
        Action::AttachVolume(volume) => {
            let done = driver.attach_volume(&spec, &volume).await;
            reporter
                .change(id, "attach-volume", &volume.volume_id, done)
                .await
        }
        Action::DetachVolume(volume_id) => {
            let done = driver.detach_volume(&spec, &volume_id).await;
            reporter.change(id, "detach-volume", &volume_id, done).await
        }
        Action::AttachNetwork(network_id) => {
            let done = driver.attach_network(&spec, &network_id).await;
            reporter
                .change(id, "attach-network", &network_id, done)
                .await
        }
        Action::DetachNetwork(network_id) => {
            let done = driver.detach_network(&spec, &network_id).await;
            reporter
                .change(id, "detach-network", &network_id, done)
                .await
        }
        Action::Snapshot(snapshot_id) => {
            let done = driver.snapshot(&spec, &snapshot_id).await;
            reporter.change(id, "snapshot", &snapshot_id, done).await
        }
        // Stopped for its move: the migration takes it from here (or rolls it back).
        Action::Reconcile if mover.moved_away(id) => {}
        Action::Reconcile => reconcile(driver, reporter, id, &spec, state.status).await,
    }
}

/// After a restart: what the log says against what runs.
async fn reconcile<D: Driver>(
    driver: &D,
    reporter: &Reporter,
    id: &InstanceId,
    spec: &InstanceSpec,
    status: InstanceStatus,
) {
    let adopted = driver.adopt(spec).await;
    match (status, adopted) {
        // A launch (or start) that was under way: booted meanwhile, or boot it now.
        (InstanceStatus::Booting, Ok(Some(r))) => reporter.booted(id, Ok(r), "").await,
        (InstanceStatus::Booting, _) => reporter.booted(id, driver.launch(spec).await, "").await,
        (InstanceStatus::Running, Ok(Some(r))) => {
            tracing::info!(instance = %id, pid = r.pid, "re-adopted");
        }
        (InstanceStatus::Running, Ok(None)) => {
            reporter
                .report(
                    id,
                    InstanceReport::Failed {
                        reason: format!(
                            "{} was not running when its host's agent restarted",
                            driver.hypervisor()
                        ),
                    },
                )
                .await
        }
        (InstanceStatus::Running, Err(e)) => {
            reporter
                .report(
                    id,
                    InstanceReport::Failed {
                        reason: e.to_string(),
                    },
                )
                .await
        }
        (InstanceStatus::Stopped | InstanceStatus::Failed, Ok(Some(_))) => {
            let _ = driver.stop(spec).await;
        }
        (InstanceStatus::Terminated, _) => {
            let _ = driver.terminate(spec).await;
        }
        _ => {}
    }
}

/// Sends the host's reports.
#[derive(Clone)]
pub(crate) struct Reporter {
    commands: CommandClient,
    host_id: HostId,
}

impl Reporter {
    /// Reports a boot's outcome: running, or failed (the reason after `context`).
    pub(crate) async fn booted(
        &self,
        id: &InstanceId,
        booted: Result<crate::Running, crate::DriverError>,
        context: &str,
    ) {
        let report = match booted {
            Ok(running) => InstanceReport::Running { pid: running.pid },
            Err(e) => InstanceReport::Failed {
                reason: format!("{context}{e}"),
            },
        };
        self.report(id, report).await
    }

    /// Reports a change the driver could not carry out (done: nothing to report).
    async fn change(
        &self,
        id: &InstanceId,
        operation: &str,
        target: &str,
        done: Result<(), crate::DriverError>,
    ) {
        if let Err(e) = done {
            tracing::warn!(instance = %id, operation, target, error = %e, "change not carried out");
            let report = InstanceReport::ChangeFailed {
                operation: operation.to_string(),
                target: target.to_string(),
                reason: e.to_string(),
            };
            self.report(id, report).await;
        }
    }

    /// Reports a migration step; the log position of what it recorded, or why it was refused.
    pub(crate) async fn migration(
        &self,
        id: &streamfleet_bus_schemas::ids::MigrationId,
        report: streamfleet_bus_schemas::migration::MigrationReport,
    ) -> Result<u64, String> {
        let command =
            Command::ReportMigration(streamfleet_bus_schemas::migration::ReportMigration {
                migration_id: id.clone(),
                host_id: self.host_id.clone(),
                report,
            });
        match self.commands.submit(Uuid::now_v7(), &command).await {
            Ok(events) => Ok(events.iter().map(|e| e.position).max().unwrap_or(0)),
            Err(e) => {
                tracing::warn!(migration = %id, error = %e, "migration step refused");
                Err(e.to_string())
            }
        }
    }

    /// Reports that instance `id` runs here now, moved by `migration` from `from`.
    pub(crate) async fn moved(
        &self,
        id: &InstanceId,
        migration: &streamfleet_bus_schemas::ids::MigrationId,
        from: &HostId,
        pid: u32,
    ) {
        let report = InstanceReport::Moved {
            migration_id: migration.clone(),
            from_host: from.clone(),
            pid,
        };
        self.report(id, report).await
    }

    async fn report(&self, id: &InstanceId, report: InstanceReport) {
        let command = Command::ReportInstance(ReportInstance {
            instance_id: id.clone(),
            host_id: self.host_id.clone(),
            report,
        });
        if let Err(e) = self.commands.submit(Uuid::now_v7(), &command).await {
            tracing::warn!(instance = %id, error = %e, "report refused");
        }
    }
}
