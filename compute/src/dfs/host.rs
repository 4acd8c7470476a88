//! The file-system nodes of one compute host: follows the `dfs` and `node` streams, carries out
//! this host's duties one at a time per node ([`super::duty`]), reports each step with
//! `ReportNode`, and publishes what its probes of the nodes it runs saw on
//! `sf.node.probe.<host>` every probe interval.
//!
//! Invariant: each step is reported only after it was carried out, and a step already recorded
//! is never carried out again (a restarted host resumes after the last recorded step); a report
//! the node refuses (the node moved on) ends the duty.

use super::NodeError;
use super::container::Containers;
use super::duty::{Duty, duties, resume};
use super::moosefs::{self, chunk_servers, prepare_volume, restore};
use super::volume::VolumeStore;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamfleet_bus_client::{CommandClient, Follower, Refused, log_head};
use streamfleet_bus_schemas::dfs::{
    ChunkServerSeen, NodeProbe, NodeProbes, NodeReport, NodeRole, ReportNode,
};
use streamfleet_bus_schemas::ids::{HostId, NodeId};
use streamfleet_bus_schemas::{Command, Event};
use streamfleet_domain::dfs::{NodePhase, NodeState, RecoveryStep};
use streamfleet_domain::{State, evolve};
use tokio::sync::mpsc;
use uuid::Uuid;

/// How a host runs its nodes.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// How often it probes the nodes it runs.
    pub probe_every: Duration,
    /// How long a started node may take to answer.
    pub serve_timeout: Duration,
    /// How long a block report waits for the data nodes to come back.
    pub report_within: Duration,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            probe_every: Duration::from_millis(250),
            serve_timeout: Duration::from_secs(30),
            report_within: Duration::from_secs(30),
        }
    }
}

/// What the host knows of a node from the log.
#[derive(Debug, Clone)]
struct Known {
    role: NodeRole,
    address: String,
    volume_id: String,
    volume_mib: u32,
    /// The file system's metadata node's address.
    master: String,
    /// Every data node's address of the file system.
    data_addresses: Vec<String>,
    host: HostId,
    generation: u32,
    state: Option<NodeState>,
}

/// The nodes this host probes: node → (placement, role, address).
type Targets = Arc<Mutex<BTreeMap<NodeId, (u32, NodeRole, String)>>>;

/// One host's nodes.
#[derive(Clone)]
pub struct NodeHost {
    host_id: HostId,
    containers: Containers,
    store: VolumeStore,
    commands: CommandClient,
    settings: NodeSettings,
    targets: Targets,
}

impl NodeHost {
    /// The nodes of host `host_id`, in `containers`, with volumes in `store`, reporting through
    /// `commands` (role launcher).
    pub fn new(
        host_id: HostId,
        containers: Containers,
        store: VolumeStore,
        commands: CommandClient,
        settings: NodeSettings,
    ) -> NodeHost {
        NodeHost {
            host_id,
            containers,
            store,
            commands,
            settings,
            targets: Arc::default(),
        }
    }

    /// Follows the log and carries out this host's duties; probes and publishes meanwhile.
    pub async fn run(self, client: async_nats::Client) -> Result<(), NodeError> {
        self.spawn_probes(client.clone());
        let head = log_head(&client)
            .await
            .map_err(|e| NodeError::Container(format!("reading the log head: {e}")))?;
        let mut follower = Follower::start_on(
            client,
            1,
            &[
                streamfleet_bus_schemas::subjects::DFS_EVENTS,
                streamfleet_bus_schemas::subjects::NODE_EVENTS,
            ],
        )
        .await
        .map_err(|e| NodeError::Container(format!("following the log: {e}")))?;
        let mut known: HashMap<NodeId, Known> = HashMap::new();
        let mut queues: HashMap<NodeId, mpsc::UnboundedSender<(Duty, Known)>> = HashMap::new();
        let mut live = head == 0;
        loop {
            let followed = follower
                .next()
                .await
                .map_err(|e| NodeError::Container(format!("following the log: {e}")))?;
            let position = followed.position;
            if let Ok(envelope) = followed.envelope()
                && let Ok(event) = Event::from_parts(&envelope.body.event_type, envelope.body.data)
            {
                fold(&mut known, &envelope.body.subject, &event);
                if live {
                    for (node, duty) in duties(&self.host_id, &event) {
                        self.enqueue(&mut queues, &known, &node, duty);
                    }
                }
            }
            if !live && position >= head {
                live = true;
                let resumed: Vec<(NodeId, Duty)> = known
                    .iter()
                    .filter_map(|(id, k)| {
                        let phase = k.state.as_ref().map_or(NodePhase::Launching, |s| s.phase);
                        resume(&self.host_id, &k.host, k.generation, phase).map(|d| (id.clone(), d))
                    })
                    .collect();
                tracing::info!(host = %self.host_id, nodes = resumed.len(), "file-system nodes caught up; resuming");
                for (node, duty) in resumed {
                    self.enqueue(&mut queues, &known, &node, duty);
                }
            }
        }
    }

    fn enqueue(
        &self,
        queues: &mut HashMap<NodeId, mpsc::UnboundedSender<(Duty, Known)>>,
        known: &HashMap<NodeId, Known>,
        node: &NodeId,
        duty: Duty,
    ) {
        let Some(k) = known.get(node).cloned() else {
            return;
        };
        if let Duty::Leave { .. } = duty
            && let Ok(mut t) = self.targets.lock()
        {
            t.remove(node);
        }
        // One duty at a time per node, in the log's order, each with the node as the log had it
        // when the duty was given.
        let queue = queues.entry(node.clone()).or_insert_with(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<(Duty, Known)>();
            let (me, node) = (self.clone(), node.clone());
            tokio::spawn(async move {
                while let Some((duty, k)) = rx.recv().await {
                    me.carry_out(&node, &k, duty).await;
                }
            });
            tx
        });
        let _ = queue.send((duty, k));
    }

    /// Carries out one duty; a failed step is reported (the node picks another host).
    async fn carry_out(&self, node: &NodeId, k: &Known, duty: Duty) {
        tracing::info!(host = %self.host_id, node = %node, ?duty, "node duty");
        let generation = match duty {
            Duty::Leave { generation } => generation,
            _ => k.generation,
        };
        let outcome = match duty {
            Duty::Launch => self.launch(node, k, generation, false).await,
            Duty::Keep => self.keep(node, k, generation).await,
            Duty::Recover { after } => self.recover(node, k, generation, after).await,
            Duty::Checkpoint(cause) => self.checkpoint(node, k, generation, cause).await,
            Duty::Leave { generation } => {
                self.leave(node, k, generation).await;
                Ok(())
            }
        };
        if let Err(Step(step, e)) = outcome {
            tracing::warn!(host = %self.host_id, node = %node, step, error = %e, "node step failed");
            self.report(
                node,
                generation,
                NodeReport::Failed {
                    step: step.into(),
                    cause: e.to_string(),
                },
            )
            .await;
        }
    }

    async fn report(&self, node: &NodeId, generation: u32, report: NodeReport) -> bool {
        let command = Command::ReportNode(ReportNode {
            node_id: node.clone(),
            host_id: self.host_id.clone(),
            generation,
            report,
        });
        // Sent again with the same id when it was not delivered: recorded once.
        let id = Uuid::now_v7();
        for _ in 0..20 {
            match self.commands.submit(id, &command).await {
                Ok(_) => return true,
                Err(Refused::Rejected { rule, message }) => {
                    tracing::info!(host = %self.host_id, node = %node, %rule, %message, "node report refused");
                    return false;
                }
                Err(Refused::Undelivered(_)) => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        false
    }

    /// Attaches the node's volume here unless this host has it mounted already; its device.
    async fn attach(&self, node: &NodeId, k: &Known) -> Result<String, NodeError> {
        let mount = self.containers.mountpoint(node);
        if Containers::mounted(&mount) {
            return Ok(format!("{} (mounted already)", mount.display()));
        }
        self.store.create(&k.volume_id, k.volume_mib).await?;
        self.store.attach(&k.volume_id, &mount).await
    }

    /// Starts the node here over its attached volume and waits until it answers; its pid.
    async fn start_serving(&self, node: &NodeId, k: &Known, generation: u32) -> Result<u32, Step> {
        let mount = self.containers.mountpoint(node);
        prepare_volume(&mount, k.role, &k.address, &k.master)
            .await
            .map_err(|e| Step("launch", e))?;
        let pid = self
            .containers
            .start(node, generation, k.role, &k.address)
            .await
            .map_err(|e| Step("launch", e))?;
        Ok(pid)
    }

    /// Waits until the node answers its probe; what the last probe said when it does not.
    async fn answers(&self, k: &Known) -> Result<(), NodeError> {
        let end = tokio::time::Instant::now() + self.settings.serve_timeout;
        let mut last = String::new();
        while tokio::time::Instant::now() < end {
            let (role, address) = (k.role, k.address.clone());
            let (ok, said) = self
                .containers
                .in_host_namespace(move || {
                    moosefs::probe(role, &address, Duration::from_millis(300))
                })
                .await?;
            if ok {
                return Ok(());
            }
            last = said;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(NodeError::NotServing {
            seconds: self.settings.serve_timeout.as_secs(),
            detail: last,
        })
    }

    fn probe_here(&self, node: &NodeId, k: &Known, generation: u32) {
        if let Ok(mut t) = self.targets.lock() {
            t.insert(node.clone(), (generation, k.role, k.address.clone()));
        }
    }

    async fn launch(
        &self,
        node: &NodeId,
        k: &Known,
        generation: u32,
        _again: bool,
    ) -> Result<(), Step> {
        self.attach(node, k)
            .await
            .map_err(|e| Step("attach_volume", e))?;
        let pid = self.start_serving(node, k, generation).await?;
        self.containers
            .take_address(node, generation, &k.address)
            .await
            .map_err(|e| Step("address", e))?;
        self.answers(k).await.map_err(|e| Step("serve", e))?;
        self.probe_here(node, k, generation);
        self.report(node, generation, NodeReport::Serving { pid })
            .await;
        Ok(())
    }

    /// A node recorded as serving here: adopt its container, or start it again in place.
    async fn keep(&self, node: &NodeId, k: &Known, generation: u32) -> Result<(), Step> {
        if self.containers.running(node, generation).await.is_none() {
            self.attach(node, k)
                .await
                .map_err(|e| Step("attach_volume", e))?;
            self.start_serving(node, k, generation).await?;
        }
        self.containers
            .take_address(node, generation, &k.address)
            .await
            .map_err(|e| Step("address", e))?;
        self.probe_here(node, k, generation);
        Ok(())
    }

    async fn recover(
        &self,
        node: &NodeId,
        k: &Known,
        generation: u32,
        after: Option<RecoveryStep>,
    ) -> Result<(), Step> {
        let done = |step: RecoveryStep| after.is_some_and(|a| a as u8 >= step as u8);
        if !done(RecoveryStep::Fenced) {
            let detail = self
                .store
                .fence(&k.volume_id)
                .await
                .map_err(|e| Step("fence", e))?;
            if !self
                .store
                .free_within(&k.volume_id, Duration::from_secs(10))
                .await
            {
                return Err(Step(
                    "fence",
                    NodeError::Container(format!(
                        "volume {} is still held after its fence",
                        k.volume_id
                    )),
                ));
            }
            // The fenced placement's namespace goes too (its host may be gone with its end of
            // the link): nothing of it is left to answer on the address.
            if generation > 0 {
                let old = super::container::placement_id(node, generation - 1);
                let _ = crate::process::ip(&[
                    "netns",
                    "del",
                    &crate::network::instance_namespace(&old),
                ])
                .await;
            }
            if !self
                .report(node, generation, NodeReport::Fenced { detail })
                .await
            {
                return Ok(());
            }
        }
        if !done(RecoveryStep::VolumeAttached) {
            let device = match self.attach(node, k).await {
                // The fence is recorded for this placement, so whatever holds the volume now
                // is this host's own attach cut short (its agent killed mid-step): fenced
                // again, attached afresh.
                Err(NodeError::VolumeAttachedElsewhere { .. }) => {
                    self.store
                        .fence(&k.volume_id)
                        .await
                        .map_err(|e| Step("attach_volume", e))?;
                    self.store
                        .free_within(&k.volume_id, Duration::from_secs(10))
                        .await;
                    self.attach(node, k).await
                }
                other => other,
            }
            .map_err(|e| Step("attach_volume", e))?;
            if !self
                .report(node, generation, NodeReport::VolumeAttached { device })
                .await
            {
                return Ok(());
            }
        }
        if k.role == NodeRole::Metadata && !done(RecoveryStep::Checkpointed) {
            let mount = self.containers.mountpoint(node);
            let restored = restore(&mount, &self.containers.scratch(node))
                .await
                .map_err(|e| Step("checkpoint", e))?;
            let report = NodeReport::CheckpointTaken {
                cause: streamfleet_bus_schemas::dfs::CheckpointCause::Recovery,
                image_bytes: restored.image_bytes,
                version: restored.version,
                replayed: restored.replayed,
            };
            if !self.report(node, generation, report).await {
                return Ok(());
            }
        }
        let mut pid = self.containers.running(node, generation).await;
        if !done(RecoveryStep::Launched) {
            let started = self.start_serving(node, k, generation).await?;
            pid = Some(started);
            if !self
                .report(
                    node,
                    generation,
                    NodeReport::ReplacementLaunched { pid: started },
                )
                .await
            {
                return Ok(());
            }
        }
        if !done(RecoveryStep::Addressed) {
            self.containers
                .take_address(node, generation, &k.address)
                .await
                .map_err(|e| Step("address", e))?;
            if !self
                .report(node, generation, NodeReport::AddressReassigned)
                .await
            {
                return Ok(());
            }
        }
        self.answers(k).await.map_err(|e| Step("serve", e))?;
        let pid = match pid {
            Some(p) => p,
            None => self.containers.running(node, generation).await.unwrap_or(0),
        };
        self.probe_here(node, k, generation);
        if !self
            .report(node, generation, NodeReport::Recovered { pid })
            .await
        {
            return Ok(());
        }
        self.block_report(node, k, generation).await;
        Ok(())
    }

    /// After a recovery: the metadata node's list of chunk servers once every data node of the
    /// file system is back in it (or the wait is over), reported.
    async fn block_report(&self, node: &NodeId, k: &Known, generation: u32) {
        let end = tokio::time::Instant::now() + self.settings.report_within;
        let wanted: Vec<String> = match k.role {
            NodeRole::Metadata => k.data_addresses.clone(),
            NodeRole::Data => vec![k.address.clone()],
        };
        let mut seen: Vec<ChunkServerSeen> = Vec::new();
        while tokio::time::Instant::now() < end {
            let master = k.master.clone();
            if let Ok(Ok(list)) = self
                .containers
                .in_host_namespace(move || chunk_servers(&master, Duration::from_millis(500)))
                .await
            {
                seen = list;
                // Connected is not yet reported: a chunk server lists its chunks right after it
                // registers.
                let back = wanted.iter().all(|a| {
                    seen.iter()
                        .any(|c| &c.address == a && c.connected && c.chunks > 0)
                });
                if back {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.report(
            node,
            generation,
            NodeReport::BlockReport {
                chunk_servers: seen,
            },
        )
        .await;
    }

    async fn checkpoint(
        &self,
        node: &NodeId,
        k: &Known,
        generation: u32,
        cause: streamfleet_bus_schemas::dfs::CheckpointCause,
    ) -> Result<(), Step> {
        if let Ok(mut t) = self.targets.lock() {
            t.remove(node);
        }
        // MooseFS 3.0 writes its metadata image on a clean stop (it has no dump command): the
        // checkpoint is a clean restart, and the restore that follows counts what it replayed.
        self.containers
            .stop(node, generation, Duration::from_secs(30))
            .await;
        let mount = self.containers.mountpoint(node);
        let restored = restore(&mount, &self.containers.scratch(node))
            .await
            .map_err(|e| Step("checkpoint", e))?;
        self.report(
            node,
            generation,
            NodeReport::CheckpointTaken {
                cause,
                image_bytes: restored.image_bytes,
                version: restored.version,
                replayed: restored.replayed,
            },
        )
        .await;
        let pid = self.start_serving(node, k, generation).await?;
        self.answers(k).await.map_err(|e| Step("serve", e))?;
        self.probe_here(node, k, generation);
        self.report(node, generation, NodeReport::Serving { pid })
            .await;
        Ok(())
    }

    /// The node left this host: its container killed (never a clean stop: it must not write
    /// after its fence), this host's mount of its volume removed, its namespace and routes
    /// through this host gone.
    async fn leave(&self, node: &NodeId, k: &Known, generation: u32) {
        self.containers.stop(node, generation, Duration::ZERO).await;
        let mount = self.containers.mountpoint(node);
        if Containers::mounted(&mount) {
            let _ = crate::process::run("umount", &["-l", &mount.display().to_string()]).await;
        }
        self.containers.release(node, generation, &k.address).await;
    }

    /// Probes the nodes this host runs every interval, from its namespace, and publishes what
    /// it saw.
    fn spawn_probes(&self, client: async_nats::Client) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<NodeProbe>>();
        let targets = self.targets.clone();
        let every = self.settings.probe_every;
        let path = format!("/var/run/netns/{}", self.containers.network.namespace);
        std::thread::spawn(move || {
            if let Err(e) = super::container::enter_namespace(&path) {
                tracing::error!(error = %e, "probes cannot enter the host namespace");
                return;
            }
            let timeout = every.min(Duration::from_millis(500));
            loop {
                let started = std::time::Instant::now();
                let now: Vec<(NodeId, (u32, NodeRole, String))> = targets
                    .lock()
                    .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                let probes = now
                    .into_iter()
                    .map(|(node_id, (generation, role, address))| {
                        let (answered, detail) = moosefs::probe(role, &address, timeout);
                        NodeProbe {
                            node_id,
                            generation,
                            answered,
                            detail,
                        }
                    })
                    .collect();
                if tx.send(probes).is_err() {
                    return;
                }
                std::thread::sleep(every.saturating_sub(started.elapsed()));
            }
        });
        let subject = streamfleet_bus_schemas::subjects::node_probe(&self.host_id);
        let host_id = self.host_id.clone();
        tokio::spawn(async move {
            while let Some(nodes) = rx.recv().await {
                if nodes.is_empty() {
                    continue;
                }
                let probes = NodeProbes {
                    host_id: host_id.clone(),
                    nodes,
                };
                if let Ok(body) = serde_json::to_vec(&probes) {
                    let _ = client.publish(subject.clone(), body.into()).await;
                }
            }
        });
    }
}

/// A failed step: its name and why.
struct Step(&'static str, NodeError);

/// Folds one event into what the host knows of the nodes.
fn fold(known: &mut HashMap<NodeId, Known>, stream: &str, event: &Event) {
    if let Event::FileSystemCreated(e) = event {
        let master = e
            .nodes
            .iter()
            .find(|n| n.role == NodeRole::Metadata)
            .map(|n| n.address.clone())
            .unwrap_or_default();
        let data: Vec<String> = e
            .nodes
            .iter()
            .filter(|n| n.role == NodeRole::Data)
            .map(|n| n.address.clone())
            .collect();
        for n in &e.nodes {
            known.insert(
                n.node_id.clone(),
                Known {
                    role: n.role,
                    address: n.address.clone(),
                    volume_id: n.volume_id.clone(),
                    volume_mib: e.volume_mib,
                    master: master.clone(),
                    data_addresses: data.clone(),
                    host: n.host_id.clone(),
                    generation: 0,
                    state: None,
                },
            );
        }
        return;
    }
    let Some(node) = stream.strip_prefix("node-") else {
        return;
    };
    let Some(k) = known.get_mut(node) else {
        return;
    };
    if let Event::ReplacementChosen(e) = event {
        k.host = e.host_id.clone();
        k.generation = e.generation;
    }
    let before = k.state.take().map(State::Node).unwrap_or_default();
    if let State::Node(s) = evolve(before, event) {
        k.state = Some(s);
    }
}
