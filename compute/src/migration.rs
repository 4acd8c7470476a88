//! A compute host's part in migrations: what it does when a migration's event concerns it
//! ([`duty`], pure), and the thin loops that carry a duty out with the driver and report each
//! step back ([`Mover`]).
//!
//! Invariant: the host acts on what the log recorded, never on what it did before: each duty
//! starts from the migration's recorded step, so an agent restarted at any step resumes with the
//! next one ([`resume`]) and never does a recorded step twice. Each step is reported before the
//! next begins; a step the node refuses (a failure was recorded first) ends the duty, and the
//! host undoes only its own side. An instance's duties run one at a time, in the order they
//! came (a queue per instance), and a migration's clean-up never touches the copy a later
//! migration of the same instance uses.

use crate::agent::Reporter;
use crate::driver::{Driver, InstanceSpec};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::ids::{HostId, InstanceId, MigrationId};
use streamfleet_bus_schemas::migration::{MigrationReport, MigrationTrigger};
use streamfleet_domain::migration::{MigrationState, MigrationStep};
use tokio::sync::watch;

/// How long each waiting step may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationSettings {
    /// At the deadline: how long the guest may take to power off cleanly before it is paused.
    pub grace: Duration,
    /// Source: how long after its instance stopped it waits for the target's launch before it
    /// gives up and starts the instance again.
    pub launch_timeout: Duration,
    /// Target: how long the instance may take to answer once its addresses lead here.
    pub answer_timeout: Duration,
}

impl Default for MigrationSettings {
    fn default() -> Self {
        MigrationSettings {
            grace: Duration::from_secs(20),
            launch_timeout: Duration::from_secs(240),
            answer_timeout: Duration::from_secs(30),
        }
    }
}

/// What this host does for a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    /// Target: export empty disks.
    PrepareTarget,
    /// Source: copy, then a round every interval until the move (or the deadline: then halt
    /// and start it).
    Sync,
    /// Source: detach the addresses, sync the rest, stop; then wait for the target's launch.
    Move,
    /// Target: boot from the synced disks, take the addresses, see it answer.
    Launch,
    /// Source: after a failure, run the instance here again.
    RollBack,
    /// Source: stop syncing (cancelled).
    EndSync,
    /// Target: drop the copy (failed or cancelled).
    DiscardCopy,
    /// Source: the instance runs on the target; drop the old copy.
    RemoveSource,
}

/// Which side `host` is of `s`.
fn side(host: &HostId, s: &MigrationState) -> (bool, bool) {
    (s.plan.source_host == *host, s.plan.target_host == *host)
}

/// What `host` does when `event` has made the migration `s`.
pub fn duty(host: &HostId, event: &Event, s: &MigrationState) -> Option<Duty> {
    let (source, target) = side(host, s);
    Some(match event {
        Event::MigrationScheduled(_) if target => Duty::PrepareTarget,
        Event::MigrationTargetReady(_) if source => Duty::Sync,
        Event::MigrationStarted(_) if source => Duty::Move,
        Event::MigrationSourceStopped(_) if target => Duty::Launch,
        Event::MigrationFailed(_) if source => Duty::RollBack,
        Event::MigrationFailed(_) | Event::MigrationCancelled(_) if target => Duty::DiscardCopy,
        Event::MigrationCancelled(_) if source => Duty::EndSync,
        Event::MigrationCompleted(_) if source => Duty::RemoveSource,
        _ => return None,
    })
}

/// What `host` takes up again after a restart, from the migration's recorded step.
pub fn resume(host: &HostId, s: &MigrationState) -> Option<Duty> {
    use MigrationStep as S;
    let (source, target) = side(host, s);
    Some(match s.step {
        S::Scheduled if target => Duty::PrepareTarget,
        S::TargetReady | S::Syncing | S::Synced if source => Duty::Sync,
        // The target's exports end with its agent's process only if it ran them; ask again.
        S::TargetReady | S::Syncing | S::Synced | S::Started | S::NetworkDetached if target => {
            Duty::PrepareTarget
        }
        S::Started | S::NetworkDetached | S::FinalSynced | S::SourceStopped if source => Duty::Move,
        S::SourceStopped | S::TargetLaunched | S::NetworkAttached if target => Duty::Launch,
        S::Failed if source => Duty::RollBack,
        S::Failed | S::Cancelled | S::RolledBack if target => Duty::DiscardCopy,
        S::Completed if source => Duty::RemoveSource,
        S::Cancelled if source => Duty::EndSync,
        _ => return None,
    })
}

/// The instance as the migration runs it.
fn spec_of(s: &MigrationState) -> InstanceSpec {
    InstanceSpec {
        instance_id: s.plan.instance_id.clone(),
        image: s.plan.image.clone(),
        cpus: s.plan.cpus,
        memory_mib: s.plan.memory_mib,
        addresses: s.plan.addresses.clone(),
        volumes: s.plan.volumes.clone(),
        networks: s.plan.networks.clone(),
    }
}

/// Carries out this host's duties.
pub struct Mover<D> {
    driver: Arc<D>,
    reporter: Reporter,
    host: HostId,
    settings: MigrationSettings,
    /// Every migration's state, as folded from the log.
    states: Mutex<HashMap<MigrationId, MigrationState>>,
    /// Where each migration was scheduled in the log (the latest of an instance's counts).
    scheduled: Mutex<HashMap<MigrationId, u64>>,
    /// One duty at a time per instance, in the order they were started: a queue each.
    queues: Mutex<HashMap<InstanceId, tokio::sync::mpsc::UnboundedSender<(MigrationId, Duty)>>>,
    /// The log position folded last, for the duties that wait for a step.
    folded: watch::Sender<u64>,
}

impl<D: Driver> Mover<D> {
    /// A mover for `host`.
    pub(crate) fn new(
        driver: Arc<D>,
        reporter: Reporter,
        host: HostId,
        settings: MigrationSettings,
    ) -> Arc<Self> {
        Arc::new(Mover {
            driver,
            reporter,
            host,
            settings,
            states: Mutex::new(HashMap::new()),
            scheduled: Mutex::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
            folded: watch::channel(0).0,
        })
    }

    /// Folds one event of migration `id` recorded at `position`; with `live`, starts the duty it
    /// gives this host.
    pub(crate) fn follow(
        self: &Arc<Self>,
        id: MigrationId,
        event: &Event,
        position: u64,
        live: bool,
    ) {
        if let Event::MigrationScheduled(_) = event {
            self.scheduled
                .lock()
                .expect("scheduled")
                .insert(id.clone(), position);
        }
        let next = {
            let mut states = self.states.lock().expect("migrations");
            let before = states
                .remove(&id)
                .map(streamfleet_domain::State::Migration)
                .unwrap_or_default();
            match streamfleet_domain::evolve(before, event) {
                streamfleet_domain::State::Migration(s) => {
                    states.insert(id.clone(), s.clone());
                    s
                }
                _ => return,
            }
        };
        self.folded.send_replace(position);
        if live && let Some(d) = duty(&self.host, event, &next) {
            self.start(id, d);
        }
    }

    /// After the history is folded: takes up every unfinished duty of each instance's latest
    /// migration (an earlier one's clean-up would remove the copy a later one uses).
    pub(crate) fn resume_all(self: &Arc<Self>) {
        let scheduled = self.scheduled.lock().expect("scheduled").clone();
        let states = self.states.lock().expect("migrations").clone();
        let mut latest: HashMap<&InstanceId, (u64, &MigrationId)> = HashMap::new();
        for (id, s) in &states {
            let at = scheduled.get(id).copied().unwrap_or(0);
            let entry = latest.entry(&s.plan.instance_id).or_insert((at, id));
            if entry.0 < at {
                *entry = (at, id);
            }
        }
        let pending: Vec<(MigrationId, Duty)> = latest
            .into_values()
            .filter_map(|(_, id)| {
                let s = states.get(id)?;
                resume(&self.host, s).map(|d| (id.clone(), d))
            })
            .collect();
        for (id, d) in pending {
            tracing::info!(host = %self.host, migration = %id, duty = ?d, "resuming a migration");
            self.start(id, d);
        }
    }

    fn state(&self, id: &MigrationId) -> Option<MigrationState> {
        self.states.lock().expect("migrations").get(id).cloned()
    }

    /// The migration of `instance` this host is the source of, once it is synced (a reboot
    /// moves it then).
    pub(crate) fn synced_from_here(&self, instance: &InstanceId) -> Option<MigrationId> {
        self.states
            .lock()
            .expect("migrations")
            .iter()
            .find(|(_, s)| {
                s.plan.instance_id == *instance
                    && s.plan.source_host == self.host
                    && s.step == MigrationStep::Synced
            })
            .map(|(id, _)| id.clone())
    }

    /// Whether `instance` left this host's hypervisor for a move that has not been undone (its
    /// process is gone on purpose: not a failure to report).
    pub(crate) fn moved_away(&self, instance: &InstanceId) -> bool {
        self.states.lock().expect("migrations").values().any(|s| {
            s.plan.instance_id == *instance
                && s.plan.source_host == self.host
                && s.source_stopped
                && s.step != MigrationStep::RolledBack
        })
    }

    /// Whether another migration of the same instance may use the copy here: one that copied
    /// and came later or is not over (an earlier one's clean-up, or a refused second one's, must
    /// leave it).
    fn superseded(&self, id: &MigrationId) -> bool {
        let scheduled = self.scheduled.lock().expect("scheduled");
        let states = self.states.lock().expect("migrations");
        let (Some(at), Some(s)) = (scheduled.get(id), states.get(id)) else {
            return false;
        };
        // One that made a copy (exported disks) and is under way, or came later.
        states.iter().any(|(other, o)| {
            other != id
                && o.plan.instance_id == s.plan.instance_id
                && (o.plan.source_host == self.host || o.plan.target_host == self.host)
                && !o.exports.is_empty()
                && (scheduled.get(other).is_some_and(|later| later > at) || !o.step.is_over())
        })
    }

    /// Another migration of the same instance, scheduled earlier and not over.
    fn earlier_under_way(&self, id: &MigrationId) -> Option<MigrationId> {
        let scheduled = self.scheduled.lock().expect("scheduled");
        let states = self.states.lock().expect("migrations");
        let (at, s) = (scheduled.get(id)?, states.get(id)?);
        states
            .iter()
            .find(|(other, o)| {
                o.plan.instance_id == s.plan.instance_id
                    && !o.step.is_over()
                    && o.step != MigrationStep::Failed
                    && scheduled.get(*other).is_some_and(|earlier| earlier < at)
            })
            .map(|(other, _)| other.clone())
    }

    fn start(self: &Arc<Self>, id: MigrationId, duty: Duty) {
        let Some(instance) = self.state(&id).map(|s| s.plan.instance_id) else {
            return;
        };
        let mut queues = self.queues.lock().expect("queues");
        let queue = queues.entry(instance).or_insert_with(|| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(MigrationId, Duty)>();
            let me = self.clone();
            tokio::spawn(async move {
                while let Some((id, duty)) = rx.recv().await {
                    // The sync runs until the move (hours): beside the queue, not in it.
                    if duty == Duty::Sync {
                        let me = me.clone();
                        tokio::spawn(async move { me.carry_out_logged(&id, duty).await });
                        continue;
                    }
                    me.carry_out_logged(&id, duty).await;
                }
            });
            tx
        });
        let _ = queue.send((id, duty));
    }

    async fn carry_out_logged(self: &Arc<Self>, id: &MigrationId, duty: Duty) {
        if let Err(cause) = self.carry_out(id, duty).await {
            tracing::warn!(migration = %id, ?duty, %cause, "migration duty failed");
        }
    }

    /// Reports one step and waits until it is folded here; `Err`: refused (the migration moved
    /// on without this host).
    async fn report(&self, id: &MigrationId, report: MigrationReport) -> Result<(), String> {
        let position = self.reporter.migration(id, report).await?;
        let mut folded = self.folded.subscribe();
        let _ = tokio::time::timeout(
            Duration::from_secs(60),
            folded.wait_for(|at| *at >= position),
        )
        .await;
        Ok(())
    }

    /// Reports that the step under way failed.
    async fn fail(&self, id: &MigrationId, cause: String) -> Result<(), String> {
        tracing::warn!(migration = %id, %cause, "migration step failed");
        self.report(
            id,
            MigrationReport::Failed {
                cause: cause.clone(),
            },
        )
        .await?;
        Err(cause)
    }

    /// Waits until the migration's step is not `step` any more, up to `within`; the step then.
    async fn left(&self, id: &MigrationId, step: MigrationStep, within: Duration) -> MigrationStep {
        let mut changed = self.folded.subscribe();
        let until = tokio::time::Instant::now() + within;
        loop {
            let now = self.state(id).map(|s| s.step).unwrap_or(step);
            if now != step {
                return now;
            }
            if tokio::time::timeout_at(until, changed.changed())
                .await
                .is_err()
            {
                return step;
            }
        }
    }

    async fn carry_out(self: &Arc<Self>, id: &MigrationId, duty: Duty) -> Result<(), String> {
        let Some(s) = self.state(id) else {
            return Ok(());
        };
        let spec = spec_of(&s);
        let driver = self.driver.as_ref();
        match duty {
            // One move of an instance at a time: a second one fails before anything is copied.
            Duty::PrepareTarget if let Some(other) = self.earlier_under_way(id) => {
                self.fail(
                    id,
                    format!(
                        "instance {} is already migrating under {other}",
                        s.plan.instance_id
                    ),
                )
                .await
            }
            Duty::PrepareTarget => match driver.export_disks(&spec).await {
                Ok(exports) if s.step == MigrationStep::Scheduled => {
                    self.report(id, MigrationReport::TargetReady { exports })
                        .await
                }
                Ok(_) => Ok(()),
                Err(e) => {
                    self.fail(id, format!("preparing the target's disks: {e}"))
                        .await
                }
            },
            Duty::Sync => self.sync(id, &spec).await,
            Duty::Move => self.move_out(id, &spec).await,
            Duty::Launch => self.launch(id, &spec).await,
            Duty::RollBack => {
                // Copying started (else nothing of this migration is on the instance).
                if !s.exports.is_empty() {
                    driver.end_sync(&spec).await;
                }
                // Halted for the move (or stopped): it runs again from its own disks, with its
                // addresses. Never halted: it ran on untouched.
                if s.trigger.is_some() {
                    let _ = driver.power_off(&spec).await;
                    let booted = driver.launch(&spec).await;
                    let failed = booted.as_ref().err().map(|e| e.to_string());
                    self.reporter
                        .booted(&spec.instance_id, booted, "rollback: ")
                        .await;
                    if let Some(e) = failed {
                        return Err(format!("rollback: the instance did not start again: {e}"));
                    }
                }
                self.report(id, MigrationReport::RolledBack).await
            }
            Duty::EndSync => {
                driver.end_sync(&spec).await;
                Ok(())
            }
            // Another migration of the instance uses the same folder: not this one's to remove.
            Duty::DiscardCopy | Duty::RemoveSource if self.superseded(id) => Ok(()),
            Duty::DiscardCopy => {
                let _ = driver.unexport_disks(&spec).await;
                driver.terminate(&spec).await.map_err(|e| e.to_string())
            }
            Duty::RemoveSource => {
                driver.end_sync(&spec).await;
                driver.terminate(&spec).await.map_err(|e| e.to_string())
            }
        }
    }

    /// Source: the initial copy, then a round every interval while synced; at the deadline,
    /// the move.
    async fn sync(&self, id: &MigrationId, spec: &InstanceSpec) -> Result<(), String> {
        let driver = self.driver.as_ref();
        let Some(s) = self.state(id) else {
            return Ok(());
        };
        // After a restart the instance's hypervisor may not be adopted yet.
        if let Err(e) = driver.adopt(spec).await {
            return self.fail(id, format!("the source instance: {e}")).await;
        }
        if s.step == MigrationStep::TargetReady {
            let bytes = spec
                .volumes
                .iter()
                .map(|v| u64::from(v.size_mib) << 20)
                .sum();
            self.report(id, MigrationReport::SyncStarted { bytes })
                .await?;
        }
        // Every start of this duty copies in full: after a restart nothing says what the
        // guest wrote meanwhile.
        let mut full = true;
        let interval = Duration::from_secs(u64::from(s.plan.sync_interval_seconds));
        loop {
            let Some(s) = self.state(id) else {
                return Ok(());
            };
            if !matches!(s.step, MigrationStep::Syncing | MigrationStep::Synced) {
                return Ok(());
            }
            let now = chrono::Utc::now();
            if s.step == MigrationStep::Synced && now >= s.plan.deadline {
                let at = match driver.halt(spec, Some(self.settings.grace)).await {
                    Ok(at) => at,
                    Err(e) => return self.fail(id, format!("halting at the deadline: {e}")).await,
                };
                return self
                    .report(
                        id,
                        MigrationReport::Triggered {
                            trigger: MigrationTrigger::Deadline,
                            guest_stopped_at: at,
                        },
                    )
                    .await;
            }
            let figures = match driver.sync_round(spec, &s.exports, full).await {
                Ok(f) => f,
                Err(e) => return self.fail(id, format!("sync round {}: {e}", s.rounds)).await,
            };
            full = false;
            self.report(
                id,
                MigrationReport::SyncRound {
                    round: s.rounds,
                    bytes_copied: figures.bytes_copied,
                    dirty_bytes_left: figures.dirty_bytes_left,
                    duration_ms: figures.duration.as_millis() as u64,
                },
            )
            .await?;
            // Synced: from now on the guest's reboot is the move's.
            driver.hold_reboots(&spec.instance_id, true);
            let until_deadline = (s.plan.deadline - chrono::Utc::now())
                .to_std()
                .unwrap_or_default();
            self.left(id, MigrationStep::Synced, interval.min(until_deadline))
                .await;
        }
    }

    /// Source: a reboot the guest asked for while synced (it is paused since `at`).
    pub(crate) async fn reboot_held(
        &self,
        instance: &InstanceId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> bool {
        let Some(id) = self.synced_from_here(instance) else {
            return false;
        };
        let report = MigrationReport::Triggered {
            trigger: MigrationTrigger::Reboot,
            guest_stopped_at: at,
        };
        self.report(&id, report).await.is_ok()
    }

    /// Source: a reboot by command while synced: halt the guest and move it.
    pub(crate) async fn reboot_by_command(&self, spec: &InstanceSpec) -> bool {
        let Some(id) = self.synced_from_here(&spec.instance_id) else {
            return false;
        };
        match self.driver.halt(spec, None).await {
            Ok(at) => {
                let report = MigrationReport::Triggered {
                    trigger: MigrationTrigger::Reboot,
                    guest_stopped_at: at,
                };
                self.report(&id, report).await.is_ok()
            }
            Err(e) => {
                let _ = self.fail(&id, format!("halting for the move: {e}")).await;
                false
            }
        }
    }

    /// Source: the move's steps from the one recorded last.
    async fn move_out(
        self: &Arc<Self>,
        id: &MigrationId,
        spec: &InstanceSpec,
    ) -> Result<(), String> {
        let driver = self.driver.as_ref();
        let step = || self.state(id).map(|s| s.step);
        if matches!(
            step(),
            Some(MigrationStep::Started | MigrationStep::NetworkDetached)
        ) {
            // After a restart: take the halted instance's hypervisor over again (which routes
            // its addresses: the detach below is done again too).
            if let Err(e) = driver.adopt(spec).await {
                return self
                    .fail(id, format!("the halted source instance: {e}"))
                    .await;
            }
        }
        if step() == Some(MigrationStep::NetworkDetached) {
            driver.detach_addresses(spec).await;
        }
        if step() == Some(MigrationStep::Started) {
            driver.detach_addresses(spec).await;
            self.report(id, MigrationReport::NetworkDetached).await?;
        }
        if step() == Some(MigrationStep::NetworkDetached) {
            let exports = self.state(id).map(|s| s.exports).unwrap_or_default();
            let figures = match driver.sync_round(spec, &exports, false).await {
                Ok(f) => f,
                Err(e) => return self.fail(id, format!("final sync: {e}")).await,
            };
            self.report(
                id,
                MigrationReport::FinalSynced {
                    bytes_copied: figures.bytes_copied,
                    duration_ms: figures.duration.as_millis() as u64,
                },
            )
            .await?;
        }
        if step() == Some(MigrationStep::FinalSynced) {
            if let Err(e) = driver.power_off(spec).await {
                return self.fail(id, format!("stopping the source: {e}")).await;
            }
            self.report(id, MigrationReport::SourceStopped).await?;
        }
        if step() == Some(MigrationStep::SourceStopped) {
            // The wait for the target's launch holds nothing of the instance's.
            let (me, id) = (self.clone(), id.clone());
            tokio::spawn(async move { me.await_launch(&id).await });
        }
        Ok(())
    }

    /// Source: waits for the target's launch; none in time: the move failed (refused if the
    /// launch was recorded meanwhile: then it is the target's).
    async fn await_launch(&self, id: &MigrationId) {
        let after = self
            .left(
                id,
                MigrationStep::SourceStopped,
                self.settings.launch_timeout,
            )
            .await;
        if after == MigrationStep::SourceStopped {
            let _ = self
                .fail(
                    id,
                    format!(
                        "the target did not launch the instance within {} s",
                        self.settings.launch_timeout.as_secs()
                    ),
                )
                .await;
        }
    }

    /// Target: boot from the synced disks, then take the addresses once the launch is recorded.
    async fn launch(&self, id: &MigrationId, spec: &InstanceSpec) -> Result<(), String> {
        let driver = self.driver.as_ref();
        let Some(s) = self.state(id) else {
            return Ok(());
        };
        if s.step == MigrationStep::SourceStopped {
            if let Err(e) = driver.unexport_disks(spec).await {
                return self.fail(id, format!("ending the exports: {e}")).await;
            }
            let started = std::time::Instant::now();
            let running = match driver.boot_unrouted(spec).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = driver.power_off(spec).await;
                    return self.fail(id, format!("launching on the target: {e}")).await;
                }
            };
            let launched = MigrationReport::TargetLaunched {
                pid: running.pid,
                boot_ms: started.elapsed().as_millis() as u64,
            };
            if let Err(refused) = self.report(id, launched).await {
                // A failure was recorded first: the source runs it; this copy must not.
                let _ = driver.power_off(spec).await;
                return Err(format!("launch not recorded ({refused}); copy stopped"));
            }
        }
        let Some(s) = self.state(id) else {
            return Ok(());
        };
        if s.step == MigrationStep::TargetLaunched {
            let pid = match driver.boot_unrouted(spec).await {
                Ok(r) => r.pid,
                Err(e) => return self.fail(id, format!("launching on the target: {e}")).await,
            };
            self.reporter
                .moved(&spec.instance_id, id, &s.plan.source_host, pid)
                .await;
            if let Err(e) = driver.attach_addresses(spec).await {
                return self
                    .fail(id, format!("routing the addresses here: {e}"))
                    .await;
            }
            self.report(id, MigrationReport::NetworkAttached).await?;
        }
        if self.state(id).map(|s| s.step) == Some(MigrationStep::NetworkAttached) {
            match driver
                .first_answer(spec, self.settings.answer_timeout)
                .await
            {
                Some(at) => self.report(id, MigrationReport::Answered { at }).await?,
                None => {
                    return self
                        .fail(
                            id,
                            format!(
                                "{} did not answer within {} s of its addresses moving",
                                spec.addresses.private,
                                self.settings.answer_timeout.as_secs()
                            ),
                        )
                        .await;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamfleet_bus_schemas::compute::Hypervisor;
    use streamfleet_bus_schemas::instance::InstanceAddresses;
    use streamfleet_bus_schemas::migration::MigrationScheduled;

    fn state(step: MigrationStep) -> MigrationState {
        let mut s = MigrationState::scheduled(MigrationScheduled {
            migration_id: "m".into(),
            instance_id: "i".into(),
            reason: "r".into(),
            customer: "c".into(),
            source_host: "src".into(),
            target_host: "dst".into(),
            matched: vec![],
            deadline: chrono::Utc::now(),
            sync_interval_seconds: 5,
            hypervisor: Hypervisor::Qemu,
            image: "linux-busybox".into(),
            cpus: 1,
            memory_mib: 128,
            addresses: InstanceAddresses {
                private: "10.77.0.2".into(),
                public: "198.18.0.2".into(),
            },
            volumes: vec![],
            networks: vec![],
        });
        s.step = step;
        s
    }

    /// After a restart each side takes up exactly the duty its recorded step leaves it, and a
    /// third host none.
    #[test]
    fn a_restarted_host_takes_up_the_duty_its_recorded_step_leaves() {
        use Duty::*;
        use MigrationStep as S;
        let table: [(S, Option<Duty>, Option<Duty>); 14] = [
            (S::Scheduled, None, Some(PrepareTarget)),
            (S::TargetReady, Some(Sync), Some(PrepareTarget)),
            (S::Syncing, Some(Sync), Some(PrepareTarget)),
            (S::Synced, Some(Sync), Some(PrepareTarget)),
            (S::Started, Some(Move), Some(PrepareTarget)),
            (S::NetworkDetached, Some(Move), Some(PrepareTarget)),
            (S::FinalSynced, Some(Move), None),
            (S::SourceStopped, Some(Move), Some(Launch)),
            (S::TargetLaunched, None, Some(Launch)),
            (S::NetworkAttached, None, Some(Launch)),
            (S::Completed, Some(RemoveSource), None),
            (S::Failed, Some(RollBack), Some(DiscardCopy)),
            (S::RolledBack, None, Some(DiscardCopy)),
            (S::Cancelled, Some(EndSync), Some(DiscardCopy)),
        ];
        for (step, source, target) in table {
            let s = state(step);
            assert_eq!(resume(&"src".into(), &s), source, "source at {step:?}");
            assert_eq!(resume(&"dst".into(), &s), target, "target at {step:?}");
            assert_eq!(
                resume(&"other".into(), &s),
                None,
                "a third host at {step:?}"
            );
        }
    }
}
