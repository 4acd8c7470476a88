//! Followers over NATS end with exactly the full ordered sequence.

use crate::commands::report;
use crate::harness::System;
use std::collections::HashSet;
use streamfleet_bus_client::{CommandClient, Follower};
use streamfleet_bus_schemas::CommandReply;
use uuid::Uuid;

/// Sends `n` commands, `concurrency` at a time; each records one event.
pub async fn record(commands: &CommandClient, prefix: &str, n: usize, concurrency: usize) {
    let mut set = tokio::task::JoinSet::new();
    let per = n.div_ceil(concurrency);
    for w in 0..concurrency {
        let (c, prefix) = (commands.clone(), prefix.to_string());
        set.spawn(async move {
            for i in (w * per)..((w + 1) * per).min(n) {
                let reply = c
                    .send(Uuid::now_v7(), &report(&format!("{prefix}-{i}")))
                    .await
                    .expect("reply");
                assert!(matches!(reply, CommandReply::Accepted { .. }), "{reply:?}");
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("sender");
    }
}

async fn expect_sequence(follower: &mut Follower, through: u64) {
    let mut ids = HashSet::new();
    for expected in follower.position()..=through {
        let e = follower.next().await.expect("next event");
        assert_eq!(e.position, expected, "ordered, no gaps, no duplicates");
        let env = e.envelope().expect("envelope");
        assert_eq!(env.position, expected);
        assert!(
            ids.insert(env.body.id),
            "event {} delivered twice",
            env.body.id
        );
    }
}

#[tokio::test]
async fn a_follower_started_after_10000_events_gets_all_then_live_ones() {
    let sys = System::start();
    let commands = sys.nats.commands("service").await;
    record(&commands, "early", 10_000, 64).await;
    let mut follower = Follower::start(sys.nats.client("auditor").await, 1)
        .await
        .expect("follow");
    let live = {
        let commands = commands.clone();
        tokio::spawn(async move { record(&commands, "late", 500, 8).await })
    };
    expect_sequence(&mut follower, 10_500).await;
    live.await.expect("live sender");
}

#[tokio::test]
async fn a_follower_whose_connection_drops_mid_stream_misses_nothing() {
    let sys = System::start();
    let commands = sys.nats.commands("service").await;
    let client = sys.nats.client("dashboard").await;
    let mut follower = Follower::start(client.clone(), 1).await.expect("follow");
    let producer = {
        let commands = commands.clone();
        tokio::spawn(async move { record(&commands, "p", 6_000, 16).await })
    };
    expect_sequence(&mut follower, 1_000).await;
    client.force_reconnect().await.expect("reconnect");
    expect_sequence(&mut follower, 3_000).await;
    client.force_reconnect().await.expect("reconnect");
    expect_sequence(&mut follower, 6_000).await;
    producer.await.expect("producer");
    assert!(
        client
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3,
        "the connection really dropped"
    );
}

#[tokio::test]
async fn a_follower_misses_nothing_across_a_kill_9_and_restart_of_the_node() {
    use crate::harness::{Nats, NodeProcess};
    let nats = Nats::start();
    let data = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProcess::start(&nats, data.path());
    let commands = nats.commands("service").await;
    record(&commands, "before", 1_500, 16).await;
    let mut follower = Follower::start(nats.client("auditor").await, 1)
        .await
        .expect("follow");
    let following = tokio::spawn(async move {
        expect_sequence(&mut follower, 4_000).await;
    });
    node.kill9();
    let _node = NodeProcess::start(&nats, data.path());
    record(&commands, "after", 2_500, 16).await;
    tokio::time::timeout(std::time::Duration::from_secs(120), following)
        .await
        .expect("the follower catches up after the restart")
        .expect("follower task");
}
