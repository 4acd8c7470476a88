//! The live one-line summary `up` prints: sessions, hosts per region, discrepancies, and the
//! node's health when it is degraded (a full disk).

use std::time::{Duration, Instant};
use streamfleet_bus_client::{Follower, NatsLogin};
use streamfleet_bus_schemas::{Event, HealthStatus, NodeHealth};
use streamfleet_domain::host::HostStatus;
use streamfleet_workers::Fleet;

pub async fn run(login: NatsLogin, every: Duration) {
    let Ok(client) = streamfleet_bus_client::connect(&login).await else {
        return;
    };
    let Ok(mut follower) = Follower::start(client.clone(), 1).await else {
        return;
    };
    let mut fleet = Fleet::default();
    let started = Instant::now();
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        tokio::select! {
            next = follower.next() => {
                let Ok(followed) = next else { return };
                let Ok(env) = followed.envelope() else { continue };
                if let Ok(event) = Event::from_parts(&env.body.event_type, env.body.data) {
                    fleet.apply(followed.position, env.body.time, &event);
                }
            }
            _ = ticks.tick() => {
                let health = health(&client).await;
                println!("{}{health}", line(&fleet, started.elapsed()));
            }
        }
    }
}

/// `  NODE degraded: storage full (…)` while the node refuses commands; nothing when it serves
/// (or cannot be asked: the line still shows what the log says).
async fn health(client: &async_nats::Client) -> String {
    let asked = tokio::time::timeout(
        Duration::from_secs(1),
        client.request(streamfleet_bus_schemas::subjects::LOG_HEALTH, "".into()),
    )
    .await;
    let Ok(Ok(reply)) = asked else {
        return String::new();
    };
    match serde_json::from_slice::<NodeHealth>(&reply.payload) {
        Ok(h) if h.status == HealthStatus::Degraded => {
            format!("  NODE {h}")
        }
        _ => String::new(),
    }
}

fn line(fleet: &Fleet, elapsed: Duration) -> String {
    let active = fleet
        .sessions
        .values()
        .filter(|s| s.ended.is_none() && s.provisioned_at.is_some())
        .count();
    let ended = fleet
        .sessions
        .values()
        .filter(|s| s.ended.is_some())
        .count();
    let mut regions = std::collections::BTreeMap::<&str, (usize, usize)>::new();
    for h in fleet.hosts.values().filter(|h| h.is_live()) {
        let r = regions.entry(h.region.as_str()).or_default();
        r.0 += 1;
        if h.status == HostStatus::Active && h.sessions.is_empty() {
            r.1 += 1;
        }
    }
    let hosts: Vec<String> = regions
        .iter()
        .map(|(r, (n, idle))| format!("{r} {n} ({idle} idle)"))
        .collect();
    let open = fleet.discrepancies.values().filter(|d| !d.resolved).count();
    format!(
        "[{:>4}s] log {}  sessions {active} active, {ended} ended  hosts: {}  discrepancies {open} open, {} resolved",
        elapsed.as_secs(),
        fleet.position,
        hosts.join(", "),
        fleet.discrepancies.len() - open
    )
}
