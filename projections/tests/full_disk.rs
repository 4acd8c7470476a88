//! The views on a disk that fills up: they keep following and serving from memory; their files
//! stay as of a consistent earlier checkpoint, so a restart once space is back ends exactly
//! where a rebuild does.

mod common;

use common::history;
use std::time::Duration;
use streamfleet_bus_client::NatsLogin;
use streamfleet_projections::pb::views_client::ViewsClient;
use streamfleet_projections::pb::{self};
use streamfleet_projections::store::Store;
use streamfleet_projections::{
    EventFeed, FeedSender, ProjectionsConfig, diff, rebuild_from, start_with_source,
};
use streamfleet_testkit::SmallDisk;

const WAIT: Duration = Duration::from_secs(10);

fn config_in(dir: &std::path::Path) -> ProjectionsConfig {
    ProjectionsConfig {
        nats: NatsLogin::new("nats://unused", "dashboard", "unused"),
        data_dir: dir.to_path_buf(),
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        heartbeat_interval: Duration::from_secs(5),
        tls: None,
        token: None,
    }
}

/// The shared history, then its first event (a buffer target) again and again: a log as long
/// as the test needs.
fn events(
    total: usize,
) -> Vec<(
    chrono::DateTime<chrono::Utc>,
    streamfleet_bus_schemas::Event,
)> {
    let mut all = history();
    let again = all[0].clone();
    while all.len() < total {
        all.push(again.clone());
    }
    all
}

async fn feed(sender: &FeedSender, from: usize, to: usize) {
    for (i, (time, event)) in events(to).into_iter().enumerate() {
        if (from..=to).contains(&(i + 1)) {
            sender.send(i as u64 + 1, time, event).await.expect("fed");
        }
    }
}

#[tokio::test]
async fn on_a_full_disk_the_views_serve_from_memory_and_a_restart_once_freed_equals_a_rebuild() {
    let disk = SmallDisk::mount(16);
    let dir = disk.path().join("views");
    let (sender, events) = EventFeed::channel(64);
    let running = start_with_source(config_in(&dir), events)
        .await
        .expect("started");
    feed(&sender, 1, 4).await;
    tokio::time::timeout(WAIT, running.wait_for_position(4))
        .await
        .expect("stored");

    let filler = disk.fill();
    // One event per store until a durable one (every 20th) meets the full disk.
    let mut n = 4;
    while running.storing() {
        n += 1;
        assert!(n < 200, "no write was refused by the full disk");
        feed(&sender, n, n).await;
        tokio::time::timeout(WAIT, async {
            tokio::select! {
                _ = running.wait_for_position(n as u64) => {}
                _ = running.wait_until_not_storing() => {}
            }
        })
        .await
        .expect("stored, or refused");
    }
    // Past the failure the views still follow.
    n += 3;
    feed(&sender, n - 2, n).await;
    // Served from memory: the views reach the end of the history although nothing more can be
    // written.
    let mut client = ViewsClient::connect(format!("http://{}", running.grpc_addr()))
        .await
        .expect("connected");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let sessions = client
            .get_sessions(pb::SessionsRequest::default())
            .await
            .expect("the views answer on a full disk")
            .into_inner();
        if sessions.position == n as u64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the views stopped at {}",
            sessions.position
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(client);
    assert!(!running.storing());
    running
        .shutdown()
        .await
        .expect("stops cleanly, writing nothing more");
    std::fs::remove_file(filler).expect("free the space");
    let stored = Store::open(&dir).expect("the files open").1.position();
    assert!(
        stored < n as u64,
        "the full disk stopped the writes (stored through {stored} of {n})"
    );

    // Space back: a restart continues from the files' checkpoints and ends where a rebuild does.
    let (sender, events) = EventFeed::channel(64);
    let running = start_with_source(config_in(&dir), events)
        .await
        .expect("restarted");
    feed(&sender, 1, n).await;
    tokio::time::timeout(WAIT, running.wait_for_position(n as u64))
        .await
        .expect("stored after the restart");
    running.shutdown().await.expect("stopped");
    let rebuilt = tempfile::tempdir().expect("dir");
    let (sender, events) = EventFeed::channel(64);
    let feeding = tokio::spawn(async move { feed(&sender, 1, n).await });
    rebuild_from(events, rebuilt.path(), n as u64)
        .await
        .expect("rebuilt");
    feeding.await.expect("fed");
    assert_eq!(diff(&dir, rebuilt.path()).expect("diff"), vec![]);
}
