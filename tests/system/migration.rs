//! Reboot-initiated migration end to end (issue 15): a real node and nats-server, two qemu
//! compute hosts and a crun one in their own namespaces on a fabric the test made. A QEMU guest
//! whose app counts on its disk (and a writer that keeps writing) is polled from the fabric (a
//! third namespace) all along: (a) scheduled, synced in full and in rounds while it writes, moved
//! when the guest reboots itself — the same address answers from the other host, the counter
//! goes on, the steps are recorded in order; (b) moved back at its deadline without a reboot;
//! (c) the target host killed during the move — rolled back, answering from the source again;
//! (d) a container and a host that does not match refused with typed reasons; (e) the dead host
//! back, a migration to it cancelled after its sync — its copy gone, the guest's reboot an
//! ordinary one again. On the way each host's agent is killed -9 and started again mid-sync and
//! mid-move.

use crate::harness::{Nats, NodeProcess};
use crate::instances::{
    Events, Namespaces, accepted, ask, compute_host, compute_host_with, field, images, launch,
    qemus_of, rule, send,
};
use futures::StreamExt;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use streamfleet_bus_client::Follower;
use streamfleet_bus_schemas::compute::Hypervisor;
use streamfleet_bus_schemas::migration::*;
use streamfleet_bus_schemas::{Command as Cmd, Event};
use streamfleet_compute::network::host_namespace;

fn schedule(id: &str, deadline_in: i64, target: Option<&str>) -> Cmd {
    Cmd::ScheduleMigration(ScheduleMigration {
        migration_id: id.into(),
        instance_id: "i-mv".into(),
        reason: "host maintenance".into(),
        deadline: Some(chrono::Utc::now() + chrono::Duration::seconds(deadline_in)),
        target_host: target.map(Into::into),
        customer: Some("acme".into()),
        sync_interval_seconds: Some(1),
    })
}

/// What the client saw: each answer's counter and boot count, in order.
#[derive(Default)]
struct Seen {
    answers: Vec<(Instant, u64, u64)>,
}

/// Polls the guest's app from the fabric every 100 ms until `stop`.
fn poll(fabric: String, address: String, seen: Arc<Mutex<Seen>>, stop: Arc<Mutex<bool>>) {
    std::thread::spawn(move || {
        while !*stop.lock().expect("stop") {
            let answer = ask(&fabric, &address);
            if answer.starts_with("id=i-mv") {
                let at = Instant::now();
                let (counter, boots) = (field(&answer, "counter"), field(&answer, "boots"));
                seen.lock()
                    .expect("seen")
                    .answers
                    .push((at, counter, boots));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

/// The events recorded on `stream` and on the instance's stream until `last` on `stream`, in
/// order, with their stream.
async fn steps_until(events: &mut Events, stream: &str, last: &str) -> Vec<(String, u64, Event)> {
    let mut seen = Vec::new();
    let wait = async {
        loop {
            let e = events.0.next().await.expect("following");
            let body = e.envelope().expect("envelope").body;
            if body.subject == stream || body.subject == "instance-i-mv" {
                let event = Event::from_parts(&body.event_type, body.data).expect("known event");
                let done = body.subject == stream && body.event_type == last;
                seen.push((body.subject.clone(), e.position, event));
                if done {
                    return;
                }
            }
        }
    };
    let types = |seen: &Vec<(String, u64, Event)>| -> Vec<&'static str> {
        seen.iter().map(|(_, _, e)| e.type_name()).collect()
    };
    if tokio::time::timeout(Duration::from_secs(300), wait)
        .await
        .is_err()
    {
        panic!("no {last} on {stream} within 300 s; saw {:?}", types(&seen));
    }
    seen
}

/// `streamfleet replay as-of <stream> --position <p> --json`, as the auditor.
async fn as_of(nats: &Nats, stream: &str, position: u64) -> serde_json::Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_streamfleet"))
        .args([
            "replay",
            "as-of",
            stream,
            "--position",
            &position.to_string(),
            "--json",
        ])
        .env("SF_NATS_URL", &nats.url)
        .env("SF_AUDITOR_PASSWORD", nats.password("auditor"))
        .envs(nats.ca_env())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("streamfleet replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("as-of JSON")
}

/// Answers seen so far: the last counter, and its boot count.
fn last_seen(seen: &Arc<Mutex<Seen>>) -> (u64, u64) {
    let s = seen.lock().expect("seen");
    let (_, c, b) = *s.answers.last().expect("the guest answered");
    (c, b)
}

/// Waits (on the client's answers, up to 60 s) until the guest answers with more than `n`
/// answers seen since; panics if it never does.
fn answers_again(seen: &Arc<Mutex<Seen>>, after: usize) -> (u64, u64) {
    for _ in 0..600 {
        {
            let s = seen.lock().expect("seen");
            if s.answers.len() > after {
                let (_, c, b) = s.answers[after];
                return (c, b);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the guest never answered again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vm_moves_at_its_reboot_and_at_its_deadline_keeping_address_and_disk_and_rolls_back_when_the_target_dies()
 {
    let images = images();
    let nats = Nats::start();
    let data = tempfile::tempdir().expect("tempdir");
    let _node = NodeProcess::start(&nats, data.path());
    let me = std::process::id();
    let (fabric, qa, qb, cc) = (
        format!("sfm{me}"),
        format!("qa{me}"),
        format!("qb{me}"),
        format!("cc{me}"),
    );
    let _cleanup = Namespaces(vec![
        streamfleet_compute::network::instance_namespace(&"i-mct".into()),
        host_namespace(&qa.as_str().into()),
        host_namespace(&qb.as_str().into()),
        host_namespace(&cc.as_str().into()),
        fabric.clone(),
    ]);
    let state = tempfile::tempdir().expect("tempdir");
    // A short wait for the target's launch, so the killed target's rollback comes soon.
    let spawn = |id: &str| {
        compute_host_with(
            &nats,
            id,
            "qemu",
            &images,
            state.path(),
            &fabric,
            &["--migration-launch-timeout", "45"],
        )
    };
    let mut hosts = std::collections::HashMap::new();
    hosts.insert(qa.clone(), spawn(&qa));
    hosts.insert(qb.clone(), spawn(&qb));
    let _c = compute_host(&nats, &cc, "crun", &images, state.path(), &fabric);
    // The workers publish the customers' notices; a service relays them.
    let _workers = NodeProcess::workers(&nats, &[]);
    let mut notices = nats
        .client("service")
        .await
        .subscribe(streamfleet_bus_schemas::subjects::customer_notice("acme"))
        .await
        .expect("a service may hear the customers' notices");
    let service = nats.commands("service").await;
    let operator = nats.commands("operator").await;
    let mut events = Events(
        Follower::start(nats.client("operator").await, 1)
            .await
            .expect("follow"),
    );

    let vm = accepted(&send(&service, launch("i-mv", Some(Hypervisor::Qemu), vec![])).await);
    let Some(Event::InstancePlaced(placed)) = vm.iter().find(|e| e.type_name() == "InstancePlaced")
    else {
        panic!("placed: {vm:?}")
    };
    let source = placed.host_id.to_string();
    let target = if source == qa { qb.clone() } else { qa.clone() };
    let address = placed.addresses.private.clone();
    events.until("instance-i-mv", "InstanceLaunched").await;
    accepted(&send(&service, launch("i-mct", Some(Hypervisor::Crun), vec![])).await);

    // (d) What cannot move is refused, naming why.
    let mut ct = schedule("m-ct", 3600, None);
    if let Cmd::ScheduleMigration(s) = &mut ct {
        s.instance_id = "i-mct".into();
    }
    assert_eq!(rule(&send(&operator, ct).await), "unsupported");
    assert_eq!(
        rule(&send(&operator, schedule("m-x", 3600, Some(&cc))).await),
        "no_matching_host"
    );

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(Mutex::new(false));
    poll(fabric.clone(), address.clone(), seen.clone(), stop.clone());
    answers_again(&seen, 0);

    // (a) Scheduled; synced in full and at least once more while the guest writes; the guest
    // reboots itself; the move.
    let scheduled = accepted(&send(&operator, schedule("m1", 3600, None)).await);
    let Event::MigrationScheduled(m1) = &scheduled[0] else {
        panic!("{scheduled:?}")
    };
    assert_eq!(m1.target_host.as_str(), target, "the only other qemu host");
    let Event::VolumeSynced(_) = events.until("migration-m1", "VolumeSynced").await else {
        panic!()
    };
    let Event::CustomerNotified(told) = events.until("migration-m1", "CustomerNotified").await
    else {
        panic!()
    };
    assert!(matches!(told.notice, Notice::Scheduled { .. }));
    let heard = tokio::time::timeout(Duration::from_secs(30), notices.next())
        .await
        .expect("the notice reaches the customer's subject")
        .expect("a message");
    let heard: CustomerNotified = serde_json::from_slice(&heard.payload).expect("a notice");
    assert_eq!(heard, told, "the same notice on the customer's subject");
    // A second move of the same instance while the first is under way fails before anything is
    // copied, and leaves the first alone.
    accepted(&send(&operator, schedule("m1b", 3600, None)).await);
    let Event::MigrationFailed(second) = events.until("migration-m1b", "MigrationFailed").await
    else {
        panic!()
    };
    assert!(
        second.cause.contains("already migrating under m1"),
        "{second:?}"
    );
    events.until("migration-m1b", "MigrationRolledBack").await;
    loop {
        let Event::VolumeSyncRound(r) = events.until("migration-m1", "VolumeSyncRound").await
        else {
            panic!()
        };
        if r.round >= 1 {
            break;
        }
    }
    // The customer reboots from inside the guest.
    // The paused guest keeps the connection open: `timeout` ends the wait.
    let reboot = Command::new("timeout")
        .args([
            "5", "ip", "netns", "exec", &fabric, "busybox", "nc", "-w", "3", &address, "7001",
        ])
        .output()
        .expect("nc");
    assert!(
        String::from_utf8_lossy(&reboot.stdout).contains("rebooting"),
        "the guest took the reboot"
    );
    // Paused now: nothing answers until the target does.
    let (before, boots_before) = last_seen(&seen);
    let recorded = steps_until(&mut events, "migration-m1", "MigrationCompleted").await;
    // Sync rounds may still come before the move starts.
    let steps: Vec<String> = recorded
        .iter()
        .filter(|(stream, _, e)| stream == "migration-m1" && e.type_name() != "VolumeSyncRound")
        .map(|(_, _, e)| e.type_name().to_string())
        .collect();
    assert_eq!(
        steps,
        [
            "MigrationStarted",
            "MigrationNetworkDetached",
            "MigrationFinalSynced",
            "MigrationSourceStopped",
            "MigrationTargetLaunched",
            "MigrationNetworkAttached",
            "MigrationCompleted",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>(),
        "the move's steps in order"
    );
    let answered = seen.lock().expect("seen").answers.len();
    let (after, boots_after) = answers_again(&seen, answered);
    assert!(after > before, "the counter went on: {before} then {after}");
    assert_eq!(
        boots_after,
        boots_before + 1,
        "one more boot, on the target"
    );
    let moved = recorded.iter().find_map(|(_, _, e)| match e {
        Event::InstanceMoved(m) => Some(m.clone()),
        _ => None,
    });
    let moved = moved.expect("the instance is recorded as moved");
    assert_eq!(moved.host_id.as_str(), target);
    assert_eq!(moved.from_host.as_str(), source);
    let Some((_, _, Event::MigrationCompleted(done))) = recorded.last() else {
        panic!()
    };
    // An auditor sees the step at any moment of it.
    for (_, position, e) in &recorded {
        let step = match e.type_name() {
            "MigrationNetworkDetached" => "network_detached",
            "MigrationSourceStopped" => "source_stopped",
            "MigrationCompleted" => "completed",
            _ => continue,
        };
        let then = as_of(&nats, "migration-m1", *position).await;
        assert_eq!(then["state"]["kind"], "migration", "{then}");
        assert_eq!(
            then["state"]["state"]["step"], step,
            "as of {position}: {then}"
        );
    }
    assert!(
        done.downtime_ms >= done.boot_ms && done.control_plane_ms < 5_000,
        "the control plane's share stays small: {done:?}"
    );
    assert_eq!(qemus_of("i-mv").len(), 1, "one copy runs");
    assert!(
        !state.path().join(&source).join("instances/i-mv").exists()
            || tokio::time::timeout(Duration::from_secs(30), async {
                while state.path().join(&source).join("instances/i-mv").exists() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await
            .is_ok(),
        "the source's copy is removed once the move completed"
    );

    // (b) Back at its deadline, without a reboot; each host's agent killed -9 and started again
    // on the way (the source while it syncs, the target once the source stopped): each takes up
    // the step it was at.
    accepted(&send(&operator, schedule("m2", 25, None)).await);
    events.until("migration-m2", "VolumeSynced").await;
    let mut restart = |host: &str| {
        let mut old = hosts.remove(host).expect("a host");
        old.kill9();
        hosts.insert(host.to_string(), spawn(host));
    };
    restart(&target);
    let Event::MigrationStarted(started) = events.until("migration-m2", "MigrationStarted").await
    else {
        panic!()
    };
    assert_eq!(started.trigger, MigrationTrigger::Deadline);
    events.until("migration-m2", "MigrationSourceStopped").await;
    restart(&source);
    let Event::MigrationCompleted(done) = events.until("migration-m2", "MigrationCompleted").await
    else {
        panic!()
    };
    assert_eq!(done.host_id.as_str(), source, "back on the first host");
    assert_eq!(qemus_of("i-mv").len(), 1, "one copy runs");
    let answered = seen.lock().expect("seen").answers.len();
    let (back, _) = answers_again(&seen, answered);
    assert!(back > after);

    // (c) The target dies during the move: rolled back, answering from the source again.
    accepted(&send(&operator, schedule("m3", 3600, None)).await);
    events.until("migration-m3", "VolumeSynced").await;
    send(
        &service,
        Cmd::RebootInstance(streamfleet_bus_schemas::instance::RebootInstance {
            instance_id: "i-mv".into(),
        }),
    )
    .await;
    events.until("migration-m3", "MigrationSourceStopped").await;
    // The target host loses power: its agent and everything in its namespace.
    hosts.get_mut(&target).expect("the target").kill9();
    let target_ns = host_namespace(&target.as_str().into());
    if let Ok(out) = Command::new("ip")
        .args(["netns", "pids", &target_ns])
        .output()
    {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
    let Event::MigrationFailed(failed) = events.until("migration-m3", "MigrationFailed").await
    else {
        panic!()
    };
    assert_eq!(failed.step, "launch_on_target");
    events.until("migration-m3", "MigrationRolledBack").await;
    let answered = seen.lock().expect("seen").answers.len();
    let (again, _) = answers_again(&seen, answered);
    assert!(again > back, "the counter went on after the rollback");

    // (e) The dead host comes back (and discards its copy of m3); a migration to it cancelled
    // after its sync: its copy goes, and the guest's own reboot is an ordinary reboot again.
    hosts.insert(target.clone(), spawn(&target));
    let copy = state.path().join(&target).join("instances/i-mv");
    accepted(&send(&operator, schedule("m4", 3600, None)).await);
    events.until("migration-m4", "VolumeSynced").await;
    assert!(copy.exists(), "the target holds a copy while synced");
    let cancelled = accepted(
        &send(
            &operator,
            Cmd::CancelMigration(CancelMigration {
                migration_id: "m4".into(),
                reason: "host repaired".into(),
            }),
        )
        .await,
    );
    assert_eq!(cancelled[0].type_name(), "MigrationCancelled");
    assert_eq!(
        rule(
            &send(
                &operator,
                Cmd::CancelMigration(CancelMigration {
                    migration_id: "m4".into(),
                    reason: "again".into(),
                }),
            )
            .await
        ),
        "migration_over"
    );
    let gone = tokio::time::timeout(Duration::from_secs(30), async {
        while copy.exists() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the target's copy is removed on cancel");
    let (_, boots) = last_seen(&seen);
    let reboot = Command::new("timeout")
        .args([
            "5", "ip", "netns", "exec", &fabric, "busybox", "nc", "-w", "3", &address, "7001",
        ])
        .output()
        .expect("nc");
    assert!(String::from_utf8_lossy(&reboot.stdout).contains("rebooting"));
    let Event::InstanceRebooted(rebooted) = events.until("instance-i-mv", "InstanceRebooted").await
    else {
        panic!()
    };
    assert_eq!(
        rebooted.by,
        streamfleet_bus_schemas::instance::ChangeCause::Guest
    );
    let answered = seen.lock().expect("seen").answers.len();
    let (_, boots_now) = answers_again(&seen, answered);
    assert_eq!(boots_now, boots + 1, "rebooted in place");
    *stop.lock().expect("stop") = true;

    // Nothing the client saw went backwards: every answered (synced) write survived the moves.
    let s = seen.lock().expect("seen");
    for w in s.answers.windows(2) {
        assert!(
            w[1].1 > w[0].1,
            "the counter went back: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
}
