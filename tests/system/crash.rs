//! The node — alone, and the whole system under `up` — is `kill -9`ed at random moments under
//! a stream of acknowledged commands; every acknowledged event survives exactly once, in order,
//! and the hash chain verifies.

use crate::commands::report;
use crate::harness::{Nats, NodeProcess};
use rand::Rng;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamfleet_bus_schemas::{Command, CommandReply, EventBody, RecordedEvent};
use streamfleet_eventlog::{Config, EventLog};
use tokio::sync::mpsc;
use uuid::Uuid;

const KILLS: usize = 24;
const WORKERS: usize = 12;

type Queue = Arc<Mutex<VecDeque<(Uuid, Command)>>>;

/// Sends commands from the queue until it is empty or the node stops answering; reports acks.
async fn worker(
    queue: Queue,
    commands: streamfleet_bus_client::CommandClient,
    acks: mpsc::UnboundedSender<(Uuid, Vec<RecordedEvent>)>,
) {
    loop {
        let Some((id, cmd)) = queue.lock().expect("queue").pop_front() else {
            return;
        };
        match commands.send(id, &cmd).await {
            Ok(CommandReply::Accepted { events, .. }) => {
                let _ = acks.send((id, events));
            }
            Ok(rejected) => panic!("command {id} rejected — recorded twice? {rejected:?}"),
            Err(_) => return, // the node is gone; the command stays unacknowledged
        }
    }
}

/// Opens the log file of the dead node and checks it against everything acknowledged: the
/// chain verifies, positions have no gap, each of the commands `ours` picks out is recorded at
/// most once, and each acknowledged one exactly where its reply said.
fn check_log(
    path: &std::path::Path,
    acked: &HashMap<Uuid, Vec<RecordedEvent>>,
    ours: impl Fn(&Uuid) -> bool,
) -> u64 {
    let log = EventLog::open(
        path,
        Config {
            index_flush_events: 37,
            ..Config::default()
        },
    )
    .expect("log reopens after kill -9");
    let report = log
        .verify(1, None)
        .expect("hash chain and checksums verify");
    let all = log.read_all(1, usize::MAX).expect("read all");
    assert_eq!(all.len() as u64, report.last, "positions 1..=head, no gaps");
    let mut by_command: HashMap<Uuid, Vec<(u64, Uuid)>> = HashMap::new();
    for e in &all {
        let body: EventBody = serde_json::from_slice(&e.body).expect("body");
        by_command
            .entry(body.causationid)
            .or_default()
            .push((e.position, body.id));
    }
    for (command, events) in by_command.iter().filter(|(c, _)| ours(c)) {
        assert_eq!(
            events.len(),
            1,
            "command {command} recorded {} times",
            events.len()
        );
    }
    for (command, recorded) in acked {
        let found = by_command
            .get(command)
            .unwrap_or_else(|| panic!("acknowledged command {command} lost"));
        assert_eq!(
            found,
            &vec![(recorded[0].position, recorded[0].id)],
            "acknowledged event moved or changed"
        );
    }
    report.last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_acknowledged_event() {
    let nats = Nats::start();
    let data = tempfile::tempdir().expect("tempdir");
    let log_path = data.path().join("events.redb");
    let commands = nats.commands("service").await;
    let mut rng = rand::rng();
    let mut issued: Vec<(Uuid, Command)> = Vec::new();
    let mut acked: HashMap<Uuid, Vec<RecordedEvent>> = HashMap::new();
    let mut next = 0;

    for round in 0..=KILLS {
        // A small index flush, so kills land before, during and after bulk index writes.
        let mut node = NodeProcess::start_with(&nats, data.path(), &["--index-flush-events", "37"]);
        // Unacknowledged commands first, with their original ids, then new ones.
        let mut work: VecDeque<(Uuid, Command)> = issued
            .iter()
            .filter(|(id, _)| !acked.contains_key(id))
            .cloned()
            .collect();
        let retried = work.len();
        for _ in 0..400 {
            let cmd = (Uuid::now_v7(), report(&format!("crash-{next}")));
            next += 1;
            issued.push(cmd.clone());
            work.push_back(cmd);
        }
        let queue: Queue = Arc::new(Mutex::new(work));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| tokio::spawn(worker(queue.clone(), commands.clone(), tx.clone())))
            .collect();
        drop(tx);

        let last_round = round == KILLS;
        let kill_after = if last_round {
            usize::MAX
        } else {
            rng.random_range(1..=200)
        };
        let mut got = 0;
        while got < kill_after {
            let ack = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("acks keep coming");
            let Some((id, events)) = ack else { break }; // queue drained (last round)
            acked.insert(id, events);
            got += 1;
        }
        if !last_round {
            node.kill9();
        }
        for w in &workers {
            w.abort();
        }
        for w in workers {
            if let Err(e) = w.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        while let Ok((id, events)) = rx.try_recv() {
            acked.insert(id, events);
        }
        drop(node); // last round: stop it so the test can open the file
        let head = check_log(&log_path, &acked, |_| true);
        assert!(head >= acked.len() as u64);
        eprintln!(
            "round {round}: retried {retried}, {} acknowledged in all, head {head}",
            acked.len()
        );
    }
    // The last round ran with no kill until its queue drained: everything issued is recorded once.
    assert_eq!(
        acked.len(),
        issued.len(),
        "every command was finally acknowledged"
    );
    assert_eq!(check_log(&log_path, &acked, |_| true), issued.len() as u64);
}

/// Power loss, honestly, for the whole system: `up` (the node, the workers and the projections
/// inside it; nats-server and the host agents dying with it) is `kill -9`ed at random moments
/// under a stream of acknowledged commands, cycle after cycle on one state folder. Each time the
/// next `up` starts cleanly, the chain verifies, and every acknowledged command is recorded
/// exactly once; unacknowledged ones sent again under their ids are recorded at most once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_up_at_random_moments_loses_no_acknowledged_event() {
    const CYCLES: usize = 8;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let port = crate::harness::free_port();
    let mut rng = rand::rng();
    let mut issued: Vec<(Uuid, Command)> = Vec::new();
    let mut acked: HashMap<Uuid, Vec<RecordedEvent>> = HashMap::new();
    let mut next = 0;
    for round in 0..=CYCLES {
        let mut up = tokio::task::block_in_place(|| crate::up::start_up(&state, port));
        let creds = crate::up::credentials_env(&state);
        let var = |name: &str| {
            creds
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{name} in credentials.env"))
        };
        let login = streamfleet_bus_client::NatsLogin::new(
            format!("nats://127.0.0.1:{port}"),
            "service",
            var("SF_SERVICE_PASSWORD"),
        )
        .with_ca(Some(var("SF_NATS_CA").into()));
        let commands = streamfleet_bus_client::CommandClient::new(
            streamfleet_bus_client::connect(&login)
                .await
                .expect("connect"),
            streamfleet_bus_schemas::principal::Role::Service,
            "test/power-loss",
        );
        let mut work: VecDeque<(Uuid, Command)> = issued
            .iter()
            .filter(|(id, _)| !acked.contains_key(id))
            .cloned()
            .collect();
        for _ in 0..300 {
            let cmd = (Uuid::now_v7(), report(&format!("power-{next}")));
            next += 1;
            issued.push(cmd.clone());
            work.push_back(cmd);
        }
        let queue: Queue = Arc::new(Mutex::new(work));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| tokio::spawn(worker(queue.clone(), commands.clone(), tx.clone())))
            .collect();
        drop(tx);
        let last_round = round == CYCLES;
        let kill_after = if last_round {
            usize::MAX
        } else {
            rng.random_range(1..=150)
        };
        let mut got = 0;
        while got < kill_after {
            let ack = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("acks keep coming");
            let Some((id, events)) = ack else { break };
            acked.insert(id, events);
            got += 1;
        }
        let children: Vec<u32> = std::fs::read_to_string(state.join("up.children"))
            .expect("up.children")
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();
        if last_round {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &up.id().to_string()])
                .status();
            assert!(
                up.wait().expect("wait").success(),
                "a clean stop at the end"
            );
        } else {
            up.kill().expect("kill -9 up");
            up.wait().expect("reaped");
        }
        for w in &workers {
            w.abort();
        }
        for w in workers {
            if let Err(e) = w.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        while let Ok((id, events)) = rx.try_recv() {
            acked.insert(id, events);
        }
        // Its children (nats-server, the host agents) die with it.
        let alive = |pid: &u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while children.iter().any(alive) {
            assert!(std::time::Instant::now() < deadline, "orphans of up");
            std::thread::sleep(Duration::from_millis(50));
        }
        let ids: std::collections::HashSet<Uuid> = issued.iter().map(|(id, _)| *id).collect();
        let head = check_log(&state.join("data/events.redb"), &acked, |c| ids.contains(c));
        eprintln!(
            "cycle {round}: {} acknowledged in all, head {head}",
            acked.len()
        );
    }
    assert_eq!(
        acked.len(),
        issued.len(),
        "every command was finally acknowledged"
    );
}
