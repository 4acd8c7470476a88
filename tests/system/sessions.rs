//! Sessions end to end: token → redemption → placement → host agent, and what keeps the fleet
//! true afterwards (liveness, discrepancies, buffer, rollouts). Real processes throughout.

use crate::cloud::*;
use std::collections::BTreeSet;
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::payloads::*;
use streamfleet_bus_schemas::services::*;
use streamfleet_bus_schemas::{Command, CommandReply, subjects};
use streamfleet_domain::host::HostStatus;
use streamfleet_projections::pb;
use streamfleet_projections::pb::views_client::ViewsClient;

#[tokio::test]
async fn a_token_is_redeemed_once_on_a_buffer_host_of_the_nearest_region_and_the_client_reaches_it()
{
    let cloud = Cloud::start(&[
        AgentSpec::new("eu-west", "eu", 2, 2),
        AgentSpec::new("us-east", "us", 1, 2),
        AgentSpec::new("ap-south", "ap", 1, 2),
    ]);
    let grant = cloud.issue("ada", Some(PARIS), None, None).await;
    let RedemptionReply::Provisioned(s) = cloud.redeem(grant.token.expose(), PARIS).await else {
        panic!("provisioned")
    };
    assert_eq!(s.region, "eu-west", "Paris is nearest to eu-west");
    assert!(s.route_reason.contains("Paris"), "{}", s.route_reason);
    assert!(
        s.placement_reason.contains("buffer host"),
        "{}",
        s.placement_reason
    );
    assert!(s.host_id.starts_with("eu-"), "{}", s.host_id);

    // The client reaches the host at the address it was given; only its credentials open it.
    let path = format!("/sessions/{}", s.session_id);
    let (status, body) = cloud
        .http(
            &s.address,
            s.control_port,
            "GET",
            &path,
            &[("authorization", &bearer(s.credentials.expose()))],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (view["user_id"].as_str(), view["host_id"].as_str()),
        (Some("ada"), Some(s.host_id.as_str()))
    );
    assert_eq!(
        cloud
            .http(&s.address, s.control_port, "GET", &path, &[])
            .await
            .0,
        401
    );
    assert_eq!(
        cloud
            .http(
                &s.address,
                s.control_port,
                "GET",
                &path,
                &[("authorization", "Bearer 00")]
            )
            .await
            .0,
        403
    );

    // One-time: a second redemption names the session the token was used for.
    let again = cloud.redeem(grant.token.expose(), PARIS).await;
    assert_eq!(code(&again), "already_used");
    let RedemptionReply::Error(e) = &again else {
        unreachable!()
    };
    assert!(e.message.contains(s.session_id.as_str()), "{}", e.message);

    // Each bad redemption gets the reason a client can show.
    let bound = cloud.issue("bob", Some(PARIS), None, None).await;
    let stolen = cloud.redeem(bound.token.expose(), "198.51.100.8").await;
    assert_eq!(code(&stolen), "ip_mismatch");
    let RedemptionReply::Error(e) = &stolen else {
        unreachable!()
    };
    assert!(
        !e.message.contains(PARIS),
        "the refusal tells a thief which address to claim: {}",
        e.message
    );
    let mut forged = bound.token.expose().to_string();
    let last = forged.pop().expect("char");
    forged.push(if last == '0' { '1' } else { '0' });
    assert_eq!(code(&cloud.redeem(&forged, PARIS).await), "forged");
    assert_eq!(code(&cloud.redeem("not a token", PARIS).await), "malformed");
    let key = streamfleet_workers::TokenKey::from_hex(&cloud.token_key).expect("key");
    let (_, never_issued) = key.mint();
    assert_eq!(code(&cloud.redeem(&never_issued, PARIS).await), "unknown");
    let short = cloud.issue("cy", None, None, Some(1)).await;
    while chrono::Utc::now() <= short.expires_at + chrono::Duration::milliseconds(50) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await; // the clock must pass expiry
    }
    assert_eq!(
        code(&cloud.redeem(short.token.expose(), PARIS).await),
        "expired"
    );
    // The refused ones did not consume the token: it still redeems from its own IP.
    assert_eq!(
        code(&cloud.redeem(bound.token.expose(), PARIS).await),
        "provisioned"
    );

    // The log holds hashes, never a token or session credentials.
    let mut watch = cloud.watch().await;
    watch
        .until("both sessions provisioned", |events, _| {
            events
                .iter()
                .filter(|(_, e)| matches!(e, Event::SessionProvisioned(_)))
                .count()
                == 2
        })
        .await;
    let log_text = serde_json::to_string(
        &watch
            .events
            .iter()
            .map(|(_, e)| e.to_data())
            .collect::<Vec<_>>(),
    )
    .expect("json");
    assert!(!log_text.contains(grant.token.expose()) && !log_text.contains(s.credentials.expose()));
    assert!(log_text.contains(&streamfleet_workers::token::hash(s.credentials.expose())));
}

#[tokio::test]
async fn two_concurrent_redemptions_of_one_token_provision_exactly_one_session() {
    let cloud = Cloud::start(&[AgentSpec::new("eu-west", "eu", 2, 4)]);
    let grant = cloud.issue("ada", None, None, None).await;
    let redemptions: Vec<_> = (0..12)
        .map(|_| {
            let token = grant.token.clone();
            let client_ip = PARIS.to_string();
            let url = cloud.sys.nats.login("service");
            tokio::spawn(async move {
                let client = streamfleet_bus_client::connect(&url)
                    .await
                    .expect("connect");
                let req = Redemption {
                    token,
                    client_ip,
                    latencies_ms: Vec::new(),
                };
                let msg = client
                    .request(
                        subjects::REDEEM,
                        serde_json::to_vec(&req).expect("json").into(),
                    )
                    .await
                    .expect("reply");
                serde_json::from_slice::<RedemptionReply>(&msg.payload).expect("reply")
            })
        })
        .collect();
    let mut codes = Vec::new();
    for r in redemptions {
        codes.push(code(&r.await.expect("task")));
    }
    assert_eq!(
        codes.iter().filter(|c| *c == "provisioned").count(),
        1,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| *c == "already_used").count(),
        11,
        "{codes:?}"
    );
    let mut watch = cloud.watch().await;
    watch
        .until("the session provisioned", |events, _| {
            events
                .iter()
                .any(|(_, e)| matches!(e, Event::SessionProvisioned(_)))
        })
        .await;
    let redeemed = watch
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::TokenRedeemed(_)))
        .count();
    let assigned = watch
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::SessionAssigned(_)))
        .count();
    assert_eq!((redeemed, assigned), (1, 1));
}

#[tokio::test]
async fn groups_stay_together_and_a_full_region_spills_to_the_next_nearest() {
    let cloud = Cloud::start(&[
        AgentSpec::new("eu-west", "eu", 1, 2),
        AgentSpec::new("us-east", "us", 1, 4),
        AgentSpec::new("ap-south", "ap", 1, 4),
    ]);
    let first = cloud.session("ada", PARIS, Some("party-1")).await;
    assert_eq!(first.region, "eu-west");
    // A New York member of the same party joins it in eu-west, for a recorded reason.
    let second = cloud.session("bob", NEW_YORK, Some("party-1")).await;
    assert_eq!(
        (second.region.as_str(), second.host_id.as_str()),
        ("eu-west", first.host_id.as_str())
    );
    assert!(
        second.placement_reason.contains("group party-1"),
        "{}",
        second.placement_reason
    );
    assert!(
        second.route_reason.contains("New York"),
        "routed by location first: {}",
        second.route_reason
    );
    // eu-west is now full: a Paris client spills to the next nearest region, us-east.
    let third = cloud.session("cy", PARIS, None).await;
    assert_eq!(third.region, "us-east");
    assert!(
        third.placement_reason.contains("eu-west without capacity"),
        "{}",
        third.placement_reason
    );
    // Without a group, New York stays in us-east.
    let fourth = cloud.session("di", NEW_YORK, None).await;
    assert_eq!(fourth.region, "us-east");
    // Measured latency beats location: a Paris client that measured ap-south fastest goes there.
    let grant = cloud.issue("ed", Some(PARIS), None, None).await;
    let RedemptionReply::Provisioned(fifth) = cloud
        .redeem_measured(
            grant.token.expose(),
            PARIS,
            &[("ap-south", 9), ("eu-west", 40)],
        )
        .await
    else {
        panic!("provisioned")
    };
    assert_eq!(fifth.region, "ap-south");
    assert!(
        fifth.route_reason.contains("measured latency 9 ms"),
        "{}",
        fifth.route_reason
    );
}

#[tokio::test]
async fn a_killed_host_agent_loses_its_sessions_and_the_buffer_keeper_replaces_its_hosts() {
    let mut cloud = Cloud::start(&[AgentSpec::new("eu-west", "doomed", 2, 2)]);
    cloud.add_agent(&AgentSpec::new("eu-west", "spare", 0, 2).launcher());
    let target = Command::SetBufferTarget(SetBufferTarget {
        region: "eu-west".into(),
        app_id: "chess".into(),
        idle_hosts: 2,
    });
    assert!(matches!(
        cloud.command(target).await,
        CommandReply::Accepted { .. }
    ));
    let s = cloud.session("ada", PARIS, None).await;
    assert!(s.host_id.starts_with("doomed-"), "{}", s.host_id);
    let mut watch = cloud.watch().await;
    // One buffer host is now busy: the keeper asks for another, which the spare agent launches.
    watch
        .until("a refill registered", |_, fleet| {
            fleet
                .hosts
                .iter()
                .any(|(id, h)| !id.starts_with("doomed-") && h.status == HostStatus::Active)
        })
        .await;

    cloud.agents[0].kill9();
    watch.until("the session lost", |events, _| events.iter().any(|(_, e)| matches!(e,
        Event::SessionEnded(x) if x.session_id == s.session_id && x.reason == SessionEndReason::Lost))).await;
    watch
        .until(
            "both doomed hosts removed as lost, and replaced",
            |_, fleet| {
                let lost = fleet
                    .hosts
                    .iter()
                    .filter(|(id, h)| {
                        id.starts_with("doomed-")
                            && h.status == HostStatus::Removed(HostRemovalReason::Lost)
                    })
                    .count();
                let idle = fleet
                    .hosts
                    .values()
                    .filter(|h| h.status == HostStatus::Active && h.sessions.is_empty())
                    .count();
                lost == 2 && idle == 2
            },
        )
        .await;
    let requests_after_loss = watch
        .events
        .iter()
        .skip_while(
            |(_, e)| !matches!(e, Event::HostRemoved(r) if r.reason == HostRemovalReason::Lost),
        )
        .filter(|(_, e)| matches!(e, Event::HostRequested(r) if r.reason.contains("buffer")))
        .count();
    assert!(
        requests_after_loss >= 1,
        "the keeper requested replacements after the loss"
    );
    // Each requested host was launched through the instance commands: a `sim` instance of the
    // host's id, chosen, placed on the spare agent's compute host and running.
    let requested: Vec<String> = watch
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::HostRequested(r) => Some(r.host_id.to_string()),
            _ => None,
        })
        .collect();
    assert!(!requested.is_empty());
    watch
        .until(
            "each requested host an instance the spare agent runs",
            |events, _| {
                requested.iter().all(|host| {
                    events.iter().any(|(_, e)| {
                        matches!(e, Event::InstanceLaunched(l)
                        if l.instance_id.as_str() == host
                            && l.host_id.as_str() == "spare-launcher"
                            && l.hypervisor == streamfleet_bus_schemas::compute::Hypervisor::Sim)
                    })
                })
            },
        )
        .await;
}

#[tokio::test]
async fn a_host_reporting_a_stray_session_and_omitting_a_real_one_opens_and_resolves_both() {
    let cloud = Cloud::start(&[AgentSpec::new("eu-west", "eu", 1, 4)]);
    let kept = cloud.session("ada", PARIS, None).await;
    let dropped = cloud.session("bob", PARIS, None).await;
    let worker = cloud.sys.nats.client("worker").await;
    let fault = InjectFault {
        stray_session: Some("ghost-1".into()),
        drop_session: Some(dropped.session_id.clone()),
    };
    let reply = worker
        .request(
            subjects::host(&kept.host_id, "fault"),
            serde_json::to_vec(&fault).expect("json").into(),
        )
        .await
        .expect("the host answers");
    assert!(matches!(
        serde_json::from_slice(&reply.payload).expect("reply"),
        AgentReply::Ok { .. }
    ));

    let mut watch = cloud.watch().await;
    watch
        .until("two discrepancies resolved", |events, _| {
            events
                .iter()
                .filter(|(_, e)| matches!(e, Event::DiscrepancyResolved(_)))
                .count()
                >= 2
        })
        .await;
    let opened: Vec<&DiscrepancyOpened> = watch
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::DiscrepancyOpened(d) => Some(d),
            _ => None,
        })
        .collect();
    let kinds: BTreeSet<(DiscrepancyKind, &str)> = opened
        .iter()
        .map(|d| (d.kind, d.session_id.as_str()))
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            (DiscrepancyKind::UnknownSession, "ghost-1"),
            (
                DiscrepancyKind::MissingFromReport,
                dropped.session_id.as_str()
            )
        ])
    );
    let resolved: Vec<&DiscrepancyResolved> = watch
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::DiscrepancyResolved(d) => Some(d),
            _ => None,
        })
        .collect();
    let ghost = resolved
        .iter()
        .find(|d| d.session_id == "ghost-1")
        .expect("ghost resolved");
    assert!(
        ghost.host_runs_session && ghost.resolution.contains("stopped it on the host"),
        "{ghost:?}"
    );
    let missing = resolved
        .iter()
        .find(|d| d.session_id == dropped.session_id)
        .expect("missing resolved");
    assert!(
        !missing.host_runs_session && missing.resolution.contains("reconciled"),
        "{missing:?}"
    );
    assert!(watch.events.iter().any(|(_, e)| matches!(e, Event::SessionEnded(x) if x.session_id == dropped.session_id && x.reason == SessionEndReason::Reconciled)));
    // The host no longer runs the stray session; the kept one is untouched.
    let state = worker
        .request(subjects::host(&kept.host_id, "state"), "".into())
        .await
        .expect("state");
    let AgentReply::Ok { state } = serde_json::from_slice(&state.payload).expect("reply") else {
        panic!("ok")
    };
    assert_eq!(state.sessions, vec![kept.session_id.clone()]);
}

#[tokio::test]
async fn a_rollout_drains_old_hosts_and_an_urgent_one_terminates_them_after_notice() {
    let mut cloud = Cloud::start(&[AgentSpec::new("eu-west", "old", 2, 2)]);
    cloud.add_agent(&AgentSpec::new("eu-west", "spare", 0, 2).launcher());
    let dir = tempfile::tempdir().expect("tempdir");
    let (projections, grpc) = cloud.projections(&dir.path().join("live"));
    let release = |version: &str, urgent: bool| {
        Command::ReleaseVersion(ReleaseVersion {
            app_id: "chess".into(),
            version: version.into(),
            urgent,
            notice_seconds: if urgent { 3 } else { 0 },
        })
    };
    // The harness registered chess at 1.0.0, the version the hosts run.
    let target = Command::SetBufferTarget(SetBufferTarget {
        region: "eu-west".into(),
        app_id: "chess".into(),
        idle_hosts: 1,
    });
    assert!(matches!(
        cloud.command(target).await,
        CommandReply::Accepted { .. }
    ));
    let busy = cloud.session("ada", PARIS, None).await;
    assert!(busy.host_id.starts_with("old-"));

    // 2.0.0: the idle old host goes, the busy one drains, a 2.0.0 host is launched for the buffer.
    assert!(matches!(
        cloud.command(release("2.0.0", false)).await,
        CommandReply::Accepted { .. }
    ));
    let older = cloud.command(release("1.5.0", false)).await;
    assert!(
        matches!(&older, CommandReply::Rejected { message, .. } if message.contains("not newer")),
        "{older:?}"
    );
    let mut watch = cloud.watch().await;
    watch
        .until(
            "a 2.0.0 host up and the busy old host draining",
            |_, fleet| {
                let new_up = fleet
                    .hosts
                    .values()
                    .any(|h| h.version == "2.0.0" && h.status == HostStatus::Active);
                let draining = matches!(
                    fleet.hosts.get(&busy.host_id).map(|h| &h.status),
                    Some(HostStatus::Draining { .. })
                );
                new_up && draining
            },
        )
        .await;
    let next = cloud.session("bob", PARIS, None).await;
    assert!(
        !next.host_id.starts_with("old-"),
        "new sessions go to new hosts: {}",
        next.host_id
    );
    let (status, _) = cloud
        .http(
            &busy.address,
            busy.control_port,
            "DELETE",
            &format!("/sessions/{}", busy.session_id),
            &[("authorization", &bearer(busy.credentials.expose()))],
        )
        .await;
    assert_eq!(status, 200);
    watch
        .until("the drained host removed once empty", |_, fleet| {
            fleet.hosts.get(&busy.host_id).map(|h| &h.status)
                == Some(&HostStatus::Removed(HostRemovalReason::Outdated))
        })
        .await;

    // 3.0.0 is urgent: the 2.0.0 host with a session gets a notice, saves state, is terminated.
    assert!(matches!(
        cloud.command(release("3.0.0", true)).await,
        CommandReply::Accepted { .. }
    ));
    watch
        .until("every live host on 3.0.0", |_, fleet| {
            let live: Vec<_> = fleet.hosts.values().filter(|h| h.is_live()).collect();
            !live.is_empty() && live.iter().all(|h| h.version == "3.0.0")
        })
        .await;
    let ended = watch
        .events
        .iter()
        .find_map(|(_, e)| match e {
            Event::SessionEnded(x) if x.session_id == next.session_id => Some(x.clone()),
            _ => None,
        })
        .expect("the session on the urgent host ended");
    assert_eq!(ended.reason, SessionEndReason::Terminated);
    assert!(
        ended
            .saved_state
            .as_deref()
            .is_some_and(|s| s.contains("3.0.0")),
        "{ended:?}"
    );
    assert!(watch.events.iter().any(|(_, e)| matches!(e, Event::HostDraining(d) if d.host_id == next.host_id && d.deadline.is_some())));
    // The user's next session gets the state saved on notice.
    let back = cloud.session("bob", PARIS, None).await;
    assert_eq!(
        back.restored_from.as_deref(),
        Some(next.session_id.as_str())
    );
    let (status, body) = cloud
        .http(
            &back.address,
            back.control_port,
            "GET",
            &format!("/sessions/{}", back.session_id),
            &[("authorization", &bearer(back.credentials.expose()))],
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.contains("saved before 3.0.0"), "{body}");

    // The rollouts view says it is done, and a rebuild of every view equals the live one.
    let head = crate::views::quiesce(&mut cloud).await;
    let mut views = ViewsClient::connect(grpc).await.expect("gRPC");
    crate::views::caught_up(&mut views, head).await;
    let rollouts = views
        .get_rollouts(pb::RolloutsRequest::default())
        .await
        .expect("rollouts")
        .into_inner();
    let chess = rollouts
        .rollouts
        .iter()
        .find(|r| r.app_id == "chess")
        .expect("chess rollout");
    assert_eq!(
        (
            chess.current_version.as_str(),
            chess.previous_version.as_str(),
            chess.urgent
        ),
        ("3.0.0", "2.0.0", true)
    );
    assert!(chess.completed && chess.hosts_old == 0, "{chess:?}");
    drop(views);
    crate::views::rebuild_equals_live(
        &cloud,
        projections,
        &dir.path().join("live"),
        &dir.path().join("rebuilt"),
        head,
    )
    .await;
}
