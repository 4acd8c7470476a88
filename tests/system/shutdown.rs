//! A node stopped with SIGTERM answers every command it recorded: nothing durable goes
//! unanswered, and everything answered is durable.

use crate::commands::report;
use crate::harness::{Nats, NodeProcess};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use streamfleet_bus_schemas::{CommandReply, EventBody};
use streamfleet_eventlog::{Config, EventLog};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_command_the_node_took() {
    let nats = Nats::start();
    let data = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProcess::start(&nats, data.path());
    let login = nats.login("service");
    let client = login
        .options()
        .request_timeout(Some(std::time::Duration::from_secs(3)))
        .connect(login.url.as_str())
        .await
        .expect("connect");
    let commands = streamfleet_bus_client::CommandClient::new(
        client,
        streamfleet_bus_schemas::principal::Role::Service,
        "test/shutdown",
    );
    let timed_out = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let (first_ack, mut acked) = tokio::sync::mpsc::channel::<()>(1);
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..64)
        .map(|w| {
            let (commands, accepted, first_ack, stop, timed_out) = (
                commands.clone(),
                accepted.clone(),
                first_ack.clone(),
                stop.clone(),
                timed_out.clone(),
            );
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = Uuid::now_v7();
                    match commands.send(id, &report(&format!("stop-{w}-{i}"))).await {
                        Ok(CommandReply::Accepted { .. }) => {
                            accepted.lock().expect("lock").insert(id);
                            let _ = first_ack.try_send(());
                        }
                        Ok(other) => panic!("unexpected reply {other:?}"),
                        // Refused before the node took it (no responders): fine. Taken and never
                        // answered (a time-out): what a clean stop must not do.
                        Err(streamfleet_bus_client::SendError::Request(e))
                            if e.kind() == async_nats::RequestErrorKind::TimedOut =>
                        {
                            timed_out.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {}
                    }
                    i += 1;
                }
            })
        })
        .collect();
    drop(first_ack);
    acked.recv().await.expect("commands are flowing");
    let status = node.terminate();
    assert!(
        status.success(),
        "node exits cleanly on SIGTERM: {status:?}"
    );
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.expect("sender");
    }

    let log = EventLog::open(data.path().join("events.redb"), Config::default()).expect("open");
    let recorded: HashSet<Uuid> = log
        .read_all(1, usize::MAX)
        .expect("read")
        .iter()
        .map(|e| {
            serde_json::from_slice::<EventBody>(&e.body)
                .expect("body")
                .causationid
        })
        .collect();
    let accepted = accepted.lock().expect("lock").clone();
    assert!(!recorded.is_empty());
    // Requests in transit while the node unsubscribes may time out instead of being refused;
    // what matters is that none of them was recorded (a retry with the same id is then safe).
    eprintln!(
        "requests that timed out during the stop: {}",
        timed_out.load(Ordering::Relaxed)
    );
    assert_eq!(
        recorded, accepted,
        "every recorded command was answered, and every answer was recorded"
    );
}
