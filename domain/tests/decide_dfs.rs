//! The file-system node decider through `decide` and `evolve`, with plain values: a file system's
//! nodes placed on distinct crun hosts of its region (or each typed rejection), a node's first
//! launch, the watcher's verdicts, every recovery step in its order and only from the current
//! placement, a relaunch that fails moving on to a host not tried (until none is left), the
//! metadata node's checkpoints, block reports, the legacy by-hand failure, and the fold's
//! determinism. The fleet is kept up to date with every decided event, as the node does.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::now;
use std::collections::BTreeMap;
use streamfleet_bus_schemas::compute::Hypervisor::{self, *};
use streamfleet_bus_schemas::dfs::*;
use streamfleet_bus_schemas::instance::ComputeHostRegistered;
use streamfleet_bus_schemas::payloads::ReportNodeFailure;
use streamfleet_bus_schemas::{Command, Event};
use streamfleet_domain::dfs::{NodePhase, NodeState, RecoveryStep};
use streamfleet_domain::fleet::Fleet;
use streamfleet_domain::instance::ComputeContext;
use streamfleet_domain::{Context, Rejection, State, decide, evolve, stream_of};

// ---- the fleet ----

fn registered(id: &str, region: &str, hypervisor: Hypervisor, cpus: u32, memory_mib: u32) -> Event {
    Event::ComputeHostRegistered(ComputeHostRegistered {
        host_id: id.into(),
        region: region.into(),
        hypervisor,
        cpus,
        memory_mib,
        detail: String::new(),
    })
}

/// Crun hosts h1..h4 in `eu` (4 cpus, 4096 MiB); a qemu host q1 in `eu` and a crun host x1 in
/// `us`, both far larger, so that they would come first if hypervisor or region were ignored.
fn hosts() -> Vec<Event> {
    vec![
        registered("h1", "eu", Crun, 4, 4096),
        registered("h2", "eu", Crun, 4, 4096),
        registered("h3", "eu", Crun, 4, 4096),
        registered("h4", "eu", Crun, 4, 4096),
        registered("q1", "eu", Qemu, 64, 65_536),
        registered("x1", "us", Crun, 64, 65_536),
    ]
}

const NEVER: [&str; 2] = ["q1", "x1"];

// ---- the world: the fleet and every stream, as the node keeps them ----

struct World {
    fleet: Fleet,
    /// Stream → (its running state, its events).
    streams: BTreeMap<String, (State, Vec<Event>)>,
    /// Every event decided, in order.
    log: Vec<Event>,
    now: DateTime<Utc>,
}

impl World {
    fn with(hosts: &[Event]) -> World {
        let mut fleet = Fleet::default();
        for e in hosts {
            fleet.evolve(e);
        }
        World {
            fleet,
            streams: BTreeMap::new(),
            log: Vec::new(),
            now: now(),
        }
    }

    fn new() -> World {
        World::with(&hosts())
    }

    /// The clock `seconds` after the fixed start.
    fn at(&mut self, seconds: i64) -> &mut World {
        self.now = now() + Duration::seconds(seconds);
        self
    }

    fn ctx(&self) -> Context {
        Context {
            now: self.now,
            app: None,
            compute: Some(ComputeContext {
                fleet: self.fleet.clone(),
                ..Default::default()
            }),
            instance: None,
        }
    }

    fn state(&self, stream: &str) -> State {
        self.streams
            .get(stream)
            .map_or(State::Empty, |(s, _)| s.clone())
    }

    fn node(&self, node: &str) -> NodeState {
        match self.state(&format!("node-{node}")) {
            State::Node(s) => s,
            other => panic!("node {node} has no node state: {other:?}"),
        }
    }

    fn phase(&self, node: &str) -> NodePhase {
        self.node(node).phase
    }

    /// Decides `cmd` on its stream's state; what it records is appended, folded, and folded
    /// into the fleet.
    fn decide(&mut self, cmd: &Command) -> Result<Vec<Event>, Rejection> {
        let stream = stream_of(cmd);
        let events = decide(cmd, &self.state(&stream), &self.ctx())?;
        let (state, history) = self
            .streams
            .entry(stream)
            .or_insert_with(|| (State::Empty, Vec::new()));
        for e in &events {
            *state = evolve(std::mem::take(state), e);
            history.push(e.clone());
            self.fleet.evolve(e);
            self.log.push(e.clone());
        }
        Ok(events)
    }

    fn ok(&mut self, cmd: &Command) -> Vec<Event> {
        self.decide(cmd)
            .unwrap_or_else(|r| panic!("{cmd:?} rejected: {r}"))
    }

    /// The rule `cmd` is refused by; a refusal records nothing.
    fn refused(&mut self, cmd: &Command) -> &'static str {
        let before = (self.log.len(), self.fleet.clone());
        match self.decide(cmd) {
            Ok(events) => panic!("{cmd:?} accepted: {events:?}"),
            Err(r) => {
                assert_eq!((self.log.len(), self.fleet.clone()), before);
                r.rule()
            }
        }
    }

    fn host_of(&self, node: &str) -> String {
        self.fleet.nodes[node].host_id.to_string()
    }

    fn generation_of(&self, node: &str) -> u32 {
        self.fleet.nodes[node].generation
    }

    /// `report` from the node's current host and placement.
    fn here(&self, node: &str, report: NodeReport) -> Command {
        report_from(node, &self.host_of(node), self.generation_of(node), report)
    }
}

// ---- commands ----

fn create(file_system: &str, data_nodes: u32, goal: u32) -> CreateFileSystem {
    CreateFileSystem {
        file_system: file_system.into(),
        data_nodes,
        goal,
        region: Some("eu".into()),
        volume_mib: None,
        checkpoint_every_seconds: None,
    }
}

fn report_from(node: &str, host: &str, generation: u32, report: NodeReport) -> Command {
    Command::ReportNode(ReportNode {
        node_id: node.into(),
        host_id: host.into(),
        generation,
        report,
    })
}

/// The watcher's verdict on `node`'s placement `generation`; it last answered `silent` seconds
/// before the world's clock.
fn verdict(w: &World, node: &str, generation: u32, verdict: Liveness, silent: i64) -> Command {
    Command::RecordNodeLiveness(RecordNodeLiveness {
        node_id: node.into(),
        generation,
        verdict,
        last_answer_at: w.now - Duration::seconds(silent),
        evidence: "probe timed out".into(),
        timeout_ms: 20_000,
    })
}

fn checkpoint(node: &str, cause: CheckpointCause) -> Command {
    Command::CheckpointNode(CheckpointNode {
        node_id: node.into(),
        cause,
    })
}

fn by_hand(node: &str) -> Command {
    Command::ReportNodeFailure(ReportNodeFailure {
        node_id: node.into(),
        reason: "silent".into(),
    })
}

fn serving() -> NodeReport {
    NodeReport::Serving { pid: 100 }
}
fn fenced() -> NodeReport {
    NodeReport::Fenced {
        detail: "container killed, volume detached, address withdrawn".into(),
    }
}
fn attached() -> NodeReport {
    NodeReport::VolumeAttached {
        device: "/dev/nbd0".into(),
    }
}
fn checkpointed(cause: CheckpointCause) -> NodeReport {
    NodeReport::CheckpointTaken {
        cause,
        image_bytes: 4096,
        version: 77,
        replayed: 12,
    }
}
fn launched() -> NodeReport {
    NodeReport::ReplacementLaunched { pid: 200 }
}
fn recovered() -> NodeReport {
    NodeReport::Recovered { pid: 200 }
}
fn block_report() -> NodeReport {
    NodeReport::BlockReport {
        chunk_servers: vec![
            ChunkServerSeen {
                address: "10.77.0.3".into(),
                chunks: 10,
                connected: true,
            },
            ChunkServerSeen {
                address: "10.77.0.4".into(),
                chunks: 32,
                connected: true,
            },
        ],
    }
}
fn failed(step: &str) -> NodeReport {
    NodeReport::Failed {
        step: step.into(),
        cause: "exit 1".into(),
    }
}

/// Every report but `Failed` (which any recovery step may be), named.
fn every_step() -> Vec<(&'static str, NodeReport)> {
    vec![
        ("serving", serving()),
        ("fenced", fenced()),
        ("volume_attached", attached()),
        (
            "checkpoint (recovery)",
            checkpointed(CheckpointCause::Recovery),
        ),
        (
            "checkpoint (command)",
            checkpointed(CheckpointCause::Command),
        ),
        ("replacement_launched", launched()),
        ("address_reassigned", NodeReport::AddressReassigned),
        ("recovered", recovered()),
        ("block_report", block_report()),
    ]
}

// ---- scenarios and outcomes ----

const MASTER: &str = "fs-master";
const CS1: &str = "fs-cs1";
const CS2: &str = "fs-cs2";

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::type_name).collect()
}

fn created(events: &[Event]) -> &FileSystemCreated {
    match events {
        [Event::FileSystemCreated(e)] => e,
        other => panic!("not one FileSystemCreated: {other:?}"),
    }
}

fn chosen(events: &[Event]) -> &ReplacementChosen {
    match events.last() {
        Some(Event::ReplacementChosen(e)) => e,
        other => panic!("no ReplacementChosen last: {other:?}"),
    }
}

/// `fs` created (master on h1, cs1 on h2, cs2 on h3; h4 free), its nodes not serving yet.
fn created_fs() -> World {
    let mut w = World::new();
    w.ok(&Command::CreateFileSystem(create("fs", 2, 2)));
    w
}

/// `fs` created and every node serving.
fn serving_fs() -> World {
    let mut w = created_fs();
    for node in [MASTER, CS1, CS2] {
        let cmd = w.here(node, serving());
        w.ok(&cmd);
    }
    w
}

/// `node` failed by the watcher at t=0 (last answer 30 s before), its replacement chosen.
fn failed_at_zero(node: &str) -> (World, Vec<Event>) {
    let mut w = serving_fs();
    w.at(0);
    let cmd = verdict(&w, node, 0, Liveness::Failed, 30);
    let events = w.ok(&cmd);
    (w, events)
}

/// The recovery steps of a node, each with the clock (s) it is reported at and the event it
/// records.
fn recovery_of(metadata: bool) -> Vec<(i64, NodeReport, &'static str)> {
    let mut steps = vec![
        (5, fenced(), "NodeFenced"),
        (6, attached(), "NetworkVolumeAttached"),
    ];
    if metadata {
        steps.push((
            8,
            checkpointed(CheckpointCause::Recovery),
            "CheckpointTaken",
        ));
    }
    steps.extend([
        (10, launched(), "ReplacementLaunched"),
        (11, NodeReport::AddressReassigned, "AddressReassigned"),
        (20, recovered(), "NodeRecovered"),
    ]);
    steps
}

/// Runs `node`'s recovery to the end from its current placement, `base` seconds after the
/// failure at t=0.
fn recover_from(w: &mut World, node: &str, base: i64) -> Vec<Event> {
    let metadata = node == MASTER;
    let mut all = Vec::new();
    for (t, report, _) in recovery_of(metadata) {
        let cmd = w.here(node, report);
        all.extend(w.at(base + t).ok(&cmd));
    }
    all
}

fn recover(w: &mut World, node: &str) -> Vec<Event> {
    recover_from(w, node, 0)
}

// ---- creating a file system ----

#[test]
fn create_places_each_node_on_its_own_crun_host_of_the_region_with_a_pool_address() {
    let mut w = World::new();
    let events = w.ok(&Command::CreateFileSystem(create("fs", 2, 2)));
    let e = created(&events);
    assert_eq!(e.file_system, "fs");
    assert_eq!(e.region, "eu");
    assert_eq!(
        (e.goal, e.volume_mib, e.checkpoint_every_seconds),
        (2, 256, 3600)
    );
    let plans: Vec<_> = e
        .nodes
        .iter()
        .map(|n| {
            (
                n.node_id.as_str(),
                n.role,
                n.host_id.as_str(),
                n.address.as_str(),
                n.volume_id.as_str(),
                n.cpus,
                n.memory_mib,
            )
        })
        .collect();
    assert_eq!(
        plans,
        [
            (
                MASTER,
                NodeRole::Metadata,
                "h1",
                "10.77.0.2",
                "fs-master-vol",
                1,
                512
            ),
            (CS1, NodeRole::Data, "h2", "10.77.0.3", "fs-cs1-vol", 1, 256),
            (CS2, NodeRole::Data, "h3", "10.77.0.4", "fs-cs2-vol", 1, 256),
        ]
    );
    assert_eq!(e.reasons.len(), 3);
    assert_eq!(
        e.reasons[0],
        "fs-master on h1: crun, eu, room, no other node of the file system"
    );
    assert!(
        e.reasons.iter().all(|r| r.contains("no other node")),
        "{:?}",
        e.reasons
    );
    // The fleet holds their room and knows them.
    assert_eq!(w.fleet.hosts["h1"].used_memory_mib, 512);
    assert_eq!(w.fleet.hosts["h2"].used_memory_mib, 256);
    assert_eq!(w.fleet.hosts["h4"].used_memory_mib, 0);
    for never in NEVER {
        assert_eq!(w.fleet.hosts[never].instances, 0);
    }
    assert_eq!(w.fleet.file_systems["fs"], "eu");
    assert_eq!(w.fleet.nodes.len(), 3);
    assert!(matches!(w.state("dfs-fs"), State::FileSystem));
}

#[test]
fn create_without_a_region_takes_the_one_with_the_most_crun_hosts() {
    let mut w = World::new();
    let mut c = create("fs", 1, 1);
    c.region = None;
    c.volume_mib = Some(1024);
    c.checkpoint_every_seconds = Some(60);
    let events = w.ok(&Command::CreateFileSystem(c));
    let e = created(&events);
    assert_eq!(e.region, "eu");
    assert_eq!((e.volume_mib, e.checkpoint_every_seconds), (1024, 60));
    assert_eq!(types(&events), ["FileSystemCreated"]);
}

#[test]
fn create_shares_a_host_only_when_no_host_without_a_node_of_the_file_system_has_room() {
    let mut w = World::new();
    let events = w.ok(&Command::CreateFileSystem(create("big", 5, 3)));
    let e = created(&events);
    let hosts: Vec<_> = e.nodes.iter().map(|n| n.host_id.as_str()).collect();
    // One per host first; then the hosts with the most free memory (a data node's host).
    assert_eq!(hosts, ["h1", "h2", "h3", "h4", "h2", "h3"]);
    assert!(
        e.reasons[4].contains("shares it with 1 node(s)"),
        "{}",
        e.reasons[4]
    );
    let addresses: Vec<_> = e.nodes.iter().map(|n| n.address.as_str()).collect();
    assert_eq!(
        addresses,
        [
            "10.77.0.2",
            "10.77.0.3",
            "10.77.0.4",
            "10.77.0.5",
            "10.77.0.6",
            "10.77.0.7"
        ]
    );
    // A second file system takes the next addresses and prefers hosts without its own nodes.
    let events = w.ok(&Command::CreateFileSystem(create("other", 1, 1)));
    let e = created(&events);
    assert_eq!(e.nodes[0].address, "10.77.0.8");
    assert_ne!(e.nodes[0].host_id, e.nodes[1].host_id);
}

#[test]
fn create_refuses_each_invalid_field_naming_it() {
    type Change = fn(&mut CreateFileSystem);
    let table: [(&str, Change, &str); 11] = [
        ("goal above the data nodes", |c| c.goal = 3, "goal"),
        ("goal 0", |c| c.goal = 0, "goal"),
        ("no data node", |c| c.data_nodes = 0, "data_nodes"),
        ("17 data nodes", |c| c.data_nodes = 17, "data_nodes"),
        ("empty id", |c| c.file_system = "".into(), "file_system"),
        (
            "slash in id",
            |c| c.file_system = "fs/1".into(),
            "file_system",
        ),
        (
            "space in id",
            |c| c.file_system = "my fs".into(),
            "file_system",
        ),
        (
            "41 characters",
            |c| c.file_system = "a".repeat(41).into(),
            "file_system",
        ),
        (
            "volume too small",
            |c| c.volume_mib = Some(32),
            "volume_mib",
        ),
        (
            "volume too large",
            |c| c.volume_mib = Some(65_537),
            "volume_mib",
        ),
        (
            "checkpoints too often",
            |c| c.checkpoint_every_seconds = Some(5),
            "checkpoint_every_seconds",
        ),
    ];
    for (case, change, field) in table {
        let mut c = create("fs", 2, 2);
        change(&mut c);
        let got = decide(
            &Command::CreateFileSystem(c),
            &State::Empty,
            &World::new().ctx(),
        );
        match got {
            Err(Rejection::InvalidField { field: f, .. }) => assert_eq!(f, field, "{case}"),
            other => panic!("{case}: {other:?}"),
        }
    }
    // The limits themselves are accepted.
    let mut c = create(&"a".repeat(40), 2, 2);
    c.volume_mib = Some(64);
    c.checkpoint_every_seconds = Some(10);
    World::new().ok(&Command::CreateFileSystem(c));
}

#[test]
fn create_without_a_crun_host_with_room_in_the_region_finds_no_host() {
    let cmd = Command::CreateFileSystem(create("fs", 2, 2));
    // Only the qemu host and the host of another region.
    let mut w = World::with(&hosts()[4..]);
    assert_eq!(w.refused(&cmd), "no_matching_host");
    // An unknown region.
    let mut c = create("fs", 2, 2);
    c.region = Some("mars".into());
    assert_eq!(
        World::new().refused(&Command::CreateFileSystem(c)),
        "no_matching_host"
    );
    // Crun hosts too small for the metadata node (512 MiB).
    let mut w = World::with(&[
        registered("s1", "eu", Crun, 4, 256),
        registered("s2", "eu", Crun, 4, 256),
    ]);
    assert_eq!(w.refused(&cmd), "no_matching_host");
    // No fleet at all.
    let ctx = Context::at(now());
    let got = decide(&cmd, &State::Empty, &ctx).map_err(|r| r.rule());
    assert_eq!(got, Err("no_matching_host"));
    // No region, no host.
    let mut c = create("fs", 2, 2);
    c.region = None;
    assert_eq!(
        World::with(&[]).refused(&Command::CreateFileSystem(c)),
        "no_matching_host"
    );
}

#[test]
fn a_second_create_of_the_same_file_system_is_refused() {
    let mut w = created_fs();
    assert_eq!(
        w.refused(&Command::CreateFileSystem(create("fs", 2, 2))),
        "file_system_exists"
    );
    assert_eq!(
        w.refused(&Command::CreateFileSystem(create("fs", 4, 1))),
        "file_system_exists"
    );
    // Another name is fine.
    w.ok(&Command::CreateFileSystem(create("fs2", 1, 1)));
}

// ---- the first launch ----

#[test]
fn the_placed_host_reports_the_node_serving_and_no_other_placement_can() {
    let mut w = created_fs();
    assert_eq!(
        w.refused(&report_from(MASTER, "h2", 0, serving())),
        "node_placement_gone"
    );
    assert_eq!(
        w.refused(&report_from(MASTER, "h1", 1, serving())),
        "node_placement_gone"
    );
    assert_eq!(
        w.refused(&report_from("fs-cs9", "h1", 0, serving())),
        "unknown_node"
    );
    assert_eq!(
        w.refused(&report_from("ghost", "h1", 0, serving())),
        "unknown_node"
    );
    // A launching node takes no recovery step.
    for (name, r) in every_step().into_iter().skip(1) {
        assert_eq!(
            w.refused(&report_from(MASTER, "h1", 0, r)),
            "node_step_out_of_order",
            "{name}"
        );
    }
    let events = w.ok(&report_from(
        MASTER,
        "h1",
        0,
        NodeReport::Serving { pid: 4242 },
    ));
    let [Event::NodeServing(e)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (
            e.node_id.as_str(),
            e.file_system.as_str(),
            e.role,
            e.host_id.as_str(),
            e.generation,
            e.address.as_str(),
            e.volume_id.as_str(),
            e.pid
        ),
        (
            MASTER,
            "fs",
            NodeRole::Metadata,
            "h1",
            0,
            "10.77.0.2",
            "fs-master-vol",
            4242
        )
    );
    let s = w.node(MASTER);
    assert_eq!(s.phase, NodePhase::Serving);
    assert_eq!(
        (s.host_id.as_deref(), s.generation, s.failed),
        (Some("h1"), 0, false)
    );
    assert_eq!(s.role, Some(NodeRole::Metadata));
    // Serving once is enough.
    assert_eq!(
        w.refused(&report_from(MASTER, "h1", 0, serving())),
        "node_step_out_of_order"
    );
}

// ---- liveness ----

#[test]
fn unresponsive_then_answering_again_records_both_and_nothing_fails() {
    let mut w = serving_fs();
    w.at(0);
    let events = w.ok(&verdict(&w, MASTER, 0, Liveness::Unresponsive, 7));
    let [Event::NodeUnresponsive(e)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (e.generation, e.last_answer_at),
        (0, now() - Duration::seconds(7))
    );
    assert_eq!(e.evidence, "probe timed out");
    assert_eq!(w.phase(MASTER), NodePhase::Unresponsive);
    assert_eq!(
        w.node(MASTER).last_answer_at,
        Some(now() - Duration::seconds(7))
    );
    // Unresponsive twice is out of order.
    assert_eq!(
        w.refused(&verdict(&w, MASTER, 0, Liveness::Unresponsive, 8)),
        "node_step_out_of_order"
    );

    w.at(3);
    let events = w.ok(&verdict(&w, MASTER, 0, Liveness::Answering, 10));
    let [Event::NodeAnswering(e)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!((e.generation, e.silent_ms), (0, 10_000));
    assert_eq!(w.phase(MASTER), NodePhase::Serving);
    assert!(!w.node(MASTER).failed);
    assert_eq!(w.host_of(MASTER), "h1");
}

#[test]
fn verdicts_out_of_order_or_for_another_placement_are_refused() {
    let mut w = created_fs();
    // Launching: no verdict fits.
    for v in [
        Liveness::Unresponsive,
        Liveness::Answering,
        Liveness::Failed,
    ] {
        assert_eq!(
            w.refused(&verdict(&w, MASTER, 0, v, 1)),
            "node_step_out_of_order"
        );
    }
    let mut w = serving_fs();
    match decide(
        &verdict(&w, MASTER, 0, Liveness::Answering, 1),
        &w.state("node-fs-master"),
        &w.ctx(),
    ) {
        Err(Rejection::NodeStepOutOfOrder { step, now, .. }) => {
            assert_eq!((step, now), ("answering", "serving"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        w.refused(&verdict(&w, MASTER, 1, Liveness::Failed, 30)),
        "node_placement_gone"
    );
    assert_eq!(
        w.refused(&verdict(&w, "ghost", 0, Liveness::Failed, 30)),
        "unknown_node"
    );
}

#[test]
fn a_failed_verdict_fails_the_node_and_chooses_a_host_without_a_node_of_the_file_system() {
    let (w, events) = failed_at_zero(MASTER);
    assert_eq!(types(&events), ["NodeFailed", "ReplacementChosen"]);
    let Event::NodeFailed(f) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(f.node_id, MASTER);
    assert_eq!(f.host_id.as_deref(), Some("h1"));
    assert_eq!(f.generation, Some(0));
    assert_eq!(f.last_answer_at, Some(now() - Duration::seconds(30)));
    assert_eq!(f.timeout_ms, Some(20_000));
    assert!(
        f.reason
            .contains("no answer for 30000 ms (timeout 20000 ms): probe timed out"),
        "{}",
        f.reason
    );
    let c = chosen(&events);
    // h2 and h3 run a data node of fs; h4 runs none.
    assert_eq!(
        (
            c.node_id.as_str(),
            c.generation,
            c.host_id.as_str(),
            c.from_host.as_str()
        ),
        (MASTER, 1, "h4", "h1")
    );
    assert!(
        c.reasons[0].contains("0 other node(s) of fs"),
        "{:?}",
        c.reasons
    );
    assert!(c.reasons[0].contains("not h1"), "{:?}", c.reasons);

    let s = w.node(MASTER);
    assert_eq!(s.phase, NodePhase::Recovering(RecoveryStep::Chosen));
    assert!(s.failed);
    assert_eq!((s.failures, s.generation), (1, 1));
    assert_eq!(s.host_id.as_deref(), Some("h4"));
    assert_eq!(s.failed_host.as_deref(), Some("h1"));
    // Its room moved with it.
    assert_eq!(w.fleet.nodes[MASTER].host_id, "h4");
    assert_eq!(w.fleet.hosts["h1"].used_memory_mib, 0);
    assert_eq!(w.fleet.hosts["h4"].used_memory_mib, 512);
}

#[test]
fn a_failed_verdict_after_unresponsive_fails_too_and_a_repeated_one_is_refused() {
    let mut w = serving_fs();
    w.at(0);
    w.ok(&verdict(&w, CS1, 0, Liveness::Unresponsive, 5));
    w.at(20);
    let events = w.ok(&verdict(&w, CS1, 0, Liveness::Failed, 25));
    assert_eq!(types(&events), ["NodeFailed", "ReplacementChosen"]);
    assert_eq!(chosen(&events).host_id, "h4");
    // The same verdict again: for the old placement, or the new one while it recovers.
    assert_eq!(
        w.refused(&verdict(&w, CS1, 0, Liveness::Failed, 25)),
        "node_placement_gone"
    );
    assert_eq!(
        w.refused(&verdict(&w, CS1, 1, Liveness::Failed, 25)),
        "node_step_out_of_order"
    );
}

#[test]
fn when_every_host_runs_a_node_of_the_file_system_the_replacement_shares_one() {
    let mut w = World::new();
    w.ok(&Command::CreateFileSystem(create("fs", 3, 2)));
    for node in [MASTER, CS1, CS2, "fs-cs3"] {
        let cmd = w.here(node, serving());
        w.ok(&cmd);
    }
    let events = w.ok(&verdict(&w, CS1, 0, Liveness::Failed, 30));
    let c = chosen(&events);
    // h1 (master, 3584 MiB free), h3 and h4 (a data node, 3840 MiB free): the most free first.
    assert_eq!(c.host_id, "h3");
    assert!(
        c.reasons[0].contains("1 other node(s) of fs"),
        "{:?}",
        c.reasons
    );
}

// ---- recovery ----

#[test]
fn the_metadata_node_recovers_step_by_step_each_step_only_in_its_order() {
    let (mut w, _) = failed_at_zero(MASTER);
    let mut phases = vec![];
    for (t, report, event_type) in recovery_of(true) {
        // Every other step is refused here.
        for (name, other) in every_step() {
            if other == report {
                continue;
            }
            let cmd = w.here(MASTER, other);
            assert_eq!(
                w.refused(&cmd),
                "node_step_out_of_order",
                "{name} while {:?}",
                w.phase(MASTER)
            );
        }
        let cmd = w.here(MASTER, report);
        let events = w.at(t).ok(&cmd);
        assert_eq!(types(&events), [event_type]);
        phases.push(w.phase(MASTER));
        check_recovery_event(&events[0], MASTER, "h4", "h1", "10.77.0.2");
    }
    use RecoveryStep::*;
    assert_eq!(
        phases,
        [
            NodePhase::Recovering(Fenced),
            NodePhase::Recovering(VolumeAttached),
            NodePhase::Recovering(Checkpointed),
            NodePhase::Recovering(Launched),
            NodePhase::Recovering(Addressed),
            NodePhase::Serving,
        ]
    );
    let s = w.node(MASTER);
    assert!(!s.failed);
    assert_eq!(s.last_recovery_ms, Some(50_000));
    assert_eq!(s.failed_host, None);
    assert!(s.tried.is_empty());
    let cp = s
        .last_checkpoint
        .as_ref()
        .map(|c| (c.cause, c.image_bytes, c.version, c.replayed));
    assert_eq!(cp, Some((CheckpointCause::Recovery, 4096, 77, 12)));
    // Serving: no recovery step fits any more.
    for (name, r) in every_step()
        .into_iter()
        .filter(|(n, _)| *n != "block_report")
    {
        let cmd = w.here(MASTER, r);
        assert_eq!(w.refused(&cmd), "node_step_out_of_order", "{name}");
    }
}

/// The fields of one recovery event of `node` moving from `from` to `to`.
fn check_recovery_event(e: &Event, node: &str, to: &str, from: &str, address: &str) {
    match e {
        Event::NodeFenced(e) => {
            assert_eq!(
                (
                    e.node_id.as_str(),
                    e.fenced_host.as_str(),
                    e.host_id.as_str()
                ),
                (node, from, to)
            );
            assert_eq!(e.at, now() + Duration::seconds(5));
        }
        Event::NetworkVolumeAttached(e) => {
            assert_eq!(e.volume_id, format!("{node}-vol"));
            assert_eq!((e.host_id.as_str(), e.device.as_str()), (to, "/dev/nbd0"));
        }
        Event::CheckpointTaken(e) => {
            assert_eq!(
                (e.host_id.as_str(), e.cause),
                (to, CheckpointCause::Recovery)
            );
            assert_eq!((e.image_bytes, e.version, e.replayed), (4096, 77, 12));
        }
        Event::ReplacementLaunched(e) => {
            assert_eq!((e.host_id.as_str(), e.generation, e.pid), (to, 1, 200));
        }
        Event::AddressReassigned(e) => {
            assert_eq!(
                (e.address.as_str(), e.from_host.as_str(), e.host_id.as_str()),
                (address, from, to)
            );
        }
        Event::NodeRecovered(e) => {
            assert_eq!((e.host_id.as_str(), e.generation, e.pid), (to, 1, 200));
            // Last answer at -30 s, fenced at +5 s, serving at +20 s.
            assert_eq!((e.recovery_ms, e.fence_to_serving_ms), (50_000, 15_000));
        }
        other => panic!("not a recovery event: {other:?}"),
    }
}

#[test]
fn a_data_node_recovers_without_a_checkpoint_step() {
    let (mut w, events) = failed_at_zero(CS1);
    assert_eq!(chosen(&events).host_id, "h4");
    assert_eq!(chosen(&events).from_host, "h2");
    let mut recorded = vec![];
    for (t, report, event_type) in recovery_of(false) {
        for (name, other) in every_step() {
            if other == report {
                continue;
            }
            let cmd = w.here(CS1, other);
            assert_eq!(
                w.refused(&cmd),
                "node_step_out_of_order",
                "{name} while {:?}",
                w.phase(CS1)
            );
        }
        let cmd = w.here(CS1, report);
        let events = w.at(t).ok(&cmd);
        check_recovery_event(&events[0], CS1, "h4", "h2", "10.77.0.3");
        recorded.extend(types(&events));
        assert_eq!(recorded.last(), Some(&event_type));
    }
    assert_eq!(w.phase(CS1), NodePhase::Serving);
    assert_eq!(w.node(CS1).last_recovery_ms, Some(50_000));
    assert_eq!(w.host_of(CS1), "h4");
}

#[test]
fn a_relaunch_that_fails_moves_on_to_a_host_not_tried_until_none_is_left() {
    let (mut w, _) = failed_at_zero(MASTER);
    let mut tried = vec!["h1".to_string()];
    // h4 fails, then h2 and h3 (each running a data node of fs, so tried last).
    for (placement, expected_next) in [(1, Some("h2")), (2, Some("h3")), (3, None)] {
        let host = w.host_of(MASTER);
        assert_eq!(w.generation_of(MASTER), placement);
        tried.push(host.clone());
        let events = w.ok(&report_from(MASTER, &host, placement, failed("launch")));
        let Some(Event::RecoveryFailed(f)) = events.first() else {
            panic!("{events:?}")
        };
        assert_eq!(
            (f.generation, f.host_id.as_deref()),
            (placement, Some(host.as_str()))
        );
        assert_eq!((f.step.as_str(), f.cause.as_str()), ("launch", "exit 1"));
        assert_eq!(f.next.as_deref(), expected_next);
        match expected_next {
            Some(next) => {
                assert_eq!(types(&events), ["RecoveryFailed", "ReplacementChosen"]);
                let c = chosen(&events);
                assert_eq!(
                    (c.generation, c.host_id.as_str(), c.from_host.as_str()),
                    (placement + 1, next, host.as_str())
                );
                assert!(!tried.contains(&next.to_string()), "{next} tried already");
                assert_eq!(w.phase(MASTER), NodePhase::Recovering(RecoveryStep::Chosen));
                // The placement that failed can never report again.
                assert_eq!(
                    w.refused(&report_from(MASTER, &host, placement, serving())),
                    "node_placement_gone"
                );
            }
            None => assert_eq!(types(&events), ["RecoveryFailed"]),
        }
    }
    let s = w.node(MASTER);
    assert_eq!(s.phase, NodePhase::Stuck);
    let tried_set: Vec<_> = s.tried.iter().map(|h| h.as_str()).collect();
    assert_eq!(tried_set, ["h2", "h3", "h4"]);
    // Stuck: no step, no verdict; the node stays where it last failed.
    assert_eq!(
        w.refused(&w.here(MASTER, fenced())),
        "node_step_out_of_order"
    );
    assert_eq!(
        w.refused(&w.here(MASTER, failed("launch"))),
        "node_step_out_of_order"
    );
    assert_eq!(
        w.refused(&verdict(&w, MASTER, 3, Liveness::Failed, 30)),
        "node_step_out_of_order"
    );
    assert_eq!(
        w.refused(&checkpoint(MASTER, CheckpointCause::Command)),
        "node_step_out_of_order"
    );

    // A failure reported by hand tries again, every host allowed but the last one.
    let events = w.ok(&by_hand(MASTER));
    assert_eq!(types(&events), ["NodeFailed", "ReplacementChosen"]);
    let Event::NodeFailed(f) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!((f.host_id.as_deref(), f.generation), (Some("h3"), Some(3)));
    let c = chosen(&events);
    assert_eq!(
        (c.generation, c.host_id.as_str(), c.from_host.as_str()),
        (4, "h1", "h3")
    );
    let s = w.node(MASTER);
    assert_eq!(s.phase, NodePhase::Recovering(RecoveryStep::Chosen));
    assert_eq!(s.failures, 2);
    assert!(s.tried.is_empty());
    assert!(NEVER.iter().all(|h| w.fleet.hosts[*h].instances == 0));
}

#[test]
fn a_step_that_fails_after_the_fence_starts_over_on_the_next_host() {
    let (mut w, _) = failed_at_zero(CS1);
    w.ok(&w.here(CS1, fenced()));
    w.ok(&w.here(CS1, attached()));
    let events = w.ok(&w.here(CS1, failed("launch")));
    let c = chosen(&events);
    assert_eq!((c.generation, c.from_host.as_str()), (2, "h4"));
    assert_ne!(c.host_id, "h2");
    assert_eq!(w.phase(CS1), NodePhase::Recovering(RecoveryStep::Chosen));
    // The new host fences first again.
    assert_eq!(
        w.refused(&w.here(CS1, launched())),
        "node_step_out_of_order"
    );
    let events = recover(&mut w, CS1);
    assert_eq!(
        types(&events),
        [
            "NodeFenced",
            "NetworkVolumeAttached",
            "ReplacementLaunched",
            "AddressReassigned",
            "NodeRecovered"
        ]
    );
    assert_eq!(w.phase(CS1), NodePhase::Serving);
}

#[test]
fn the_old_host_can_never_take_the_node_back() {
    let (mut w, _) = failed_at_zero(MASTER);
    for report in [
        serving(),
        fenced(),
        recovered(),
        failed("serve"),
        block_report(),
    ] {
        assert_eq!(
            w.refused(&report_from(MASTER, "h1", 0, report.clone())),
            "node_placement_gone"
        );
        // Naming the new placement does not help.
        assert_eq!(
            w.refused(&report_from(MASTER, "h1", 1, report)),
            "node_placement_gone"
        );
    }
    recover(&mut w, MASTER);
    assert_eq!(
        w.refused(&report_from(MASTER, "h1", 0, serving())),
        "node_placement_gone"
    );
    assert_eq!(
        w.refused(&verdict(&w, MASTER, 0, Liveness::Failed, 30)),
        "node_placement_gone"
    );
    assert_eq!(
        w.refused(&report_from(MASTER, "h1", 0, block_report())),
        "node_placement_gone"
    );
    assert_eq!(w.host_of(MASTER), "h4");
}

// ---- checkpoints ----

#[test]
fn a_serving_metadata_node_checkpoints_on_request_and_serves_again() {
    let mut w = serving_fs();
    assert_eq!(
        w.refused(&checkpoint(CS1, CheckpointCause::Command)),
        "not_metadata_node"
    );
    assert_eq!(
        w.refused(&checkpoint(MASTER, CheckpointCause::Recovery)),
        "invalid_field"
    );
    assert_eq!(
        w.refused(&checkpoint("ghost", CheckpointCause::Command)),
        "unknown_node"
    );

    let events = w.ok(&checkpoint(MASTER, CheckpointCause::Command));
    let [Event::CheckpointRequested(e)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (
            e.node_id.as_str(),
            e.host_id.as_str(),
            e.generation,
            e.cause
        ),
        (MASTER, "h1", 0, CheckpointCause::Command)
    );
    assert_eq!(w.phase(MASTER), NodePhase::Checkpointing);
    assert_eq!(
        w.refused(&checkpoint(MASTER, CheckpointCause::Schedule)),
        "node_step_out_of_order"
    );
    // The checkpoint is the node's own, not a recovery's.
    assert_eq!(
        w.refused(&w.here(MASTER, checkpointed(CheckpointCause::Recovery))),
        "node_step_out_of_order"
    );
    assert_eq!(
        w.refused(&report_from(
            MASTER,
            "h2",
            0,
            checkpointed(CheckpointCause::Command)
        )),
        "node_placement_gone"
    );

    let events = w.ok(&w.here(MASTER, checkpointed(CheckpointCause::Command)));
    let [Event::CheckpointTaken(e)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (e.host_id.as_str(), e.cause, e.version),
        ("h1", CheckpointCause::Command, 77)
    );
    let s = w.node(MASTER);
    assert_eq!(s.phase, NodePhase::Checkpointing);
    assert_eq!(
        s.last_checkpoint.as_ref().map(|c| c.cause),
        Some(CheckpointCause::Command)
    );

    let events = w.ok(&w.here(MASTER, serving()));
    assert_eq!(types(&events), ["NodeServing"]);
    assert_eq!(w.phase(MASTER), NodePhase::Serving);
    // A scheduled one works the same.
    let events = w.ok(&checkpoint(MASTER, CheckpointCause::Schedule));
    assert_eq!(types(&events), ["CheckpointRequested"]);
}

#[test]
fn no_checkpoint_while_launching_or_recovering() {
    let w = created_fs();
    match decide(
        &checkpoint(MASTER, CheckpointCause::Command),
        &w.state("node-fs-master"),
        &w.ctx(),
    ) {
        Err(Rejection::NodeStepOutOfOrder { step, now, .. }) => {
            assert_eq!((step, now), ("checkpoint", "launching"));
        }
        other => panic!("{other:?}"),
    }
    let (mut w, _) = failed_at_zero(MASTER);
    assert_eq!(
        w.refused(&checkpoint(MASTER, CheckpointCause::Command)),
        "node_step_out_of_order"
    );
    w.ok(&w.here(MASTER, fenced()));
    assert_eq!(
        w.refused(&checkpoint(MASTER, CheckpointCause::Command)),
        "node_step_out_of_order"
    );
}

#[test]
fn a_node_failing_while_checkpointing_is_replaced() {
    let mut w = serving_fs();
    w.ok(&checkpoint(MASTER, CheckpointCause::Command));
    w.at(0);
    let events = w.ok(&verdict(&w, MASTER, 0, Liveness::Failed, 30));
    assert_eq!(types(&events), ["NodeFailed", "ReplacementChosen"]);
    assert_eq!(chosen(&events).host_id, "h4");
}

#[test]

fn a_failed_checkpoint_restart_is_replaced_and_the_failed_host_fenced() {
    let mut w = serving_fs();
    w.ok(&checkpoint(MASTER, CheckpointCause::Command));
    let events = w.ok(&w.here(MASTER, failed("checkpoint")));
    assert_eq!(types(&events), ["RecoveryFailed", "ReplacementChosen"]);
    assert_eq!(chosen(&events).host_id, "h4");
    let events = w.ok(&w.here(MASTER, fenced()));
    let [Event::NodeFenced(e)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!((e.fenced_host.as_str(), e.host_id.as_str()), ("h1", "h4"));
    w.ok(&w.here(MASTER, attached()));
    w.ok(&w.here(MASTER, checkpointed(CheckpointCause::Recovery)));
    w.ok(&w.here(MASTER, launched()));
    let events = w.ok(&w.here(MASTER, NodeReport::AddressReassigned));
    let [Event::AddressReassigned(e)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!((e.from_host.as_str(), e.host_id.as_str()), ("h1", "h4"));
}

#[test]

fn a_failed_first_launch_is_replaced_and_the_failed_host_fenced() {
    let mut w = created_fs();
    let events = w.ok(&report_from(CS1, "h2", 0, failed("launch")));
    let Some(Event::RecoveryFailed(f)) = events.first() else {
        panic!("{events:?}")
    };
    assert_eq!(
        (f.host_id.as_deref(), f.next.as_deref()),
        (Some("h2"), Some("h4"))
    );
    let events = w.ok(&w.here(CS1, fenced()));
    let [Event::NodeFenced(e)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!((e.fenced_host.as_str(), e.host_id.as_str()), ("h2", "h4"));
}

// ---- block reports ----

#[test]
fn a_block_report_after_the_recovery_is_recorded_with_its_chunk_total() {
    let (mut w, _) = failed_at_zero(MASTER);
    assert_eq!(
        w.refused(&w.here(MASTER, block_report())),
        "node_step_out_of_order"
    );
    recover(&mut w, MASTER);
    let events = w.ok(&w.here(MASTER, block_report()));
    let [Event::BlockReportReceived(e)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (e.node_id.as_str(), e.host_id.as_str(), e.chunks),
        (MASTER, "h4", 42)
    );
    assert_eq!(e.chunk_servers.len(), 2);
    assert_eq!(w.phase(MASTER), NodePhase::Serving);
    // While unresponsive too.
    let cmd = verdict(&w, MASTER, 1, Liveness::Unresponsive, 3);
    w.ok(&cmd);
    let events = w.ok(&w.here(MASTER, block_report()));
    assert_eq!(types(&events), ["BlockReportReceived"]);
}

// ---- failures by hand ----

#[test]
fn a_node_of_no_file_system_is_recorded_failed_once() {
    let mut w = serving_fs();
    let events = w.ok(&by_hand("n1"));
    let [Event::NodeFailed(e)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!((e.node_id.as_str(), e.reason.as_str()), ("n1", "silent"));
    assert_eq!(
        (
            e.host_id.as_ref(),
            e.generation,
            e.last_answer_at,
            e.timeout_ms
        ),
        (None, None, None, None)
    );
    let s = w.node("n1");
    assert_eq!(
        (s.phase, s.failed, s.failures),
        (NodePhase::Failed, true, 1)
    );
    assert_eq!(w.refused(&by_hand("n1")), "node_already_failed");
    assert_eq!(w.refused(&by_hand(" ")), "invalid_field");
    // Without a fleet, the same.
    let cmd = by_hand("n2");
    let events = decide(&cmd, &State::Empty, &Context::at(now())).map_err(|r| r.rule());
    assert_eq!(events.map(|e| types(&e)), Ok(vec!["NodeFailed"]));
}

#[test]
fn a_node_of_a_file_system_reported_failed_by_hand_is_replaced_once() {
    let mut w = serving_fs();
    let events = w.ok(&by_hand(CS2));
    assert_eq!(types(&events), ["NodeFailed", "ReplacementChosen"]);
    let Event::NodeFailed(f) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(f.reason, "reported by hand: silent");
    assert_eq!(
        (f.host_id.as_deref(), f.generation, f.timeout_ms),
        (Some("h3"), Some(0), None)
    );
    assert_eq!(chosen(&events).host_id, "h4");
    assert_eq!(w.refused(&by_hand(CS2)), "node_already_failed");
    // A node still launching may be reported too.
    let mut w = created_fs();
    let events = w.ok(&by_hand(CS1));
    assert_eq!(types(&events), ["NodeFailed", "ReplacementChosen"]);
}

#[test]

fn a_second_recovery_is_not_measured_from_before_the_first() {
    let (mut w, _) = failed_at_zero(MASTER);
    recover(&mut w, MASTER); // serving again at +20 s, having last answered at -30 s
    w.at(3600);
    let events = w.ok(&by_hand(MASTER)); // an hour later, reported failed by hand
    assert_eq!(types(&events), ["NodeFailed", "ReplacementChosen"]);
    let events = recover_from(&mut w, MASTER, 3600); // serving again at +3620 s
    let Some(Event::NodeRecovered(e)) = events.last() else {
        panic!("{events:?}")
    };
    // It served from +20 s to +3600 s: the answer at -30 s (before the previous failure) is not
    // its last good one, so this recovery took at most 3600 s.
    assert!(e.recovery_ms <= 3_600_000, "recovery_ms {}", e.recovery_ms);
}

// ---- determinism ----

#[test]
fn folding_each_stream_again_gives_the_running_state_and_the_fleet() {
    let (mut w, _) = failed_at_zero(MASTER);
    let cmd = w.here(MASTER, failed("launch"));
    w.ok(&cmd);
    recover(&mut w, MASTER);
    w.ok(&w.here(MASTER, block_report()));
    w.ok(&checkpoint(MASTER, CheckpointCause::Schedule));
    w.ok(&w.here(MASTER, checkpointed(CheckpointCause::Schedule)));
    w.ok(&w.here(MASTER, serving()));
    let cmd = verdict(&w, CS2, 0, Liveness::Unresponsive, 4);
    w.ok(&cmd);
    w.ok(&by_hand("n1"));

    for (stream, (state, history)) in &w.streams {
        let again = history.iter().fold(State::Empty, evolve);
        assert_eq!(&again, state, "{stream}");
    }
    let mut fleet = Fleet::default();
    for e in hosts().iter().chain(&w.log) {
        fleet.evolve(e);
    }
    assert_eq!(fleet, w.fleet);
    // The same command on the same state and context decides the same events.
    let cmd = verdict(&w, MASTER, w.generation_of(MASTER), Liveness::Failed, 30);
    let state = w.state("node-fs-master");
    assert_eq!(
        decide(&cmd, &state, &w.ctx()),
        decide(&cmd, &state, &w.ctx())
    );
}
