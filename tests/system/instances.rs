//! Instances end to end (issue 14): a real node and nats-server, two `streamfleet compute-host`
//! processes (one qemu, one crun) each in its own network namespace on a fabric namespace the
//! test made; a QEMU guest and a crun container launched by command, reached at their recorded
//! addresses from the fabric, rebooted (boot count +1, the disk's counter kept), a volume hot
//! attached on qemu and refused on crun, a network interface attached and detached hot on both,
//! a snapshot, stop and start, the qemu host's agent killed -9 and re-adopting its guest, QEMU
//! killed behind the agent's back (recorded as failed), terminate (processes gone, addresses
//! withdrawn). Needs root (namespaces), like `streamfleet up`.

use crate::harness::{Nats, NodeProcess, register_app};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use streamfleet_bus_client::{CommandClient, Follower};
use streamfleet_bus_schemas::compute::{Feature, Hypervisor};
use streamfleet_bus_schemas::instance::*;
use streamfleet_bus_schemas::{Command as Cmd, CommandReply, Event, RejectionReason};
use streamfleet_compute::network::{host_namespace, instance_namespace, network_interface};

/// The images, built when missing.
pub fn images() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/images");
    let built = Command::new(root.join("scripts/guest-image.sh"))
        .arg(dir.join("linux-busybox"))
        .status()
        .expect("run scripts/guest-image.sh");
    assert!(built.success(), "the guest image builds");
    dir
}

/// Removes the test's namespaces however the test ends.
pub(crate) struct Namespaces(pub(crate) Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        // What still runs in them (a guest, a container of a failed run) goes first.
        for ns in &self.0 {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Follows the log for the test: waits for an event of a type on a stream.
pub(crate) struct Events(pub(crate) Follower);

impl Events {
    pub(crate) async fn until(&mut self, stream: &str, type_name: &str) -> Event {
        let wait = async {
            loop {
                let e = self.0.next().await.expect("following the log");
                let body = e.envelope().expect("an event envelope").body;
                if body.subject == stream && body.event_type == type_name {
                    return Event::from_parts(&body.event_type, body.data).expect("a known event");
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(240), wait)
            .await
            .unwrap_or_else(|_| panic!("no {type_name} on {stream} within 240 s"))
    }
}

/// One line from the instance's app, asked from the fabric namespace.
pub(crate) fn ask(fabric: &str, address: &str) -> String {
    // A paused guest holds a connection open: `timeout` ends the wait.
    let out = Command::new("timeout")
        .args([
            "6", "ip", "netns", "exec", fabric, "busybox", "nc", "-w", "5", address, "7000",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("busybox nc");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Asks until `wanted` holds (a hot-plugged disk shows up in the guest a moment after QEMU
/// added it): at most `tries` answers, one a second.
fn ask_until(fabric: &str, address: &str, tries: u32, wanted: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..tries {
        last = ask(fabric, address);
        if wanted(&last) {
            return last;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("{address} never answered as expected; last: {last:?}")
}

pub(crate) fn field(answer: &str, name: &str) -> u64 {
    answer
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {answer:?}"))
}

pub(crate) async fn send(service: &CommandClient, command: Cmd) -> CommandReply {
    service
        .send(uuid::Uuid::now_v7(), &command)
        .await
        .expect("the node answers")
}

pub(crate) fn accepted(reply: &CommandReply) -> Vec<Event> {
    match reply {
        CommandReply::Accepted { events, .. } => events
            .iter()
            .map(|e| {
                Event::from_parts(&e.event_type, e.data.clone().expect("event data"))
                    .expect("a known event")
            })
            .collect(),
        other => panic!("expected accepted, got {other:?}"),
    }
}

pub(crate) fn rule(reply: &CommandReply) -> String {
    match reply {
        CommandReply::Rejected {
            reason: RejectionReason::Domain { rule, .. },
            ..
        } => rule.clone(),
        other => panic!("expected a domain rejection, got {other:?}"),
    }
}

pub(crate) fn launch(id: &str, hypervisor: Option<Hypervisor>, features: Vec<Feature>) -> Cmd {
    Cmd::LaunchInstance(LaunchInstance {
        instance_id: id.into(),
        image: "linux-busybox".into(),
        hypervisor,
        features,
        region: Some("r1".into()),
        client_ip: None,
        cpus: 1,
        memory_mib: 128,
        disk_mib: 8,
    })
}

pub(crate) fn compute_host(
    nats: &Nats,
    id: &str,
    hypervisor: &str,
    images: &Path,
    state: &Path,
    fabric: &str,
) -> NodeProcess {
    compute_host_with(nats, id, hypervisor, images, state, fabric, &[])
}

/// [`compute_host`] with more arguments.
pub(crate) fn compute_host_with(
    nats: &Nats,
    id: &str,
    hypervisor: &str,
    images: &Path,
    state: &Path,
    fabric: &str,
    more: &[&str],
) -> NodeProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_streamfleet"));
    command
        .args([
            "compute-host",
            "--host-id",
            id,
            "--region",
            "r1",
            "--hypervisor",
            hypervisor,
        ])
        .args(["--cpus", "2", "--memory-mib", "1024", "--fabric", fabric])
        // The KVM probe has a test of its own (guest.rs).
        .args(["--accel", "tcg"])
        .arg("--images")
        .arg(images)
        .arg("--state-dir")
        .arg(state)
        .arg("--nats-url")
        .arg(&nats.url)
        .args(more)
        .env("SF_LAUNCHER_PASSWORD", nats.password("launcher"))
        .envs(nats.ca_env());
    NodeProcess::spawn_command(command).0
}

fn attach_network(id: &str) -> Cmd {
    Cmd::AttachNetwork(AttachNetwork {
        instance_id: id.into(),
        network_id: "backend".into(),
    })
}

fn detach_network(id: &str) -> Cmd {
    Cmd::DetachNetwork(DetachNetwork {
        instance_id: id.into(),
        network_id: "backend".into(),
    })
}

/// The pids of the QEMU processes running instance `id`.
pub(crate) fn qemus_of(id: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_qemu = args
            .first()
            .is_some_and(|a| a.ends_with(b"qemu-system-x86_64"));
        if is_qemu
            && args
                .windows(2)
                .any(|w| w[0] == b"-name" && w[1] == id.as_bytes())
        {
            pids.push(pid);
        }
    }
    pids
}

/// Whether process `pid` ends within 30 s (its pidfd says so when it does).
pub(crate) async fn pid_exits(pid: u32) -> bool {
    tokio::time::timeout(
        Duration::from_secs(30),
        streamfleet_compute::process::exited(pid),
    )
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vm_and_a_container_live_their_whole_life_through_the_instance_commands() {
    let images = images();
    let nats = Nats::start();
    let data = tempfile::tempdir().expect("tempdir");
    let _node = NodeProcess::start(&nats, data.path());
    register_app(&nats, "chess");
    let me = std::process::id();
    let (fabric, qemu_host, crun_host) = (format!("sft{me}"), format!("q{me}"), format!("c{me}"));
    let _cleanup = Namespaces(vec![
        fabric.clone(),
        host_namespace(&qemu_host.as_str().into()),
        host_namespace(&crun_host.as_str().into()),
        instance_namespace(&"i-ct".into()),
    ]);
    let state = tempfile::tempdir().expect("tempdir");
    let mut q = compute_host(&nats, &qemu_host, "qemu", &images, state.path(), &fabric);
    let _c = compute_host(&nats, &crun_host, "crun", &images, state.path(), &fabric);
    let service = nats.commands("service").await;
    let mut events = Events(
        Follower::start(nats.client("operator").await, 1)
            .await
            .expect("follow"),
    );

    // Bad input first: nothing is recorded for any of these.
    let mut unknown = launch("i-bad", None, vec![]);
    if let Cmd::LaunchInstance(l) = &mut unknown {
        l.image = "windows-11".into();
    }
    assert_eq!(rule(&send(&service, unknown).await), "unknown_image");
    let unfit = send(
        &service,
        launch("i-bad", Some(Hypervisor::Crun), vec![Feature::Snapshot]),
    )
    .await;
    assert_eq!(rule(&unfit), "hypervisor_unfit");
    match &unfit {
        CommandReply::Rejected {
            reason: RejectionReason::Domain {
                offer: Some(offer), ..
            },
            ..
        } => assert_eq!(
            offer.hypervisor,
            Hypervisor::Qemu,
            "qemu is offered instead"
        ),
        other => panic!("the refusal carries the offer: {other:?}"),
    }
    let mut huge = launch("i-bad", None, vec![]);
    if let Cmd::LaunchInstance(l) = &mut huge {
        l.cpus = 64;
    }
    assert_eq!(rule(&send(&service, huge).await), "no_hypervisor");

    // Launch: the VM as the customer asked, the container because it is the cheapest.
    let vm = accepted(
        &send(
            &service,
            launch(
                "i-vm",
                Some(Hypervisor::Qemu),
                vec![Feature::HotAttachVolume, Feature::Snapshot],
            ),
        )
        .await,
    );
    let ct = accepted(&send(&service, launch("i-ct", None, vec![])).await);
    let placed = |events: &[Event]| match events {
        [
            Event::HypervisorChosen(chosen),
            Event::InstancePlaced(placed),
        ] => (chosen.clone(), placed.clone()),
        other => panic!("a launch records the choice and the placement: {other:?}"),
    };
    let (vm_choice, vm_placed) = placed(&vm);
    let (ct_choice, ct_placed) = placed(&ct);
    assert_eq!(vm_choice.hypervisor, Hypervisor::Qemu);
    assert_eq!(
        vm_choice.offer, None,
        "crun is cheaper but cannot snapshot: nothing to offer"
    );
    assert_eq!(
        ct_choice.hypervisor,
        Hypervisor::Crun,
        "{:?}",
        ct_choice.reasons
    );
    assert_eq!(vm_placed.host_id, qemu_host.as_str());
    assert_eq!(ct_placed.host_id, crun_host.as_str());
    assert_ne!(
        vm_placed.addresses, ct_placed.addresses,
        "addresses are dedicated"
    );
    let duplicate = send(&service, launch("i-vm", Some(Hypervisor::Qemu), vec![])).await;
    assert_eq!(rule(&duplicate), "instance_already_exists");

    let launched = |e: Event| match e {
        Event::InstanceLaunched(l) => l,
        other => panic!("{other:?}"),
    };
    let ct_up = launched(events.until("instance-i-ct", "InstanceLaunched").await);
    let (vm_ip, ct_ip) = (
        vm_placed.addresses.private.clone(),
        ct_placed.addresses.private.clone(),
    );
    assert_eq!(
        ask(&fabric, &ct_ip),
        "id=i-ct boots=1 counter=1 disks=none nics=eth0"
    );
    assert_eq!(
        ask(&fabric, &ct_placed.addresses.public),
        "id=i-ct boots=1 counter=2 disks=none nics=eth0",
        "the public address reaches the same container"
    );
    let vm_up = launched(events.until("instance-i-vm", "InstanceLaunched").await);
    assert_eq!(
        ask(&fabric, &vm_ip),
        "id=i-vm boots=1 counter=1 disks=vda nics=eth0"
    );

    // Reboot: one more boot, the disk's counter kept.
    accepted(
        &send(
            &service,
            Cmd::RebootInstance(RebootInstance {
                instance_id: "i-ct".into(),
            }),
        )
        .await,
    );
    accepted(
        &send(
            &service,
            Cmd::RebootInstance(RebootInstance {
                instance_id: "i-vm".into(),
            }),
        )
        .await,
    );
    let ct_rebooted = launched(events.until("instance-i-ct", "InstanceLaunched").await);
    assert!(
        pid_exits(ct_up.pid).await,
        "the reboot ended the old container"
    );
    assert_eq!(
        ask(&fabric, &ct_ip),
        "id=i-ct boots=2 counter=3 disks=none nics=eth0"
    );
    let vm_rebooted = launched(events.until("instance-i-vm", "InstanceLaunched").await);
    assert!(pid_exits(vm_up.pid).await, "the reboot ended the old QEMU");
    assert_ne!(vm_rebooted.pid, vm_up.pid);
    assert_eq!(
        ask(&fabric, &vm_ip),
        "id=i-vm boots=2 counter=2 disks=vda nics=eth0"
    );

    // A volume: hot on qemu (the guest sees vdb), unsupported on crun.
    let attach = |id: &str| {
        Cmd::AttachVolume(AttachVolume {
            instance_id: id.into(),
            volume_id: "data".into(),
            size_mib: 4,
        })
    };
    assert_eq!(rule(&send(&service, attach("i-ct")).await), "unsupported");
    accepted(&send(&service, attach("i-vm")).await);
    assert_eq!(
        rule(&send(&service, attach("i-vm")).await),
        "volume_already_attached"
    );
    let seen = ask_until(&fabric, &vm_ip, 60, |a| a.contains(" disks=vda,vdb "));
    assert_eq!(field(&seen, "boots"), 2);

    // A change the host cannot carry out (the volume's file is in the way: a folder) is
    // reported and undone: the volume is not the instance's, and the guest runs on.
    std::fs::create_dir_all(state.path().join(&qemu_host).join("instances/i-vm/bad.raw"))
        .expect("a folder where the volume's file goes");
    accepted(
        &send(
            &service,
            Cmd::AttachVolume(AttachVolume {
                instance_id: "i-vm".into(),
                volume_id: "bad".into(),
                size_mib: 4,
            }),
        )
        .await,
    );
    match events.until("instance-i-vm", "InstanceChangeFailed").await {
        Event::InstanceChangeFailed(f) => {
            assert_eq!(
                (f.operation.as_str(), f.target.as_str()),
                ("attach-volume", "bad")
            );
            assert!(!f.reason.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let detach_bad = Cmd::DetachVolume(DetachVolume {
        instance_id: "i-vm".into(),
        volume_id: "bad".into(),
    });
    assert_eq!(
        rule(&send(&service, detach_bad).await),
        "volume_not_attached"
    );
    assert!(ask(&fabric, &vm_ip).contains(" disks=vda,vdb "));

    // A network interface, hot on the container: it sees one more interface, then none.
    let backend = network_interface("backend");
    accepted(&send(&service, attach_network("i-ct")).await);
    assert_eq!(
        rule(&send(&service, attach_network("i-ct")).await),
        "network_already_attached"
    );
    ask_until(&fabric, &ct_ip, 60, |a| {
        a.ends_with(&format!("nics=eth0,{backend}"))
    });
    accepted(&send(&service, detach_network("i-ct")).await);
    ask_until(&fabric, &ct_ip, 60, |a| a.ends_with("nics=eth0"));

    // A snapshot on qemu (an overlay over the frozen disk), refused on crun.
    let snapshot = |id: &str| {
        Cmd::SnapshotInstance(SnapshotInstance {
            instance_id: id.into(),
            snapshot_id: "s1".into(),
        })
    };
    assert_eq!(rule(&send(&service, snapshot("i-ct")).await), "unsupported");
    accepted(&send(&service, snapshot("i-vm")).await);
    let overlay = state
        .path()
        .join(&qemu_host)
        .join("instances/i-vm/root.s1.qcow2");
    for _ in 0..100 {
        if overlay.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(overlay.exists(), "{} written", overlay.display());
    let counter_before_stop = field(&ask(&fabric, &vm_ip), "counter");

    // Stop and start: the process ends, then boots again from its disks (the overlay).
    accepted(
        &send(
            &service,
            Cmd::StopInstance(StopInstance {
                instance_id: "i-vm".into(),
            }),
        )
        .await,
    );
    assert!(pid_exits(vm_rebooted.pid).await, "stop ends QEMU");
    assert_eq!(
        rule(
            &send(
                &service,
                Cmd::StopInstance(StopInstance {
                    instance_id: "i-vm".into()
                })
            )
            .await
        ),
        "instance_not_ready"
    );
    accepted(
        &send(
            &service,
            Cmd::StartInstance(StartInstance {
                instance_id: "i-vm".into(),
            }),
        )
        .await,
    );
    let vm_started = launched(events.until("instance-i-vm", "InstanceLaunched").await);
    let after = ask(&fabric, &vm_ip);
    assert_eq!(field(&after, "boots"), 3, "{after}");
    assert_eq!(field(&after, "counter"), counter_before_stop + 1, "{after}");
    assert!(
        after.ends_with("disks=vda,vdb nics=eth0"),
        "the attached volume comes back: {after}"
    );

    // The qemu host's agent killed -9 and started again: it re-adopts the running guest (its
    // QMP session, no second QEMU) and carries out the next command on it.
    q.kill9();
    let _q = compute_host(&nats, &qemu_host, "qemu", &images, state.path(), &fabric);
    accepted(&send(&service, attach_network("i-vm")).await);
    ask_until(&fabric, &vm_ip, 90, |a| a.ends_with("nics=eth0,eth1"));
    assert_eq!(
        qemus_of("i-vm"),
        vec![vm_started.pid],
        "re-adopted, not booted twice"
    );
    accepted(&send(&service, detach_network("i-vm")).await);
    ask_until(&fabric, &vm_ip, 60, |a| a.ends_with("nics=eth0"));
    // The guest lets go of the interface before QEMU says the device is gone: a snapshot after
    // the detach (the host carries out an instance's events in order) shows the detach done.
    accepted(
        &send(
            &service,
            Cmd::SnapshotInstance(SnapshotInstance {
                instance_id: "i-vm".into(),
                snapshot_id: "s2".into(),
            }),
        )
        .await,
    );
    // QEMU makes an overlay's file first; the driver records each layer once it is in use (the
    // data volume's last).
    let layers = state
        .path()
        .join(&qemu_host)
        .join("instances/i-vm/layers.json");
    let in_use = || std::fs::read_to_string(&layers).is_ok_and(|l| l.contains("data.s2.qcow2"));
    for _ in 0..300 {
        if in_use() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(in_use(), "{} names the new layer", layers.display());

    // QEMU killed behind the agent's back: noticed and recorded, the instance failed.
    assert!(
        Command::new("kill")
            .args(["-9", &vm_started.pid.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    match events.until("instance-i-vm", "InstanceFailed").await {
        Event::InstanceFailed(f) => assert!(f.reason.contains("ended"), "{}", f.reason),
        other => panic!("{other:?}"),
    }

    // Terminate: processes gone, addresses withdrawn, no command after.
    accepted(
        &send(
            &service,
            Cmd::TerminateInstance(TerminateInstance {
                instance_id: "i-vm".into(),
            }),
        )
        .await,
    );
    accepted(
        &send(
            &service,
            Cmd::TerminateInstance(TerminateInstance {
                instance_id: "i-ct".into(),
            }),
        )
        .await,
    );
    assert!(pid_exits(vm_started.pid).await, "QEMU is gone");
    assert!(qemus_of("i-vm").is_empty(), "no QEMU left behind");
    assert!(
        pid_exits(ct_rebooted.pid).await,
        "terminate ends the container"
    );
    for address in [&vm_ip, &ct_ip] {
        let mut gone = false;
        for _ in 0..100 {
            let routes = Command::new("ip")
                .args(["-n", &fabric, "route", "show", &format!("{address}/32")])
                .output()
                .expect("ip route");
            if routes.stdout.is_empty() {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(gone, "{address} is withdrawn from the fabric");
    }
    assert_eq!(
        rule(
            &send(
                &service,
                Cmd::RebootInstance(RebootInstance {
                    instance_id: "i-vm".into()
                })
            )
            .await
        ),
        "instance_terminated"
    );
    // The folder goes last, after the routes and the tap: up to 10 s on a busy machine.
    let folder = state.path().join(&qemu_host).join("instances/i-vm");
    let deleted = tokio::time::timeout(Duration::from_secs(10), async {
        while folder.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(deleted.is_ok(), "the VM's disks are deleted");
}

/// `streamfleet instance …` as a service user runs it, against a sim compute host (no guest to
/// boot): launch waits for the host and prints the choice and the addresses, a refusal exits
/// non-zero naming the rule, list and show fold the log, terminate ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_cli_launches_lists_shows_and_terminates_through_the_commands() {
    let nats = Nats::start();
    let data = tempfile::tempdir().expect("tempdir");
    let _node = NodeProcess::start(&nats, data.path());
    let state = tempfile::tempdir().expect("tempdir");
    let mut host = Command::new(env!("CARGO_BIN_EXE_streamfleet"));
    host.args([
        "compute-host",
        "--host-id",
        "sim-1",
        "--region",
        "r9",
        "--hypervisor",
        "sim",
    ])
    .arg("--state-dir")
    .arg(state.path())
    .arg("--nats-url")
    .arg(&nats.url)
    .env("SF_LAUNCHER_PASSWORD", nats.password("launcher"))
    .envs(nats.ca_env());
    let _host = NodeProcess::spawn_command(host).0;
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_streamfleet"))
            .arg("instance")
            .args(args)
            .arg("--nats-url")
            .arg(&nats.url)
            .env("SF_SERVICE_PASSWORD", nats.password("service"))
            .envs(nats.ca_env())
            .output()
            .expect("streamfleet instance");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (ok, out, err) = cli(&[
        "launch",
        "i-cli",
        "--image",
        "synthetic-app",
        "--region",
        "r9",
    ]);
    assert!(ok, "launch: {out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("HypervisorChosen sim: "), "{out}");
    assert!(
        lines[1].starts_with("InstancePlaced on sim-1 in r9: private 10.77."),
        "{out}"
    );
    assert!(
        lines[2].starts_with("InstanceLaunched on sim-1 (sim), answering at 10.77."),
        "launch waits for the host: {out}"
    );

    let (ok, out, err) = cli(&["attach-volume", "i-cli", "data", "--size-mib", "4"]);
    assert!(!ok, "sim cannot attach volumes: {out}");
    assert!(err.contains("unsupported"), "{err}");

    let (ok, out, err) = cli(&["list", "--json"]);
    assert!(ok, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).expect("list --json");
    assert_eq!(listed["i-cli"]["status"], "running", "{listed}");
    assert_eq!(listed["i-cli"]["host_id"], "sim-1", "{listed}");
    assert_eq!(listed["i-cli"]["boots"], 1, "{listed}");

    let (ok, out, err) = cli(&["reboot", "i-cli"]);
    assert!(ok, "reboot: {out}{err}");
    assert!(out.contains("InstanceLaunched"), "reboot waits too: {out}");

    let (ok, out, err) = cli(&["terminate", "i-cli"]);
    assert!(ok, "terminate: {out}{err}");
    let (ok, out, _) = cli(&["list", "--json"]);
    assert!(ok);
    assert_eq!(out.trim(), "{}", "a terminated instance is left out");
    let (ok, out, err) = cli(&["show", "i-cli", "--json"]);
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).expect("show --json");
    assert_eq!(shown["state"]["status"], "terminated");
    assert_eq!(shown["state"]["boots"], 2);
    let types: Vec<&str> = shown["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "HypervisorChosen",
            "InstancePlaced",
            "InstanceLaunched",
            "InstanceRebooted",
            "InstanceLaunched",
            "InstanceTerminated"
        ]
    );
    let (ok, _, err) = cli(&["show", "i-nothing"]);
    assert!(!ok && err.contains("no instance i-nothing"), "{err}");
}

/// A host agent killed -9 in the middle of a launch: started again, it finishes the launch or
/// takes over what its predecessor started — one container, booted once, recorded as launched,
/// never a ghost. (crun, whose containers start in milliseconds, so the kill lands mid-launch.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_during_a_launch_finishes_it_once_when_it_comes_back() {
    let images = images();
    let nats = Nats::start();
    let data = tempfile::tempdir().expect("tempdir");
    let _node = NodeProcess::start(&nats, data.path());
    let me = std::process::id();
    let (fabric, host) = (format!("sfk{me}"), format!("k{me}"));
    let _cleanup = Namespaces(vec![
        fabric.clone(),
        host_namespace(&host.as_str().into()),
        instance_namespace(&"i-kill".into()),
    ]);
    let state = tempfile::tempdir().expect("tempdir");
    let mut agent = compute_host(&nats, &host, "crun", &images, state.path(), &fabric);
    let service = nats.commands("service").await;
    let mut events = Events(
        Follower::start(nats.client("operator").await, 1)
            .await
            .expect("follow"),
    );
    let mut command = launch("i-kill", Some(Hypervisor::Crun), vec![]);
    if let Cmd::LaunchInstance(l) = &mut command {
        l.region = Some("r1".into());
    }
    let placed = accepted(&send(&service, command).await);
    let address = match placed.as_slice() {
        [_, Event::InstancePlaced(p)] => p.addresses.private.clone(),
        other => panic!("{other:?}"),
    };
    // The launch is recorded; the agent is busy carrying it out. Kill it now.
    events.until("instance-i-kill", "InstancePlaced").await;
    agent.kill9();
    let _agent = compute_host(&nats, &host, "crun", &images, state.path(), &fabric);
    let launched = match events.until("instance-i-kill", "InstanceLaunched").await {
        Event::InstanceLaunched(l) => l,
        other => panic!("{other:?}"),
    };
    assert!(Path::new(&format!("/proc/{}", launched.pid)).exists());
    assert_eq!(
        ask(&fabric, &address),
        "id=i-kill boots=1 counter=1 disks=none nics=eth0",
        "booted once"
    );
    let containers = Command::new("crun")
        .arg("--root")
        .arg(state.path().join(&host).join("crun"))
        .args(["list", "-q"])
        .output()
        .expect("crun list");
    assert_eq!(String::from_utf8_lossy(&containers.stdout).trim(), "i-kill");
    accepted(
        &send(
            &service,
            Cmd::TerminateInstance(TerminateInstance {
                instance_id: "i-kill".into(),
            }),
        )
        .await,
    );
    assert!(pid_exits(launched.pid).await, "terminated");
}
