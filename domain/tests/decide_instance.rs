//! The instance decider through `decide` and `evolve`: launch (hypervisor, host, addresses),
//! the fleet's room and address pool as the events fold, the lifecycle, the host's reports and
//! determinism. The fleet is folded from `ComputeHostRegistered` events with `Fleet::evolve`,
//! and every recorded event is folded into it between decisions, as the node does.

mod common;

use common::{now, one};
use std::collections::BTreeMap;
use streamfleet_bus_schemas::Command;
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::compute::Feature::{self, *};
use streamfleet_bus_schemas::compute::Hypervisor::{self, *};
use streamfleet_bus_schemas::instance::{
    AttachNetwork, AttachVolume, ChangeCause, ComputeHostRegistered, DetachNetwork, DetachVolume,
    InstanceAddresses, InstanceFailed, InstanceLaunched, InstancePlaced, InstanceRebooted,
    InstanceReport, InstanceStarted, InstanceStopped, InstanceTerminated, LaunchInstance,
    NetworkAttached, RebootInstance, ReportInstance, SnapshotInstance, SnapshotTaken,
    StartInstance, StopInstance, TerminateInstance, Volume, VolumeAttached, VolumeDetached,
};
use streamfleet_domain::fleet::{ComputeHost, Costs, Fleet};
use streamfleet_domain::instance::{
    ComputeContext, Geography, InstanceState, InstanceStatus, ROOT_VOLUME,
};
use streamfleet_domain::placement::{IpLocation, Region};
use streamfleet_domain::{Context, Rejection, State, decide, evolve, stream_of};

// ---- fixtures ----

const MIB: u32 = 32_768;

fn host_in(id: &str, region: &str, hypervisor: Hypervisor, cpus: u32, memory_mib: u32) -> Event {
    Event::ComputeHostRegistered(ComputeHostRegistered {
        host_id: id.into(),
        region: region.into(),
        hypervisor,
        cpus,
        memory_mib,
        detail: format!("{hypervisor} for tests"),
    })
}

fn host(id: &str, hypervisor: Hypervisor, cpus: u32) -> Event {
    host_in(id, "eu-west", hypervisor, cpus, MIB)
}

/// The compute fleet, its costs, and each instance stream's state.
#[derive(Debug, Clone)]
struct World {
    fleet: Fleet,
    costs: Costs,
    geography: Geography,
    streams: BTreeMap<String, State>,
}

impl World {
    fn new(hosts: &[Event]) -> World {
        let mut fleet = Fleet::default();
        for event in hosts {
            fleet.evolve(event);
        }
        World {
            fleet,
            costs: Costs::default(),
            geography: Geography::default(),
            streams: BTreeMap::new(),
        }
    }

    /// One host of each hypervisor in `eu-west`, 16 cpus and 32 GiB each, default costs.
    fn usual() -> World {
        World::new(&[
            host("q1", Qemu, 16),
            host("c1", Crun, 16),
            host("s1", Sim, 16),
        ])
    }

    fn ctx(&self) -> Context {
        Context {
            now: now(),
            app: None,
            compute: Some(ComputeContext {
                fleet: self.fleet.clone(),
                costs: self.costs.clone(),
                geography: self.geography.clone(),
            }),
            instance: None,
        }
    }

    fn state_of(&self, cmd: &Command) -> State {
        self.streams
            .get(&stream_of(cmd))
            .cloned()
            .unwrap_or_default()
    }

    fn decide(&self, cmd: &Command) -> Result<Vec<Event>, Rejection> {
        decide(cmd, &self.state_of(cmd), &self.ctx())
    }

    fn rejected(&self, cmd: &Command) -> Rejection {
        match self.decide(cmd) {
            Ok(events) => panic!("{cmd:?} accepted: {events:?}"),
            Err(r) => r,
        }
    }

    /// Folds events into the instance's stream and into the fleet.
    fn record(&mut self, instance: &str, events: &[Event]) {
        let stream = format!("instance-{instance}");
        let state = self.streams.remove(&stream).unwrap_or_default();
        let state = events.iter().fold(state, evolve);
        self.streams.insert(stream, state);
        for event in events {
            if Fleet::concerns(event) {
                self.fleet.evolve(event);
            }
        }
    }

    /// Decides and records; panics on a rejection.
    fn apply(&mut self, cmd: &Command) -> Vec<Event> {
        let events = self
            .decide(cmd)
            .unwrap_or_else(|r| panic!("{cmd:?} rejected: {r}"));
        let stream = stream_of(cmd);
        let instance = stream
            .strip_prefix("instance-")
            .expect("an instance command");
        self.record(instance, &events);
        events
    }

    fn instance(&self, id: &str) -> &InstanceState {
        match self.streams.get(&format!("instance-{id}")) {
            Some(State::Instance(s)) => s,
            other => panic!("instance {id} expected, got {other:?}"),
        }
    }

    fn host(&self, id: &str) -> &ComputeHost {
        &self.fleet.hosts[id]
    }

    /// Launches `id` (2 cpus, 1 GiB) on `hypervisor` and has its host report it running.
    fn running(&mut self, id: &str, hypervisor: Hypervisor) {
        self.apply(&launch(launch_cmd(id, Some(hypervisor))));
        let host = self.instance(id).host_id.to_string();
        self.apply(&report(id, &host, running_report()));
        assert_eq!(self.instance(id).status, InstanceStatus::Running);
    }

    /// Has the instance's own host report `what`.
    fn report(&mut self, id: &str, what: InstanceReport) -> Vec<Event> {
        let host = self.instance(id).host_id.to_string();
        self.apply(&report(id, &host, what))
    }
}

/// A busybox launch of 2 cpus, 1 GiB memory and a 1 GiB disk, anywhere.
fn launch_cmd(id: &str, hypervisor: Option<Hypervisor>) -> LaunchInstance {
    LaunchInstance {
        instance_id: id.into(),
        image: "linux-busybox".into(),
        hypervisor,
        features: vec![],
        region: None,
        client_ip: None,
        cpus: 2,
        memory_mib: 1024,
        disk_mib: 1024,
    }
}

fn launch(cmd: LaunchInstance) -> Command {
    Command::LaunchInstance(cmd)
}

fn sized(id: &str, cpus: u32, memory_mib: u32) -> Command {
    launch(LaunchInstance {
        cpus,
        memory_mib,
        ..launch_cmd(id, None)
    })
}

fn stop(id: &str) -> Command {
    Command::StopInstance(StopInstance {
        instance_id: id.into(),
    })
}

fn start(id: &str) -> Command {
    Command::StartInstance(StartInstance {
        instance_id: id.into(),
    })
}

fn reboot(id: &str) -> Command {
    Command::RebootInstance(RebootInstance {
        instance_id: id.into(),
    })
}

fn terminate(id: &str) -> Command {
    Command::TerminateInstance(TerminateInstance {
        instance_id: id.into(),
    })
}

fn attach_volume(id: &str, volume: &str) -> Command {
    Command::AttachVolume(AttachVolume {
        instance_id: id.into(),
        volume_id: volume.into(),
        size_mib: 64,
    })
}

fn detach_volume(id: &str, volume: &str) -> Command {
    Command::DetachVolume(DetachVolume {
        instance_id: id.into(),
        volume_id: volume.into(),
    })
}

fn attach_network(id: &str, network: &str) -> Command {
    Command::AttachNetwork(AttachNetwork {
        instance_id: id.into(),
        network_id: network.into(),
    })
}

fn detach_network(id: &str, network: &str) -> Command {
    Command::DetachNetwork(DetachNetwork {
        instance_id: id.into(),
        network_id: network.into(),
    })
}

fn snapshot(id: &str, snapshot: &str) -> Command {
    Command::SnapshotInstance(SnapshotInstance {
        instance_id: id.into(),
        snapshot_id: snapshot.into(),
    })
}

fn report(id: &str, host: &str, what: InstanceReport) -> Command {
    Command::ReportInstance(ReportInstance {
        instance_id: id.into(),
        host_id: host.into(),
        report: what,
    })
}

fn running_report() -> InstanceReport {
    InstanceReport::Running { pid: 4242 }
}

fn failed_report() -> InstanceReport {
    InstanceReport::Failed {
        reason: "process exited".into(),
    }
}

/// Every command an existing instance takes, except a launch.
fn every_command(id: &str, host: &str) -> Vec<Command> {
    vec![
        stop(id),
        start(id),
        reboot(id),
        terminate(id),
        attach_volume(id, "data"),
        detach_volume(id, "data"),
        attach_network(id, "lan"),
        detach_network(id, "lan"),
        snapshot(id, "snap"),
        report(id, host, running_report()),
        report(id, host, failed_report()),
    ]
}

/// The two events of an accepted launch.
fn chosen_and_placed(
    events: &[Event],
) -> (
    &streamfleet_bus_schemas::instance::HypervisorChosen,
    &streamfleet_bus_schemas::instance::InstancePlaced,
) {
    match events {
        [Event::HypervisorChosen(c), Event::InstancePlaced(p)] => (c, p),
        other => panic!("[HypervisorChosen, InstancePlaced] expected, got {other:?}"),
    }
}

fn address(index: u8) -> InstanceAddresses {
    InstanceAddresses {
        private: format!("10.77.0.{index}"),
        public: format!("198.18.0.{index}"),
    }
}

// ---- launch ----

#[test]
fn launch_fields_out_of_range_are_refused_naming_the_field() {
    let big = World::new(&[host_in("q1", "eu-west", Qemu, 64, 300_000)]);
    let base = || launch_cmd("i1", None);
    let cases: Vec<(&str, LaunchInstance, Option<&str>)> = vec![
        (
            "empty id",
            LaunchInstance {
                instance_id: "".into(),
                ..base()
            },
            Some("instance_id"),
        ),
        (
            "id with a space",
            LaunchInstance {
                instance_id: "a b".into(),
                ..base()
            },
            Some("instance_id"),
        ),
        (
            "id with a dot",
            LaunchInstance {
                instance_id: "a.b".into(),
                ..base()
            },
            Some("instance_id"),
        ),
        (
            "id of 129",
            LaunchInstance {
                instance_id: "i".repeat(129).into(),
                ..base()
            },
            Some("instance_id"),
        ),
        (
            "id of 128",
            LaunchInstance {
                instance_id: "i".repeat(128).into(),
                ..base()
            },
            None,
        ),
        (
            "no cpus",
            LaunchInstance { cpus: 0, ..base() },
            Some("cpus"),
        ),
        (
            "65 cpus",
            LaunchInstance { cpus: 65, ..base() },
            Some("cpus"),
        ),
        ("1 cpu", LaunchInstance { cpus: 1, ..base() }, None),
        ("64 cpus", LaunchInstance { cpus: 64, ..base() }, None),
        (
            "15 MiB",
            LaunchInstance {
                memory_mib: 15,
                ..base()
            },
            Some("memory_mib"),
        ),
        (
            "16 MiB",
            LaunchInstance {
                memory_mib: 16,
                ..base()
            },
            None,
        ),
        (
            "262144 MiB",
            LaunchInstance {
                memory_mib: 262_144,
                ..base()
            },
            None,
        ),
        (
            "262145 MiB",
            LaunchInstance {
                memory_mib: 262_145,
                ..base()
            },
            Some("memory_mib"),
        ),
        (
            "no disk",
            LaunchInstance {
                disk_mib: 0,
                ..base()
            },
            Some("disk_mib"),
        ),
        (
            "1 MiB disk",
            LaunchInstance {
                disk_mib: 1,
                ..base()
            },
            None,
        ),
        (
            "1 TiB disk",
            LaunchInstance {
                disk_mib: 1_048_576,
                ..base()
            },
            None,
        ),
        (
            "1 TiB + 1 MiB disk",
            LaunchInstance {
                disk_mib: 1_048_577,
                ..base()
            },
            Some("disk_mib"),
        ),
    ];
    for (name, cmd, field) in cases {
        match (big.decide(&launch(cmd)), field) {
            (Err(Rejection::InvalidField { field: got, .. }), Some(want)) => {
                assert_eq!(got, want, "{name}")
            }
            (Ok(events), None) => assert_eq!(events.len(), 2, "{name}"),
            (outcome, want) => panic!("{name}: expected {want:?} refused, got {outcome:?}"),
        }
    }
}

#[test]
fn an_image_not_in_the_catalogue_is_refused() {
    let cmd = LaunchInstance {
        image: "windows-11".into(),
        ..launch_cmd("i1", None)
    };
    assert_eq!(
        World::usual().rejected(&launch(cmd)),
        Rejection::UnknownImage {
            image: "windows-11".into()
        }
    );
}

#[test]
fn without_a_compute_host_or_room_no_hypervisor_runs_it() {
    let cases: Vec<(&str, World, Command)> = vec![
        (
            "empty fleet",
            World::new(&[]),
            launch(launch_cmd("i1", None)),
        ),
        (
            "empty fleet, qemu named",
            World::new(&[]),
            launch(launch_cmd("i1", Some(Qemu))),
        ),
        (
            "no host in the region named",
            World::usual(),
            launch(LaunchInstance {
                region: Some("us-east".into()),
                client_ip: None,
                ..launch_cmd("i1", None)
            }),
        ),
        (
            "only a sim host for busybox",
            World::new(&[host("s1", Sim, 16)]),
            launch(launch_cmd("i1", None)),
        ),
        (
            "too few cpus",
            World::new(&[host("q1", Qemu, 4), host("c1", Crun, 4)]),
            sized("i1", 8, 1024),
        ),
        (
            "too little memory",
            World::new(&[
                host_in("q1", "eu-west", Qemu, 16, 512),
                host_in("c1", "eu-west", Crun, 16, 512),
            ]),
            sized("i1", 2, 1024),
        ),
    ];
    for (name, world, cmd) in cases {
        assert_eq!(world.rejected(&cmd).rule(), "no_hypervisor", "{name}");
    }
}

#[test]
fn an_image_not_built_for_the_customers_hypervisor_is_refused_with_an_offer() {
    let world = World::usual();
    let cases = [
        ("synthetic-app", Qemu, Sim, 1),
        ("synthetic-app", Crun, Sim, 1),
        ("linux-busybox", Sim, Crun, 3),
    ];
    for (image, requested, offered, cost) in cases {
        let cmd = LaunchInstance {
            image: image.into(),
            ..launch_cmd("i1", Some(requested))
        };
        let r = world.rejected(&launch(cmd));
        assert_eq!(r.rule(), "hypervisor_unfit", "{image} on {requested}");
        let Rejection::HypervisorUnfit {
            requested: got,
            why,
            offer,
        } = r
        else {
            unreachable!()
        };
        assert_eq!(got, requested);
        assert!(why.contains(image), "{why}");
        assert_eq!((offer.hypervisor, offer.cost), (offered, cost), "{image}");
    }
}

#[test]
fn a_feature_the_customers_hypervisor_lacks_is_refused_with_the_qemu_offer() {
    let cmd = LaunchInstance {
        features: vec![Snapshot],
        ..launch_cmd("i1", Some(Crun))
    };
    let r = World::usual().rejected(&launch(cmd));
    assert_eq!(r.rule(), "hypervisor_unfit");
    let offer = r.offer().expect("an offer");
    assert_eq!((offer.hypervisor, offer.cost), (Qemu, 12));
    assert!(r.to_string().contains("snapshot"), "{r}");
}

/// A row: name, world, features, the hypervisor chosen, its first reason, another reason.
type ChoiceCase<'a> = (
    &'a str,
    &'a World,
    &'a [Feature],
    Hypervisor,
    &'a str,
    &'a str,
);

#[test]
fn unnamed_the_cheapest_fitting_hypervisor_runs_it_and_says_why() {
    let usual = World::usual();
    let mut dear_crun = World::usual();
    dear_crun
        .costs
        .per_region
        .insert(("eu-west".into(), Crun), 20);
    let cases: Vec<ChoiceCase> = vec![
        (
            "default costs",
            &usual,
            &[],
            Crun,
            "crun is the cheapest",
            "qemu costs 12",
        ),
        (
            "snapshot needs qemu",
            &usual,
            &[Snapshot],
            Qemu,
            "qemu is the cheapest",
            "crun cannot do snapshot",
        ),
        (
            "hot volumes need qemu",
            &usual,
            &[HotAttachVolume],
            Qemu,
            "qemu is the cheapest",
            "crun cannot do hot_attach_volume",
        ),
        (
            "crun configured dearer",
            &dear_crun,
            &[],
            Qemu,
            "qemu is the cheapest",
            "crun costs 20",
        ),
    ];
    for (name, world, features, want, first, other) in cases {
        let cmd = LaunchInstance {
            features: features.to_vec(),
            ..launch_cmd("i1", None)
        };
        let events = world.decide(&launch(cmd)).expect(name);
        let (chosen, placed) = chosen_and_placed(&events);
        assert_eq!(
            (chosen.hypervisor, placed.hypervisor),
            (want, want),
            "{name}"
        );
        assert_eq!(chosen.offer, None, "{name}");
        assert!(
            chosen.reasons[0].starts_with(first),
            "{name}: {:?}",
            chosen.reasons
        );
        assert!(
            chosen.reasons.iter().any(|r| r == other),
            "{name}: {:?}",
            chosen.reasons
        );
    }
}

#[test]
fn the_customers_dearer_hypervisor_runs_it_with_an_offer_of_the_cheaper() {
    let events = World::usual()
        .decide(&launch(launch_cmd("i1", Some(Qemu))))
        .expect("launched");
    let (chosen, placed) = chosen_and_placed(&events);
    assert_eq!((chosen.hypervisor, placed.hypervisor), (Qemu, Qemu));
    assert_eq!(placed.host_id, "q1");
    let offer = chosen.offer.as_ref().expect("an offer of crun");
    assert_eq!((offer.hypervisor, offer.cost), (Crun, 3));
    assert_eq!(chosen.reasons[0], "qemu as the customer asked");
    assert!(
        chosen
            .reasons
            .iter()
            .any(|r| r.contains("cheaper: crun at 3"))
    );

    // Configured cheapest, the customer's qemu comes with no offer.
    let mut cheap_qemu = World::usual();
    cheap_qemu
        .costs
        .per_region
        .insert(("eu-west".into(), Qemu), 2);
    let events = cheap_qemu
        .decide(&launch(launch_cmd("i1", Some(Qemu))))
        .expect("launched");
    let (chosen, _) = chosen_and_placed(&events);
    assert_eq!((chosen.hypervisor, chosen.offer.clone()), (Qemu, None));
    assert_eq!(
        chosen.reasons,
        vec!["qemu as the customer asked".to_string()]
    );
}

#[test]
fn the_host_with_the_most_free_cpus_takes_the_instance() {
    let mut world = World::new(&[host("c-small", Crun, 8), host("c-big", Crun, 16)]);
    let events = world.apply(&sized("i1", 10, 1024));
    assert_eq!(chosen_and_placed(&events).1.host_id, "c-big");
    // c-big has 6 free now, c-small 8.
    let events = world.apply(&sized("i2", 2, 1024));
    let (_, placed) = chosen_and_placed(&events);
    assert_eq!(placed.host_id, "c-small");
    assert!(
        placed
            .reasons
            .iter()
            .any(|r| r.contains("c-small") && r.contains("8 of 8")),
        "{:?}",
        placed.reasons
    );
    // Equal free cpus (6 each) and instances (one each): the name decides.
    let events = world.apply(&sized("i3", 1, 1024));
    assert_eq!(chosen_and_placed(&events).1.host_id, "c-big");
}

#[test]
fn unnamed_the_cheapest_region_takes_the_instance_named_the_named_one() {
    let mut world = World::new(&[
        host_in("ca", "a-region", Crun, 16, MIB),
        host_in("cb", "b-region", Crun, 16, MIB),
    ]);
    world.costs.per_region.insert(("a-region".into(), Crun), 5);
    let events = world
        .decide(&launch(launch_cmd("i1", None)))
        .expect("launched");
    let (_, placed) = chosen_and_placed(&events);
    assert_eq!(
        (placed.region.as_str(), placed.host_id.as_str()),
        ("b-region", "cb")
    );
    assert_eq!(
        placed.reasons[0],
        "b-region is the cheapest region for crun"
    );
    let there = LaunchInstance {
        region: Some("a-region".into()),
        client_ip: None,
        ..launch_cmd("i1", None)
    };
    let events = world.decide(&launch(there)).expect("launched");
    let (_, placed) = chosen_and_placed(&events);
    assert_eq!(
        (placed.region.as_str(), placed.host_id.as_str()),
        ("a-region", "ca")
    );
    assert!(
        !placed.reasons.iter().any(|r| r.contains("cheapest region")),
        "{:?}",
        placed.reasons
    );
}

#[test]
fn a_launch_records_exactly_the_hypervisor_chosen_and_the_placement() {
    let cmd = LaunchInstance {
        features: vec![Reboot],
        ..launch_cmd("i1", None)
    };
    let events = World::usual().decide(&launch(cmd)).expect("launched");
    assert_eq!(events.len(), 2);
    let (chosen, placed) = chosen_and_placed(&events);
    assert_eq!(chosen.instance_id, "i1");
    assert_eq!(placed.instance_id, "i1");
    assert_eq!(placed.host_id, "c1");
    assert_eq!(placed.region, "eu-west");
    assert_eq!(placed.image, "linux-busybox");
    assert_eq!((placed.cpus, placed.memory_mib), (2, 1024));
    assert_eq!(placed.features, vec![Reboot]);
    assert_eq!(placed.addresses, address(2));
    assert_eq!(
        placed.volumes,
        vec![Volume {
            volume_id: ROOT_VOLUME.into(),
            size_mib: 1024
        }]
    );
    assert!(
        placed.reasons.iter().any(|r| r.contains("cheapest region")),
        "{:?}",
        placed.reasons
    );

    let state = events.iter().fold(State::default(), evolve);
    let State::Instance(s) = state else {
        panic!("instance state expected, got {state:?}")
    };
    assert_eq!(s.status, InstanceStatus::Booting);
    assert_eq!((s.boots, s.hypervisor, s.host_id.as_str()), (0, Crun, "c1"));
}

#[test]
fn a_second_launch_of_the_same_id_is_refused() {
    let mut world = World::usual();
    world.apply(&launch(launch_cmd("i1", None)));
    let again = LaunchInstance {
        image: "synthetic-app".into(),
        ..launch_cmd("i1", Some(Sim))
    };
    assert_eq!(
        world.rejected(&launch(again)),
        Rejection::InstanceAlreadyExists {
            instance_id: "i1".into()
        }
    );
}

// ---- addresses ----

#[test]
fn two_launches_never_share_an_address() {
    let mut world = World::usual();
    let mut seen = Vec::new();
    for id in ["a", "b", "c", "d"] {
        let events = world.apply(&launch(launch_cmd(id, None)));
        seen.push(chosen_and_placed(&events).1.addresses.clone());
    }
    assert_eq!(seen, vec![address(2), address(3), address(4), address(5)]);
}

#[test]
fn an_address_is_reused_only_after_its_instance_is_terminated() {
    let mut world = World::usual();
    world.running("a", Crun);
    world.apply(&launch(launch_cmd("b", None)));
    assert_eq!(world.instance("a").addresses, address(2));
    // Stopped or failed, `a` keeps its address.
    world.apply(&stop("a"));
    world.apply(&launch(launch_cmd("c", None)));
    assert_eq!(world.instance("c").addresses, address(4));
    world.report("c", failed_report());
    world.apply(&launch(launch_cmd("d", None)));
    assert_eq!(world.instance("d").addresses, address(5));
    // Terminated, its address is the lowest free one again.
    world.apply(&terminate("a"));
    world.apply(&launch(launch_cmd("e", None)));
    assert_eq!(world.instance("e").addresses, address(2));
    world.apply(&terminate("c"));
    world.apply(&launch(launch_cmd("f", None)));
    assert_eq!(world.instance("f").addresses, address(4));
}

// ---- room ----

#[test]
fn an_instance_holds_cpus_and_memory_while_it_may_run() {
    let mut world = World::usual();
    let used = |w: &World| {
        let h = w.host("c1");
        (h.used_cpus, h.used_memory_mib, h.instances)
    };
    world.running("i1", Crun);
    assert_eq!(used(&world), (2, 1024, 1));
    world.apply(&stop("i1"));
    assert_eq!(used(&world), (0, 0, 0));
    world.apply(&start("i1"));
    assert_eq!(used(&world), (2, 1024, 1));
    world.report("i1", failed_report());
    assert_eq!(used(&world), (0, 0, 0));
    world.apply(&start("i1"));
    assert_eq!(used(&world), (2, 1024, 1));
    world.report("i1", running_report());
    world.report("i1", InstanceReport::GuestPoweredOff);
    assert_eq!(used(&world), (0, 0, 0));
    world.apply(&start("i1"));
    world.apply(&terminate("i1"));
    assert_eq!(used(&world), (0, 0, 0));
    assert_eq!(world.host("q1").used_cpus, 0, "other hosts untouched");
}

#[test]
fn start_is_refused_when_its_host_has_no_room_any_more() {
    let mut world = World::new(&[host("c1", Crun, 4)]);
    world.apply(&sized("a", 4, 1024));
    world.report("a", running_report());
    world.apply(&stop("a"));
    world.apply(&sized("b", 4, 1024));
    assert_eq!(world.rejected(&start("a")).rule(), "no_hypervisor");
    world.apply(&terminate("b"));
    assert_eq!(
        one(world.apply(&start("a"))),
        Event::InstanceStarted(InstanceStarted {
            instance_id: "a".into()
        })
    );
    assert_eq!(world.instance("a").status, InstanceStatus::Booting);
}

// ---- lifecycle ----

/// `i1` on qemu, brought to `status`.
fn qemu_instance_in(status: InstanceStatus) -> World {
    let mut world = World::usual();
    world.apply(&launch(launch_cmd("i1", Some(Qemu))));
    match status {
        InstanceStatus::Booting => {}
        InstanceStatus::Running => {
            world.report("i1", running_report());
        }
        InstanceStatus::Stopped => {
            world.report("i1", running_report());
            world.apply(&stop("i1"));
        }
        InstanceStatus::Failed => {
            world.report("i1", failed_report());
        }
        InstanceStatus::Terminated => {
            world.apply(&terminate("i1"));
        }
    }
    assert_eq!(world.instance("i1").status, status);
    world
}

#[test]
fn stop_start_and_reboot_only_from_the_statuses_that_allow_them() {
    use InstanceStatus::*;
    let cases: Vec<(InstanceStatus, Command, Option<InstanceStatus>)> = vec![
        (Booting, stop("i1"), None),
        (Running, stop("i1"), Some(Stopped)),
        (Stopped, stop("i1"), None),
        (Failed, stop("i1"), None),
        (Booting, start("i1"), None),
        (Running, start("i1"), None),
        (Stopped, start("i1"), Some(Booting)),
        (Failed, start("i1"), Some(Booting)),
        (Booting, reboot("i1"), None),
        (Running, reboot("i1"), Some(Booting)),
        (Stopped, reboot("i1"), None),
        (Failed, reboot("i1"), None),
    ];
    for (from, cmd, to) in cases {
        let mut world = qemu_instance_in(from);
        match to {
            Some(to) => {
                world.apply(&cmd);
                assert_eq!(world.instance("i1").status, to, "{cmd:?} from {from:?}");
            }
            None => match world.rejected(&cmd) {
                Rejection::InstanceNotReady { status, .. } => {
                    assert_eq!(status, from.name(), "{cmd:?}")
                }
                other => panic!("{cmd:?} from {from:?}: instance_not_ready expected, got {other}"),
            },
        }
    }
}

#[test]
fn a_reboot_by_command_counts_a_boot_once_the_host_reports_it_running() {
    let mut world = qemu_instance_in(InstanceStatus::Running);
    assert_eq!(world.instance("i1").boots, 1);
    assert_eq!(
        one(world.apply(&reboot("i1"))),
        Event::InstanceRebooted(InstanceRebooted {
            instance_id: "i1".into(),
            by: ChangeCause::Command,
        })
    );
    assert_eq!(world.instance("i1").boots, 1);
    world.report("i1", running_report());
    assert_eq!(world.instance("i1").boots, 2);
    assert_eq!(world.instance("i1").status, InstanceStatus::Running);
}

#[test]
fn a_terminated_instance_takes_no_command() {
    let world = qemu_instance_in(InstanceStatus::Terminated);
    for cmd in every_command("i1", "q1") {
        assert_eq!(
            world.rejected(&cmd),
            Rejection::InstanceTerminated {
                instance_id: "i1".into()
            },
            "{cmd:?}"
        );
    }
    assert_eq!(
        world.rejected(&launch(launch_cmd("i1", None))).rule(),
        "instance_already_exists"
    );
}

#[test]
fn a_command_for_an_instance_never_launched_is_refused() {
    let world = World::usual();
    for cmd in every_command("ghost", "q1") {
        assert_eq!(
            world.rejected(&cmd),
            Rejection::UnknownInstance {
                instance_id: "ghost".into()
            },
            "{cmd:?}"
        );
    }
}

#[test]
fn a_volume_attaches_once_and_detaches_only_when_attached_never_the_root() {
    let mut world = qemu_instance_in(InstanceStatus::Running);
    assert_eq!(
        one(world.apply(&attach_volume("i1", "data"))),
        Event::VolumeAttached(VolumeAttached {
            instance_id: "i1".into(),
            volume: Volume {
                volume_id: "data".into(),
                size_mib: 64
            },
        })
    );
    assert_eq!(
        world.rejected(&attach_volume("i1", "data")).rule(),
        "volume_already_attached"
    );
    assert_eq!(
        world.rejected(&attach_volume("i1", ROOT_VOLUME)).rule(),
        "volume_already_attached"
    );
    assert_eq!(
        world.rejected(&detach_volume("i1", "logs")),
        Rejection::VolumeNotAttached {
            instance_id: "i1".into(),
            volume_id: "logs".into()
        }
    );
    match world.rejected(&detach_volume("i1", ROOT_VOLUME)) {
        Rejection::InvalidField { field, .. } => assert_eq!(field, "volume_id"),
        other => panic!("invalid_field expected, got {other}"),
    }
    assert_eq!(
        one(world.apply(&detach_volume("i1", "data"))),
        Event::VolumeDetached(VolumeDetached {
            instance_id: "i1".into(),
            volume_id: "data".into(),
        })
    );
    let ids: Vec<&str> = world
        .instance("i1")
        .volumes
        .iter()
        .map(|v| v.volume_id.as_str())
        .collect();
    assert_eq!(ids, vec![ROOT_VOLUME]);
    assert_eq!(
        world.rejected(&detach_volume("i1", "data")).rule(),
        "volume_not_attached"
    );
}

#[test]
fn what_a_hypervisor_cannot_do_is_unsupported_naming_it_and_the_operation() {
    let mut world = World::usual();
    world.running("c", Crun);
    world.apply(&launch(LaunchInstance {
        image: "synthetic-app".into(),
        ..launch_cmd("s", None)
    }));
    world.report("s", running_report());
    assert_eq!(world.instance("s").hypervisor, Sim);
    let cases = [
        (attach_volume("c", "data"), Crun, "attach-volume"),
        (detach_volume("c", "data"), Crun, "detach-volume"),
        (snapshot("c", "snap"), Crun, "snapshot"),
        (attach_volume("s", "data"), Sim, "attach-volume"),
        (attach_network("s", "lan"), Sim, "attach-network"),
        (detach_network("s", "lan"), Sim, "detach-network"),
        (snapshot("s", "snap"), Sim, "snapshot"),
    ];
    for (cmd, hypervisor, operation) in cases {
        assert_eq!(
            world.rejected(&cmd),
            Rejection::Unsupported {
                hypervisor,
                operation
            },
            "{cmd:?}"
        );
    }
    // What crun can do, it does.
    assert_eq!(
        one(world.apply(&attach_network("c", "lan"))),
        Event::NetworkAttached(NetworkAttached {
            instance_id: "c".into(),
            network_id: "lan".into(),
        })
    );
}

#[test]
fn a_network_attaches_once_and_detaches_only_when_attached() {
    let mut world = qemu_instance_in(InstanceStatus::Running);
    world.apply(&attach_network("i1", "lan"));
    assert_eq!(
        world.rejected(&attach_network("i1", "lan")),
        Rejection::NetworkAlreadyAttached {
            instance_id: "i1".into(),
            network_id: "lan".into()
        }
    );
    assert_eq!(
        world.rejected(&detach_network("i1", "wan")).rule(),
        "network_not_attached"
    );
    world.apply(&detach_network("i1", "lan"));
    assert!(world.instance("i1").networks.is_empty());
    world.apply(&attach_network("i1", "lan"));
    assert_eq!(world.instance("i1").networks, vec!["lan".to_string()]);
}

#[test]
fn a_snapshot_id_is_taken_once_running_or_stopped() {
    let mut world = qemu_instance_in(InstanceStatus::Running);
    assert_eq!(
        one(world.apply(&snapshot("i1", "before"))),
        Event::SnapshotTaken(SnapshotTaken {
            instance_id: "i1".into(),
            snapshot_id: "before".into(),
        })
    );
    assert_eq!(
        world.rejected(&snapshot("i1", "before")),
        Rejection::SnapshotExists {
            instance_id: "i1".into(),
            snapshot_id: "before".into()
        }
    );
    world.apply(&stop("i1"));
    world.apply(&snapshot("i1", "after"));
    assert_eq!(world.instance("i1").snapshots, vec!["before", "after"]);
    assert_eq!(
        world.rejected(&snapshot("i1", "after")).rule(),
        "snapshot_exists"
    );
    let booting = qemu_instance_in(InstanceStatus::Booting);
    assert_eq!(
        booting.rejected(&snapshot("i1", "x")).rule(),
        "instance_not_ready"
    );
}

// ---- reports ----

#[test]
fn a_report_from_another_host_is_refused() {
    let world = qemu_instance_in(InstanceStatus::Running);
    for what in [
        running_report(),
        failed_report(),
        InstanceReport::GuestPoweredOff,
    ] {
        assert_eq!(
            world.rejected(&report("i1", "c1", what)),
            Rejection::InstanceOnOtherHost {
                instance_id: "i1".into(),
                expected: "q1".into(),
                reported: "c1".into(),
            }
        );
    }
}

#[test]
fn running_while_booting_launches_it_and_counts_a_boot() {
    let mut world = qemu_instance_in(InstanceStatus::Booting);
    let event = one(world.report("i1", InstanceReport::Running { pid: 77 }));
    assert_eq!(
        event,
        Event::InstanceLaunched(InstanceLaunched {
            instance_id: "i1".into(),
            host_id: "q1".into(),
            hypervisor: Qemu,
            addresses: address(2),
            volumes: vec![Volume {
                volume_id: ROOT_VOLUME.into(),
                size_mib: 1024
            }],
            pid: 77,
        })
    );
    let s = world.instance("i1");
    assert_eq!((s.status, s.boots), (InstanceStatus::Running, 1));
}

#[test]
fn running_while_already_running_records_nothing() {
    let world = qemu_instance_in(InstanceStatus::Running);
    assert_eq!(
        world.decide(&report("i1", "q1", running_report())),
        Ok(vec![])
    );
}

#[test]
fn a_guest_reboot_counts_a_boot_and_stays_running() {
    let mut world = qemu_instance_in(InstanceStatus::Running);
    let event = one(world.report("i1", InstanceReport::GuestRebooted { pid: 78 }));
    assert_eq!(
        event,
        Event::InstanceRebooted(InstanceRebooted {
            instance_id: "i1".into(),
            by: ChangeCause::Guest,
        })
    );
    let s = world.instance("i1");
    assert_eq!((s.status, s.boots), (InstanceStatus::Running, 2));
    assert_eq!(world.host("q1").used_cpus, 2, "a reboot keeps its room");
}

#[test]
fn a_guest_power_off_stops_it() {
    let mut world = qemu_instance_in(InstanceStatus::Running);
    let event = one(world.report("i1", InstanceReport::GuestPoweredOff));
    assert_eq!(
        event,
        Event::InstanceStopped(InstanceStopped {
            instance_id: "i1".into(),
            by: ChangeCause::Guest,
        })
    );
    assert_eq!(world.instance("i1").status, InstanceStatus::Stopped);
    assert_eq!(
        world.decide(&report("i1", "q1", InstanceReport::GuestPoweredOff)),
        Ok(vec![]),
        "a second power-off records nothing"
    );
}

#[test]
fn a_failure_is_recorded_once() {
    let mut world = qemu_instance_in(InstanceStatus::Running);
    assert_eq!(
        one(world.report("i1", failed_report())),
        Event::InstanceFailed(InstanceFailed {
            instance_id: "i1".into(),
            host_id: "q1".into(),
            reason: "process exited".into(),
        })
    );
    assert_eq!(world.instance("i1").status, InstanceStatus::Failed);
    assert_eq!(
        world.decide(&report("i1", "q1", failed_report())),
        Ok(vec![])
    );
}

#[test]
fn terminate_names_the_host_and_frees_everything() {
    let mut world = qemu_instance_in(InstanceStatus::Running);
    assert_eq!(
        one(world.apply(&terminate("i1"))),
        Event::InstanceTerminated(InstanceTerminated {
            instance_id: "i1".into(),
            host_id: "q1".into(),
        })
    );
    assert_eq!(world.host("q1").used_cpus, 0);
    assert_eq!(world.fleet.free_index(), Some(2));
}

// ---- determinism ----

#[test]
fn the_same_decision_on_cloned_inputs_is_the_same() {
    let mut world = World::usual();
    world.running("a", Qemu);
    world.apply(&stop("a"));
    for cmd in [
        launch(launch_cmd("b", None)),
        launch(launch_cmd("b", Some(Qemu))),
        launch(LaunchInstance {
            features: vec![Snapshot],
            ..launch_cmd("b", Some(Crun))
        }),
        start("a"),
        snapshot("a", "s"),
    ] {
        let copy = world.clone();
        let first = world.decide(&cmd);
        assert_eq!(first, copy.decide(&cmd), "{cmd:?}");
        assert_eq!(first, world.decide(&cmd), "{cmd:?}");
    }
}

// ---- a failed instance and a refusal across regions ----

#[test]
fn a_failed_instance_must_be_started_before_it_runs_again() {
    let mut world = World::new(&[host("c1", Crun, 4)]);
    world.apply(&sized("a", 4, 1024));
    world.report("a", failed_report());
    assert_eq!(world.host("c1").used_cpus, 0);
    // The host saying it runs is not enough: its room went back to the fleet. A start takes it
    // again (and checks there is some).
    let r = world.rejected(&report("a", "c1", running_report()));
    assert_eq!(r.rule(), "instance_not_ready", "{r}");
    assert_eq!(world.instance("a").status, InstanceStatus::Failed);
    world.apply(&start("a"));
    assert_eq!(world.host("c1").used_cpus, 4);
    world.report("a", running_report());
    assert_eq!(world.instance("a").status, InstanceStatus::Running);
}

#[test]
fn an_image_not_built_for_the_customers_hypervisor_is_offered_what_runs_it_in_any_region() {
    // `a-region` has only qemu; `b-region` has the sim host that runs `synthetic-app`.
    let world = World::new(&[
        host_in("qa", "a-region", Qemu, 16, MIB),
        host_in("sb", "b-region", Sim, 16, MIB),
    ]);
    let cmd = LaunchInstance {
        image: "synthetic-app".into(),
        ..launch_cmd("i1", Some(Qemu))
    };
    let r = world.rejected(&launch(cmd));
    assert_eq!(r.rule(), "hypervisor_unfit", "{r}");
    assert_eq!(r.offer().map(|o| o.hypervisor), Some(Sim), "{r}");
}

#[test]
fn a_feature_the_customers_hypervisor_lacks_is_refused_with_an_offer_across_regions() {
    let world = World::new(&[
        host_in("ca", "a-region", Crun, 16, MIB),
        host_in("qb", "b-region", Qemu, 16, MIB),
    ]);
    let cmd = LaunchInstance {
        features: vec![Snapshot],
        ..launch_cmd("i1", Some(Crun))
    };
    let r = world.rejected(&launch(cmd));
    assert_eq!(r.rule(), "hypervisor_unfit", "{r}");
    assert_eq!(r.offer().map(|o| o.hypervisor), Some(Qemu), "{r}");
}

// ---- a launch for a client: the nearest region that can run it ----

fn geography() -> Geography {
    let region = |name: &str, lat, lon| Region {
        name: name.into(),
        lat,
        lon,
    };
    Geography {
        regions: vec![
            region("eu-west", 53.35, -6.26),
            region("us-east", 38.90, -77.40),
            region("ap-south", 19.07, 72.88),
        ],
        locations: vec![
            IpLocation::parse("198.51.100.0/24", "Paris", 48.86, 2.35).expect("prefix"),
            IpLocation::parse("203.0.113.0/24", "Singapore", 1.35, 103.82).expect("prefix"),
        ],
    }
}

fn for_client(id: &str, ip: &str) -> Command {
    launch(LaunchInstance {
        client_ip: Some(ip.into()),
        ..launch_cmd(id, None)
    })
}

#[test]
fn a_launch_for_a_client_goes_to_the_nearest_region_that_can_run_it() {
    let mut world = World::new(&[
        host_in("q-eu", "eu-west", Qemu, 2, MIB),
        host_in("q-ap", "ap-south", Qemu, 16, MIB),
    ]);
    world.geography = geography();
    // Singapore: ap-south, though eu-west is as cheap.
    let events = world.apply(&for_client("sg", "203.0.113.7"));
    let placed = placed_of(&events);
    assert_eq!(placed.region, "ap-south");
    assert!(
        placed.reasons[0].contains("nearest region to 203.0.113.7")
            && placed.reasons[0].contains("Singapore"),
        "{:?}",
        placed.reasons
    );
    // Paris: eu-west, while it has room; then the next nearest that can run it.
    assert_eq!(
        placed_of(&world.apply(&for_client("fr-1", "198.51.100.7"))).region,
        "eu-west"
    );
    assert_eq!(
        placed_of(&world.apply(&for_client("fr-2", "198.51.100.8"))).region,
        "ap-south"
    );
    // A named region wins over the client's address.
    let named = launch(LaunchInstance {
        client_ip: Some("203.0.113.7".into()),
        region: Some("eu-west".into()),
        ..launch_cmd("named", None)
    });
    assert_eq!(
        world.rejected(&named).rule(),
        "no_hypervisor",
        "eu-west is full"
    );
    // Not an address: refused, naming the field.
    let r = world.rejected(&for_client("bad", "not-an-ip"));
    assert_eq!(r.rule(), "invalid_field");
    assert!(r.to_string().contains("client_ip"), "{r}");
}

fn placed_of(events: &[Event]) -> InstancePlaced {
    events
        .iter()
        .find_map(|e| match e {
            Event::InstancePlaced(p) => Some(p.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no InstancePlaced in {events:?}"))
}
