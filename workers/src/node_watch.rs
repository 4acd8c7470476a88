//! The node watcher: the edge around the pure liveness [`Detector`] — it follows the file
//! systems' and nodes' events, hears every compute host's probes of the nodes it runs
//! (`sf.node.probe.<host>`), and records what the detector concludes (`RecordNodeLiveness`) and
//! each metadata node's scheduled checkpoint (`CheckpointNode`, cause `schedule`).
//!
//! Invariant: the watcher judges only what it saw itself. While it catches up on history it only
//! folds each node's stream (with [`streamfleet_domain::evolve`]); at the live position it starts
//! watching every node that serves (or is unresponsive, or restarts for a checkpoint) from its
//! own clock's `now`, so a restarted watcher never fails a node for time it was itself down.
//! Then:
//! - `NodeServing`, `NodeRecovered`: watch the node's (new) placement from now;
//! - `NodeUnresponsive`, `NodeAnswering`: keep it watched;
//! - `NodeFailed`, `ReplacementChosen`: stop watching (the recovery is the hosts' business);
//! - `CheckpointRequested`: grace (its master restarts cleanly to write the checkpoint).
//!
//! The node's deciders are the authority: a verdict they refuse (its placement is gone, the node
//! moved on) is logged at debug and dropped. Command ids derive from what is sent (a verdict's
//! content; a checkpoint's node, placement and count of checkpoints so far), so a repeat — after
//! a lost reply, or by a restarted watcher — is recorded once.

use crate::{Refused, WorkersError};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;
use streamfleet_bus_client::{CommandClient, FollowError, FollowedEvent, Follower, NatsLogin};
use streamfleet_bus_schemas::dfs::{
    CheckpointCause, CheckpointNode, Liveness, NodeProbes, NodeRole, RecordNodeLiveness,
};
use streamfleet_bus_schemas::ids::{FileSystemId, HostId, NodeId};
use streamfleet_bus_schemas::principal::Role;
use streamfleet_bus_schemas::{Command, Event, subjects};
use streamfleet_domain::State;
use streamfleet_domain::dfs::{NodePhase, NodeState};
use streamfleet_domain::liveness::{Detector, Verdict};
use tokio::sync::mpsc;

/// How the node watcher judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeWatchConfig {
    /// Silence after which a node is failed (`--node-timeout-ms`).
    pub timeout: Duration,
    /// How often the hosts probe their nodes, and how often the watcher looks
    /// (`--node-probe-ms`).
    pub probe_interval: Duration,
}

impl Default for NodeWatchConfig {
    fn default() -> Self {
        NodeWatchConfig {
            timeout: Duration::from_millis(2_000),
            probe_interval: Duration::from_millis(250),
        }
    }
}

/// How long a metadata node restarting for a checkpoint may be silent before it can be failed.
const CHECKPOINT_GRACE: Duration = Duration::from_secs(30);
/// How long before a `Failed` verdict that was not recorded is sent again.
const FAILED_RETRY: Duration = Duration::from_secs(5);
/// How long before a scheduled checkpoint that is still due is asked for again.
const CHECKPOINT_RETRY: Duration = Duration::from_secs(10);
/// Commands waiting to be sent, at most.
const QUEUE: usize = 4096;

fn span(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// What an event of a node's stream does to the watch over it (while live).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchChange {
    /// It serves (again): watch its placement from now.
    Watch,
    /// Still its placement: keep watching (watch it if it is not).
    Keep,
    /// Failed, or being recovered: stop watching.
    Unwatch,
    /// It restarts cleanly for a checkpoint: give it grace.
    Grace,
    /// Nothing changes.
    Nothing,
}

/// What `event` does to the watch over its node.
pub(crate) fn watch_change(event: &Event) -> WatchChange {
    match event {
        Event::NodeServing(_) | Event::NodeRecovered(_) => WatchChange::Watch,
        Event::NodeUnresponsive(_) | Event::NodeAnswering(_) => WatchChange::Keep,
        Event::NodeFailed(_) | Event::ReplacementChosen(_) => WatchChange::Unwatch,
        Event::CheckpointRequested(_) => WatchChange::Grace,
        _ => WatchChange::Nothing,
    }
}

/// Decodes a probe message: JSON [`NodeProbes`] from the host its subject names.
pub(crate) fn decode_probes(subject: &str, payload: &[u8]) -> Result<NodeProbes, String> {
    let probes: NodeProbes =
        serde_json::from_slice(payload).map_err(|e| format!("not NodeProbes: {e}"))?;
    let expected = subjects::node_probe(probes.host_id.as_str());
    if subject != expected {
        return Err(format!(
            "host {} published on {subject}, not {expected}",
            probes.host_id
        ));
    }
    Ok(probes)
}

/// A command to send, with its id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outgoing {
    /// Derived from what is sent: a repeat is deduplicated by the node.
    pub id: uuid::Uuid,
    /// The command.
    pub command: Command,
}

impl Outgoing {
    fn keyed(key: &str, command: Command) -> Outgoing {
        Outgoing {
            id: uuid::Uuid::new_v5(&crate::ID_NAMESPACE, key.as_bytes()),
            command,
        }
    }

    fn verdict(v: Verdict, timeout_ms: u64) -> Outgoing {
        let record = RecordNodeLiveness {
            node_id: v.node_id,
            generation: v.generation,
            verdict: v.liveness,
            last_answer_at: v.last_answer_at,
            evidence: v.evidence,
            timeout_ms,
        };
        let key = format!(
            "node-watch/liveness/{}",
            serde_json::to_string(&record).unwrap_or_default()
        );
        Outgoing::keyed(&key, Command::RecordNodeLiveness(record))
    }
}

/// What the watcher keeps of one node.
#[derive(Debug, Clone, Default)]
struct Tracked {
    /// Its stream folded with the domain's `evolve`.
    state: State,
    /// Its file system's declaration of it: file system, role, first host.
    plan: Option<(FileSystemId, NodeRole, HostId)>,
    /// Checkpoints it took (every cause).
    checkpoints: u64,
    /// Its last checkpoint's time, else when it first served: the schedule counts from it.
    checkpoint_base: Option<DateTime<Utc>>,
    /// The `Answering` sent for the silence that began after this last answer (placement, time).
    answering_sent: Option<(u32, DateTime<Utc>)>,
    /// The scheduled checkpoint last asked for (its key) and when.
    checkpoint_asked: Option<(String, DateTime<Utc>)>,
    /// A `Failed` verdict sent, and when to send it again if the log still does not show it.
    failed_sent: Option<(Outgoing, u32, DateTime<Utc>)>,
}

impl Tracked {
    fn node(&self) -> Option<&NodeState> {
        match &self.state {
            State::Node(n) => Some(n),
            _ => None,
        }
    }

    fn phase(&self) -> Option<NodePhase> {
        self.node().map(|n| n.phase)
    }

    fn generation(&self) -> u32 {
        self.node().map_or(0, |n| n.generation)
    }

    fn host(&self) -> Option<&HostId> {
        self.node()
            .and_then(|n| n.host_id.as_ref())
            .or(self.plan.as_ref().map(|p| &p.2))
    }

    fn role(&self) -> Option<NodeRole> {
        self.node()
            .and_then(|n| n.role)
            .or(self.plan.as_ref().map(|p| p.1))
    }

    fn file_system(&self) -> Option<&FileSystemId> {
        self.node()
            .and_then(|n| n.file_system.as_ref())
            .or(self.plan.as_ref().map(|p| &p.0))
    }

    /// Whether a `Failed` verdict is accepted in its phase.
    fn failable(&self) -> bool {
        matches!(
            self.phase(),
            Some(NodePhase::Serving | NodePhase::Unresponsive | NodePhase::Checkpointing)
        )
    }
}

/// The watcher's state: the nodes as folded from the log, and the detector over them.
#[derive(Debug, Clone)]
pub(crate) struct Watcher {
    detector: Detector,
    live: bool,
    nodes: BTreeMap<NodeId, Tracked>,
    checkpoint_every: BTreeMap<FileSystemId, u32>,
    /// Probe messages that were not [`NodeProbes`] from the host their subject names.
    pub malformed: u64,
    /// Probe results from a host that does not run the node's current placement.
    pub foreign: u64,
}

impl Watcher {
    pub(crate) fn new(config: &NodeWatchConfig) -> Watcher {
        Watcher {
            detector: Detector::new(
                config.timeout.as_millis() as u64,
                config.probe_interval.as_millis() as u64,
            ),
            live: false,
            nodes: BTreeMap::new(),
            checkpoint_every: BTreeMap::new(),
            malformed: 0,
            foreign: 0,
        }
    }

    /// The placement of `node_id` watched now.
    #[cfg(test)]
    pub(crate) fn watching(&self, node_id: &NodeId) -> Option<u32> {
        self.detector.watching(node_id)
    }

    /// How many nodes are watched.
    pub(crate) fn watched(&self) -> usize {
        self.nodes
            .keys()
            .filter(|id| self.detector.watching(id).is_some())
            .count()
    }

    /// Folds one event of stream `stream` recorded at `at`; when live, watches, unwatches or
    /// graces its node as of `now`.
    pub(crate) fn apply(
        &mut self,
        stream: &str,
        event: &Event,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        if let Event::FileSystemCreated(fs) = event {
            self.checkpoint_every
                .insert(fs.file_system.clone(), fs.checkpoint_every_seconds);
            for plan in &fs.nodes {
                self.nodes.entry(plan.node_id.clone()).or_default().plan =
                    Some((fs.file_system.clone(), plan.role, plan.host_id.clone()));
            }
            return;
        }
        if Event::category_of_type(event.type_name()) != Some("node") {
            return;
        }
        let Some(node_id) = stream.strip_prefix("node-") else {
            return;
        };
        let node_id: NodeId = node_id.into();
        let t = self.nodes.entry(node_id.clone()).or_default();
        t.state = streamfleet_domain::evolve(std::mem::take(&mut t.state), event);
        match event {
            Event::NodeServing(_) | Event::NodeRecovered(_) => {
                t.checkpoint_base.get_or_insert(at);
            }
            Event::CheckpointTaken(_) => {
                t.checkpoints += 1;
                t.checkpoint_base = Some(at);
            }
            _ => {}
        }
        if !self.live {
            return;
        }
        let generation = t.generation();
        match watch_change(event) {
            WatchChange::Watch => {
                self.detector.watch(&node_id, generation, now);
                t.failed_sent = None;
            }
            WatchChange::Keep => {
                if self.detector.watching(&node_id) != Some(generation) {
                    self.detector.watch(&node_id, generation, now);
                }
            }
            WatchChange::Unwatch => {
                self.detector.unwatch(&node_id);
                t.failed_sent = None;
            }
            WatchChange::Grace => {
                if self.detector.watching(&node_id) != Some(generation) {
                    self.detector.watch(&node_id, generation, now);
                }
                self.detector.grace(&node_id, now + span(CHECKPOINT_GRACE));
            }
            WatchChange::Nothing => {}
        }
    }

    /// Caught up: from `now` on, watch every node that serves, is unresponsive, or restarts
    /// for a checkpoint (with grace).
    pub(crate) fn go_live(&mut self, now: DateTime<Utc>) {
        self.live = true;
        for (id, t) in &self.nodes {
            match t.phase() {
                Some(NodePhase::Serving | NodePhase::Unresponsive) => {
                    self.detector.watch(id, t.generation(), now);
                }
                Some(NodePhase::Checkpointing) => {
                    self.detector.watch(id, t.generation(), now);
                    self.detector.grace(id, now + span(CHECKPOINT_GRACE));
                }
                _ => {}
            }
        }
    }

    /// One host's probe results, heard at `now`: the verdicts they bring.
    pub(crate) fn probes(&mut self, probes: &NodeProbes, now: DateTime<Utc>) -> Vec<Outgoing> {
        let timeout_ms = self.detector.timeout_ms;
        let mut out = Vec::new();
        for p in &probes.nodes {
            let Some(t) = self.nodes.get_mut(&p.node_id) else {
                continue;
            };
            if t.host() != Some(&probes.host_id) {
                self.foreign += 1;
                tracing::debug!(node = %p.node_id, host = %probes.host_id, runs_on = ?t.host(), "probe result from a host that does not run the node; ignored");
                continue;
            }
            let verdict = self
                .detector
                .probe(&p.node_id, p.generation, p.answered, &p.detail, now);
            match verdict {
                Some(v) => {
                    if v.liveness == Liveness::Answering {
                        t.answering_sent = Some((v.generation, v.last_answer_at));
                    }
                    out.push(Outgoing::verdict(v, timeout_ms));
                }
                // The log says unresponsive but this detector never did (the watcher restarted,
                // or its own `Answering` was refused before its `Unresponsive` was recorded):
                // the node answers, so say so once for that silence.
                None if p.answered => {
                    let Some(n) = t.node() else { continue };
                    if n.phase != NodePhase::Unresponsive
                        || n.generation != p.generation
                        || self.detector.watching(&p.node_id) != Some(p.generation)
                    {
                        continue;
                    }
                    let since = n.last_answer_at.unwrap_or(now);
                    if t.answering_sent == Some((p.generation, since)) {
                        continue;
                    }
                    t.answering_sent = Some((p.generation, since));
                    out.push(Outgoing::verdict(
                        Verdict {
                            node_id: p.node_id.clone(),
                            generation: p.generation,
                            liveness: Liveness::Answering,
                            last_answer_at: since,
                            evidence: format!("answers again: {}", p.detail),
                        },
                        timeout_ms,
                    ));
                }
                None => {}
            }
        }
        out
    }

    /// What is due at `now`: the detector's verdicts, a `Failed` verdict the log does not show
    /// yet, scheduled checkpoints.
    pub(crate) fn tick(&mut self, now: DateTime<Utc>) -> Vec<Outgoing> {
        let timeout_ms = self.detector.timeout_ms;
        let mut out = Vec::new();
        for v in self.detector.tick(now) {
            let failed = v.liveness == Liveness::Failed;
            let (id, generation) = (v.node_id.clone(), v.generation);
            let o = Outgoing::verdict(v, timeout_ms);
            if failed && let Some(t) = self.nodes.get_mut(&id) {
                t.failed_sent = Some((o.clone(), generation, now + span(FAILED_RETRY)));
            }
            out.push(o);
        }
        for (id, t) in &mut self.nodes {
            let Some((o, generation, at)) = t.failed_sent.clone() else {
                continue;
            };
            let still = t.failable()
                && t.generation() == generation
                && self.detector.watching(id).is_none();
            if !still {
                t.failed_sent = None;
            } else if now >= at {
                tracing::info!(node = %id, generation, "failed verdict not recorded yet; sending it again");
                t.failed_sent = Some((o.clone(), generation, now + span(FAILED_RETRY)));
                out.push(o);
            }
        }
        for (id, t) in &mut self.nodes {
            if let Some(o) = checkpoint_due(id, t, &self.checkpoint_every, now) {
                out.push(o);
            }
        }
        out
    }
}

/// The scheduled checkpoint of metadata node `id`, if one is due at `now` and not just asked.
fn checkpoint_due(
    id: &NodeId,
    t: &mut Tracked,
    every: &BTreeMap<FileSystemId, u32>,
    now: DateTime<Utc>,
) -> Option<Outgoing> {
    if t.phase() != Some(NodePhase::Serving) || t.role() != Some(NodeRole::Metadata) {
        return None;
    }
    let every = *every.get(t.file_system()?)?;
    let base = t.checkpoint_base?;
    if now < base + chrono::Duration::seconds(i64::from(every)) {
        return None;
    }
    let key = format!(
        "node-watch/checkpoint/{id}/{}/{}",
        t.generation(),
        t.checkpoints
    );
    if let Some((asked, at)) = &t.checkpoint_asked
        && *asked == key
        && now < *at + span(CHECKPOINT_RETRY)
    {
        return None;
    }
    t.checkpoint_asked = Some((key.clone(), now));
    Some(Outgoing::keyed(
        &key,
        Command::CheckpointNode(CheckpointNode {
            node_id: id.clone(),
            cause: CheckpointCause::Schedule,
        }),
    ))
}

/// Folds one followed event into the watcher (an unreadable one is logged and passed over).
fn fold(watcher: &mut Watcher, followed: &FollowedEvent, now: DateTime<Utc>) {
    let envelope = match followed.envelope() {
        Ok(e) => e,
        Err(error) => {
            tracing::error!(position = followed.position, %error, "unreadable event; skipped");
            return;
        }
    };
    let event = match Event::from_parts(&envelope.body.event_type, envelope.body.data) {
        Ok(e) => e,
        Err(error) => {
            tracing::error!(position = followed.position, %error, "event of an unknown shape; skipped");
            return;
        }
    };
    watcher.apply(&envelope.body.subject, &event, envelope.body.time, now);
}

/// Queues commands for the sender (a full queue drops them: the detector's verdicts are
/// level-triggered enough — a lost `Failed` is sent again, a due checkpoint asked again).
fn queue(tx: &mpsc::Sender<Outgoing>, out: Vec<Outgoing>) {
    for o in out {
        if let Err(error) = tx.try_send(o) {
            tracing::warn!(%error, "node watcher's command queue is full; a command is dropped");
        }
    }
}

/// Sends the queued commands in order; a refusal is the node moving on, not an error.
async fn send_all(commands: CommandClient, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(o) = rx.recv().await {
        let type_name = o.command.type_name();
        let (node, what) = match &o.command {
            Command::RecordNodeLiveness(r) => (
                r.node_id.clone(),
                format!("{:?} (placement {})", r.verdict, r.generation),
            ),
            Command::CheckpointNode(c) => (c.node_id.clone(), "scheduled checkpoint".into()),
            _ => (NodeId::from(""), String::new()),
        };
        match commands.submit(o.id, &o.command).await {
            Ok(_) => tracing::info!(%node, command = type_name, %what, "node watcher: recorded"),
            Err(Refused::Rejected { rule, message }) => {
                tracing::debug!(%node, command = type_name, %what, %rule, %message, "node watcher: refused; dropped")
            }
            Err(Refused::Undelivered(error)) => {
                tracing::warn!(%node, command = type_name, %what, %error, "node watcher: not delivered")
            }
        }
    }
}

/// Runs the node watcher until `shutdown` resolves: catches up on the log (judging nothing),
/// then watches the nodes that serve, hears the hosts' probes and looks every probe interval.
pub async fn run(
    login: NatsLogin,
    config: NodeWatchConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), WorkersError> {
    let client = streamfleet_bus_client::connect(&login)
        .await
        .map_err(|e| WorkersError::Nats(e.to_string()))?;
    let commands = CommandClient::new(client.clone(), Role::Worker, "streamfleet/node-watch");
    let head = crate::log_head(&client).await?;
    let mut follower = Follower::start_on(
        client.clone(),
        1,
        &[subjects::DFS_EVENTS, subjects::NODE_EVENTS],
    )
    .await?;
    let mut watcher = Watcher::new(&config);
    while follower.position() <= head {
        let followed = follower.next().await?;
        fold(&mut watcher, &followed, Utc::now());
    }
    let mut probes = client
        .subscribe(subjects::NODE_PROBES)
        .await
        .map_err(|e| WorkersError::Nats(e.to_string()))?;
    watcher.go_live(Utc::now());
    tracing::info!(
        position = head,
        watched = watcher.watched(),
        timeout_ms = config.timeout.as_millis() as u64,
        probe_ms = config.probe_interval.as_millis() as u64,
        "node watcher caught up; watching"
    );
    // The follower runs on its own (its `next` is not cancel-safe inside a select).
    let (events_tx, mut events) = mpsc::channel::<Result<FollowedEvent, FollowError>>(1024);
    let following = tokio::spawn(async move {
        loop {
            let next = follower.next().await;
            let end = next.is_err();
            if events_tx.send(next).await.is_err() || end {
                break;
            }
        }
    });
    let (send_tx, send_rx) = mpsc::channel(QUEUE);
    let sending = tokio::spawn(send_all(commands, send_rx));
    let mut ticks = tokio::time::interval(config.probe_interval.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let outcome = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            followed = events.recv() => match followed {
                Some(Ok(f)) => fold(&mut watcher, &f, Utc::now()),
                Some(Err(error)) => break Err(WorkersError::Follow(error)),
                None => break Err(WorkersError::Follow(FollowError::Closed)),
            },
            msg = probes.next() => match msg {
                Some(msg) => match decode_probes(msg.subject.as_str(), &msg.payload) {
                    Ok(p) => queue(&send_tx, watcher.probes(&p, Utc::now())),
                    Err(error) => {
                        watcher.malformed += 1;
                        let n = watcher.malformed;
                        if n == 1 || n.is_multiple_of(100) {
                            tracing::warn!(subject = %msg.subject, %error, malformed = n, "malformed node probes; ignored");
                        } else {
                            tracing::debug!(subject = %msg.subject, %error, malformed = n, "malformed node probes; ignored");
                        }
                    }
                },
                None => break Err(WorkersError::Nats("the node probes' subscription ended".into())),
            },
            _ = ticks.tick() => queue(&send_tx, watcher.tick(Utc::now())),
        }
    };
    following.abort();
    sending.abort();
    let _ = client.flush().await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamfleet_bus_schemas::dfs::*;
    use streamfleet_bus_schemas::payloads::NodeFailed;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap()
            + chrono::Duration::milliseconds(ms)
    }

    fn config() -> NodeWatchConfig {
        NodeWatchConfig {
            timeout: Duration::from_millis(2000),
            probe_interval: Duration::from_millis(250),
        }
    }

    fn created(every: u32) -> Event {
        let plan = |id: &str, role, host: &str| NodePlan {
            node_id: id.into(),
            role,
            host_id: host.into(),
            address: "10.77.0.9".into(),
            volume_id: format!("{id}-vol"),
            cpus: 1,
            memory_mib: 256,
        };
        Event::FileSystemCreated(FileSystemCreated {
            file_system: "fs".into(),
            region: "eu-west".into(),
            goal: 1,
            volume_mib: 256,
            checkpoint_every_seconds: every,
            nodes: vec![
                plan("fs-master", NodeRole::Metadata, "c1"),
                plan("fs-cs1", NodeRole::Data, "c2"),
            ],
            reasons: vec![],
        })
    }

    fn serving(id: &str, role: NodeRole, host: &str, generation: u32) -> Event {
        Event::NodeServing(NodeServing {
            node_id: id.into(),
            file_system: "fs".into(),
            role,
            host_id: host.into(),
            generation,
            address: "10.77.0.9".into(),
            volume_id: format!("{id}-vol"),
            pid: 7,
        })
    }

    fn failed(id: &str, host: &str, generation: u32) -> Event {
        Event::NodeFailed(NodeFailed {
            node_id: id.into(),
            reason: "silent".into(),
            host_id: Some(host.into()),
            generation: Some(generation),
            last_answer_at: None,
            timeout_ms: Some(2000),
        })
    }

    fn chosen(id: &str, host: &str, from: &str, generation: u32) -> Event {
        Event::ReplacementChosen(ReplacementChosen {
            node_id: id.into(),
            generation,
            host_id: host.into(),
            from_host: from.into(),
            cpus: 1,
            memory_mib: 256,
            reasons: vec![],
        })
    }

    fn probes(host: &str, results: &[(&str, u32, bool)]) -> NodeProbes {
        NodeProbes {
            host_id: host.into(),
            nodes: results
                .iter()
                .map(|(id, generation, answered)| NodeProbe {
                    node_id: (*id).into(),
                    generation: *generation,
                    answered: *answered,
                    detail: if *answered {
                        "ok".into()
                    } else {
                        "connection refused".into()
                    },
                })
                .collect(),
        }
    }

    fn verdicts(out: &[Outgoing]) -> Vec<(String, Liveness)> {
        out.iter()
            .filter_map(|o| match &o.command {
                Command::RecordNodeLiveness(r) => Some((r.node_id.to_string(), r.verdict)),
                _ => None,
            })
            .collect()
    }

    fn checkpoints(out: &[Outgoing]) -> Vec<&Outgoing> {
        out.iter()
            .filter(|o| matches!(o.command, Command::CheckpointNode(_)))
            .collect()
    }

    /// A file system whose two nodes serve, folded from history recorded at `t(0)`.
    fn history(every: u32) -> Watcher {
        let mut w = Watcher::new(&config());
        w.apply("dfs-fs", &created(every), t(0), t(0));
        w.apply(
            "node-fs-master",
            &serving("fs-master", NodeRole::Metadata, "c1", 0),
            t(0),
            t(0),
        );
        w.apply(
            "node-fs-cs1",
            &serving("fs-cs1", NodeRole::Data, "c2", 0),
            t(0),
            t(0),
        );
        w
    }

    #[test]
    fn which_events_watch_and_unwatch() {
        assert_eq!(
            watch_change(&serving("n", NodeRole::Data, "h", 0)),
            WatchChange::Watch
        );
        assert_eq!(watch_change(&failed("n", "h", 0)), WatchChange::Unwatch);
        assert_eq!(
            watch_change(&chosen("n", "h2", "h", 1)),
            WatchChange::Unwatch
        );
        assert_eq!(
            watch_change(&Event::NodeAnswering(NodeAnswering {
                node_id: "n".into(),
                generation: 0,
                silent_ms: 10
            })),
            WatchChange::Keep
        );
        assert_eq!(
            watch_change(&Event::CheckpointRequested(CheckpointRequested {
                node_id: "n".into(),
                host_id: "h".into(),
                generation: 0,
                cause: CheckpointCause::Schedule,
            })),
            WatchChange::Grace
        );
        assert_eq!(
            watch_change(&Event::NodeRecovered(NodeRecovered {
                node_id: "n".into(),
                host_id: "h2".into(),
                generation: 1,
                recovery_ms: 1,
                fence_to_serving_ms: 1,
                pid: 1,
            })),
            WatchChange::Watch
        );
        assert_eq!(watch_change(&created(60)), WatchChange::Nothing);
    }

    #[test]
    fn probes_decode_and_malformed_ones_are_refused() {
        let good = probes("c1", &[("fs-master", 0, true)]);
        let body = serde_json::to_vec(&good).unwrap();
        assert_eq!(decode_probes("sf.node.probe.c1", &body), Ok(good));
        let other = decode_probes("sf.node.probe.c2", &body).unwrap_err();
        assert!(other.contains("published on sf.node.probe.c2"), "{other}");
        assert!(decode_probes("sf.node.probe.c1", b"{not json").is_err());
        assert!(decode_probes("sf.node.probe.c1", br#"{"host_id":"c1"}"#).is_err());
        assert!(
            decode_probes(
                "sf.node.probe.c1",
                br#"{"host_id":"c1","nodes":[],"extra":1}"#
            )
            .is_err(),
            "unknown fields are refused"
        );
    }

    #[test]
    fn history_is_not_judged_and_watching_starts_at_the_live_position() {
        let mut w = history(3600);
        assert_eq!(
            w.watching(&"fs-master".into()),
            None,
            "not while catching up"
        );
        // The watcher comes up an hour after the nodes started serving.
        let now = t(3_600_000);
        w.go_live(now);
        assert_eq!(w.watching(&"fs-master".into()), Some(0));
        assert_eq!(w.watching(&"fs-cs1".into()), Some(0));
        assert!(verdicts(&w.tick(now + chrono::Duration::milliseconds(500))).is_empty());
        let v = verdicts(&w.tick(now + chrono::Duration::milliseconds(2000)));
        assert_eq!(
            v,
            [
                ("fs-cs1".into(), Liveness::Failed),
                ("fs-master".into(), Liveness::Failed)
            ],
            "failed after the timeout from the live position, not from history"
        );
    }

    #[test]
    fn verdicts_carry_the_timeout_and_answers_keep_a_node_alive() {
        let mut w = history(3600);
        w.go_live(t(0));
        for ms in (250..=4000).step_by(250) {
            assert!(
                w.probes(&probes("c1", &[("fs-master", 0, true)]), t(ms))
                    .is_empty()
            );
            let v = verdicts(&w.tick(t(ms)));
            assert!(!v.iter().any(|(n, _)| n == "fs-master"), "{v:?} at {ms}");
        }
        let out = w.tick(t(4800));
        let Command::RecordNodeLiveness(r) = &out[0].command else {
            panic!("{out:?}")
        };
        assert_eq!(
            (r.node_id.as_str(), r.verdict),
            ("fs-master", Liveness::Unresponsive)
        );
        assert_eq!(r.timeout_ms, 2000);
        assert_eq!(r.last_answer_at, t(4000));
    }

    #[test]
    fn failed_and_replaced_nodes_are_unwatched_and_recovered_ones_watched_anew() {
        let mut w = history(3600);
        w.go_live(t(0));
        let n: NodeId = "fs-cs1".into();
        w.apply("node-fs-cs1", &failed("fs-cs1", "c2", 0), t(100), t(100));
        assert_eq!(w.watching(&n), None);
        w.apply(
            "node-fs-cs1",
            &chosen("fs-cs1", "c3", "c2", 1),
            t(100),
            t(100),
        );
        assert_eq!(w.watching(&n), None);
        assert!(
            w.probes(&probes("c3", &[("fs-cs1", 1, false)]), t(200))
                .is_empty(),
            "recovering: not judged"
        );
        let recovered = Event::NodeRecovered(NodeRecovered {
            node_id: n.clone(),
            host_id: "c3".into(),
            generation: 1,
            recovery_ms: 900,
            fence_to_serving_ms: 400,
            pid: 9,
        });
        w.apply("node-fs-cs1", &recovered, t(1000), t(1000));
        assert_eq!(w.watching(&n), Some(1));
        // The old host's results no longer count; the new host's do.
        w.probes(&probes("c2", &[("fs-cs1", 1, true)]), t(2900));
        assert_eq!(w.foreign, 1);
        w.probes(&probes("c3", &[("fs-cs1", 1, true)]), t(2900));
        assert!(
            !verdicts(&w.tick(t(3100)))
                .iter()
                .any(|(id, _)| id == "fs-cs1")
        );
    }

    #[test]
    fn a_checkpoint_restart_has_grace() {
        let mut w = history(3600);
        w.go_live(t(0));
        let n: NodeId = "fs-master".into();
        let asked = Event::CheckpointRequested(CheckpointRequested {
            node_id: n.clone(),
            host_id: "c1".into(),
            generation: 0,
            cause: CheckpointCause::Command,
        });
        w.apply("node-fs-master", &asked, t(0), t(0));
        w.probes(&probes("c1", &[("fs-master", 0, false)]), t(1000));
        let v = verdicts(&w.tick(t(10_000)));
        assert!(
            !v.contains(&("fs-master".into(), Liveness::Failed)),
            "{v:?}"
        );
        assert_eq!(w.watching(&n), Some(0));
        let v = verdicts(&w.tick(t(30_000)));
        assert!(v.contains(&("fs-master".into(), Liveness::Failed)), "{v:?}");
    }

    #[test]
    fn a_failed_verdict_the_log_does_not_show_is_sent_again_and_stops_with_the_log() {
        let mut w = history(3600);
        w.go_live(t(0));
        let first = w.tick(t(2000));
        let master = |out: &[Outgoing]| {
            out.iter()
                .find(|o| matches!(&o.command, Command::RecordNodeLiveness(r) if r.node_id.as_str() == "fs-master"))
                .cloned()
        };
        let sent = master(&first).expect("failed");
        assert!(master(&w.tick(t(4000))).is_none(), "not before the retry");
        assert_eq!(
            master(&w.tick(t(7000))),
            Some(sent.clone()),
            "the same command, same id"
        );
        w.apply(
            "node-fs-master",
            &failed("fs-master", "c1", 0),
            t(7100),
            t(7100),
        );
        assert!(master(&w.tick(t(20_000))).is_none());
    }

    #[test]
    fn an_unresponsive_node_in_the_log_is_said_answering_once_after_a_restart() {
        let mut w = history(3600);
        let unresponsive = Event::NodeUnresponsive(NodeUnresponsive {
            node_id: "fs-master".into(),
            generation: 0,
            last_answer_at: t(-500),
            evidence: "timed out".into(),
        });
        w.apply("node-fs-master", &unresponsive, t(100), t(100));
        w.go_live(t(60_000));
        let v = verdicts(&w.probes(&probes("c1", &[("fs-master", 0, true)]), t(60_250)));
        assert_eq!(v, [("fs-master".into(), Liveness::Answering)]);
        assert!(
            w.probes(&probes("c1", &[("fs-master", 0, true)]), t(60_500))
                .is_empty()
        );
    }

    #[test]
    fn scheduled_checkpoints_are_asked_once_with_a_derived_id() {
        let mut w = history(60);
        w.go_live(t(1000));
        let keep_alive = |w: &mut Watcher, ms| {
            w.probes(&probes("c1", &[("fs-master", 0, true)]), t(ms));
            w.probes(&probes("c2", &[("fs-cs1", 0, true)]), t(ms));
        };
        keep_alive(&mut w, 59_000);
        assert!(checkpoints(&w.tick(t(59_000))).is_empty());
        keep_alive(&mut w, 60_000);
        let out = w.tick(t(60_000));
        let asked = checkpoints(&out);
        assert_eq!(asked.len(), 1, "the metadata node only: {out:?}");
        assert_eq!(
            asked[0].command,
            Command::CheckpointNode(CheckpointNode {
                node_id: "fs-master".into(),
                cause: CheckpointCause::Schedule
            })
        );
        let id = asked[0].id;
        keep_alive(&mut w, 60_250);
        assert!(checkpoints(&w.tick(t(60_250))).is_empty(), "asked once");
        // A restarted watcher folding the same history asks with the same id.
        let mut again = history(60);
        again.go_live(t(61_000));
        assert_eq!(checkpoints(&again.tick(t(61_000)))[0].id, id);
        // Recorded: the schedule counts from the checkpoint, with a new id.
        let requested = Event::CheckpointRequested(CheckpointRequested {
            node_id: "fs-master".into(),
            host_id: "c1".into(),
            generation: 0,
            cause: CheckpointCause::Schedule,
        });
        w.apply("node-fs-master", &requested, t(60_300), t(60_300));
        keep_alive(&mut w, 61_000);
        assert!(checkpoints(&w.tick(t(61_000))).is_empty(), "checkpointing");
        let taken = Event::CheckpointTaken(CheckpointTaken {
            node_id: "fs-master".into(),
            host_id: "c1".into(),
            cause: CheckpointCause::Schedule,
            image_bytes: 10,
            version: 3,
            replayed: 0,
        });
        w.apply("node-fs-master", &taken, t(62_000), t(62_000));
        w.apply(
            "node-fs-master",
            &serving("fs-master", NodeRole::Metadata, "c1", 0),
            t(62_500),
            t(62_500),
        );
        assert_eq!(w.watching(&"fs-master".into()), Some(0));
        keep_alive(&mut w, 121_000);
        assert!(checkpoints(&w.tick(t(121_000))).is_empty());
        keep_alive(&mut w, 122_000);
        let next = w.tick(t(122_000));
        let next = checkpoints(&next);
        assert_eq!(next.len(), 1);
        assert_ne!(next[0].id, id);
    }
}
