//! The projections as a dashboard sees them over gRPC, after a run with sessions, a
//! discrepancy and a lost host; and a rebuild from position 1 equal to the live views.

use crate::cloud::*;
use futures::StreamExt;
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::payloads::{HostRemovalReason, SessionEndReason};
use streamfleet_bus_schemas::services::{AgentReply, InjectFault};
use streamfleet_bus_schemas::subjects;
use streamfleet_domain::host::HostStatus;
use streamfleet_projections::pb;
use streamfleet_projections::pb::views_client::ViewsClient;

#[tokio::test]
async fn the_views_show_liveness_discrepancies_and_sessions_and_a_rebuild_equals_them() {
    let mut cloud = Cloud::start(&[
        AgentSpec::new("eu-west", "eu", 1, 4),
        AgentSpec::new("us-east", "us", 1, 4),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let live_dir = dir.path().join("live");
    let (projections, url) = cloud.projections(&live_dir);
    let mut views = ViewsClient::connect(url.clone()).await.expect("gRPC");

    // A live stream sees the first session arrive.
    let mut watch_sessions = views
        .watch_sessions(pb::SessionsRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let first = cloud.session("ada", PARIS, None).await;
    let seen = async {
        while let Some(update) = watch_sessions.next().await {
            let update = update.expect("update");
            if update.sessions.iter().any(|s| {
                s.session_id == first.session_id && s.status == pb::SessionStatus::Active as i32
            }) {
                return true;
            }
        }
        false
    };
    assert!(
        tokio::time::timeout(PATIENCE, seen).await.expect("in time"),
        "the watch showed the session"
    );

    let far = cloud.session("bob", NEW_YORK, None).await;
    let dropped = cloud.session("cy", PARIS, None).await;
    let worker = cloud.sys.nats.client("worker").await;
    let fault = InjectFault {
        stray_session: Some("ghost-7".into()),
        drop_session: Some(dropped.session_id.clone()),
    };
    let reply = worker
        .request(
            subjects::host(&first.host_id, "fault"),
            serde_json::to_vec(&fault).expect("json").into(),
        )
        .await
        .expect("fault");
    assert!(matches!(
        serde_json::from_slice(&reply.payload).expect("reply"),
        AgentReply::Ok { .. }
    ));
    let mut watch = cloud.watch().await;
    watch
        .until("both discrepancies resolved", |events, _| {
            events
                .iter()
                .filter(|(_, e)| matches!(e, Event::DiscrepancyResolved(_)))
                .count()
                == 2
        })
        .await;
    cloud.agents[1].kill9();
    watch.until("us-east's session lost and its host removed", |events, fleet| {
        events.iter().any(|(_, e)| matches!(e, Event::SessionEnded(x) if x.session_id == far.session_id && x.reason == SessionEndReason::Lost))
            && fleet.hosts.get(&far.host_id).map(|h| &h.status) == Some(&HostStatus::Removed(HostRemovalReason::Lost))
    }).await;

    // Nothing more will happen: stop whatever sends commands, and read the head.
    let head = quiesce(&mut cloud).await;
    let status = caught_up(&mut views, head).await;
    assert!(
        status.views.iter().all(|v| v.position == head),
        "{status:?}"
    );

    let beats = views
        .get_heartbeats(pb::HeartbeatsRequest::default())
        .await
        .expect("heartbeats")
        .into_inner();
    let liveness = |id: &str| {
        beats
            .sessions
            .iter()
            .find(|s| s.row.as_ref().is_some_and(|r| r.session_id == id))
            .map(|s| s.liveness)
    };
    assert_eq!(
        liveness(&far.session_id),
        Some(pb::Liveness::Lost as i32),
        "the heartbeat view shows the lost session"
    );
    let lost_host = beats
        .hosts
        .iter()
        .find(|h| h.row.as_ref().is_some_and(|r| r.host_id == far.host_id))
        .expect("host row");
    assert_eq!(lost_host.liveness, pb::Liveness::Lost as i32);
    assert!(
        beats
            .regions
            .iter()
            .any(|r| r.key == "us-east" && r.hosts_lost == 1),
        "{:?}",
        beats.regions
    );

    let consistency = views
        .get_consistency(pb::ConsistencyRequest::default())
        .await
        .expect("consistency")
        .into_inner();
    let mut kinds: Vec<(&str, &str, bool)> = consistency
        .discrepancies
        .iter()
        .map(|d| {
            (
                d.kind.as_str(),
                d.session_id.as_str(),
                d.resolved_at.is_some(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("missing_from_report", dropped.session_id.as_str(), true),
            ("unknown_session", "ghost-7", true)
        ]
    );
    assert!(
        consistency
            .discrepancies
            .iter()
            .all(|d| d.opened_at.is_some() && !d.resolution.is_empty())
    );

    let sessions = views
        .get_sessions(pb::SessionsRequest::default())
        .await
        .expect("sessions")
        .into_inner();
    let row = sessions
        .sessions
        .iter()
        .find(|s| s.session_id == first.session_id)
        .expect("session row");
    assert_eq!(
        (
            row.region.as_str(),
            row.host_id.as_str(),
            row.user_id.as_str()
        ),
        ("eu-west", first.host_id.as_str(), "ada")
    );
    assert!(
        row.route_reason.contains("Paris") && row.placement_reason.contains("buffer host"),
        "{row:?}"
    );

    let hosts = views
        .get_hosts(pb::HostsRequest::default())
        .await
        .expect("hosts")
        .into_inner();
    let us = hosts
        .hosts
        .iter()
        .find(|h| h.host_id == far.host_id)
        .expect("host row");
    assert_eq!(
        (us.status, us.removal_reason.as_str()),
        (pb::HostStatus::Removed as i32, "lost")
    );

    // A rebuild from position 1 gives exactly the live rows.
    drop(views);
    rebuild_equals_live(
        &cloud,
        projections,
        &live_dir,
        &dir.path().join("rebuilt"),
        head,
    )
    .await;
}

/// Stops everything that sends commands (workers, then agents); returns the log's head.
pub async fn quiesce(cloud: &mut Cloud) -> u64 {
    cloud.kill_workers();
    for agent in &mut cloud.agents {
        agent.kill9();
    }
    head(cloud).await
}

/// Stops the live projections (at `head`), rebuilds every view from position 1 into
/// `rebuilt_dir`, and asserts the two stores hold the same rows, byte for byte.
pub async fn rebuild_equals_live(
    cloud: &Cloud,
    mut projections: crate::harness::NodeProcess,
    live_dir: &std::path::Path,
    rebuilt_dir: &std::path::Path,
    head: u64,
) {
    projections.terminate();
    let client = cloud.sys.nats.client("dashboard").await;
    let stored = streamfleet_projections::rebuild(client, rebuilt_dir, head)
        .await
        .expect("rebuild");
    assert_eq!(stored, head);
    let differences = streamfleet_projections::diff(live_dir, rebuilt_dir).expect("diff");
    assert!(differences.is_empty(), "{differences:#?}");
    let rows: usize = ["heartbeats", "consistency", "sessions", "hosts", "rollouts"]
        .iter()
        .filter_map(|v| streamfleet_projections::dump(&rebuilt_dir.join(format!("{v}.redb"))).ok())
        .map(|d| d.len())
        .sum();
    assert!(rows > 10, "the compared stores are not empty ({rows} rows)");
}

pub async fn head(cloud: &Cloud) -> u64 {
    let client = cloud.sys.nats.client("auditor").await;
    streamfleet_bus_client::log_head(&client)
        .await
        .expect("the node answers")
}

/// Waits (polling the status, bounded by PATIENCE) until every view stored `head`.
pub async fn caught_up(
    views: &mut ViewsClient<tonic::transport::Channel>,
    head: u64,
) -> pb::StatusResponse {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let status = views
            .get_status(pb::StatusRequest {})
            .await
            .expect("status")
            .into_inner();
        if status.views.iter().all(|v| v.position >= head) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "views never reached {head}: {status:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
