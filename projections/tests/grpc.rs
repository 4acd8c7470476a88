//! The gRPC service over an in-process feed: queries, watches, status and health; the stored
//! result of the live run equals a rebuild.

mod common;

use common::history;
use std::time::Duration;
use streamfleet_bus_client::NatsLogin;
use streamfleet_projections::pb::views_client::ViewsClient;
use streamfleet_projections::pb::{self, UpdateKind};
use streamfleet_projections::{
    EventFeed, FeedSender, ProjectionsConfig, diff, rebuild_from, start_with_source,
};
use tonic_health::pb::health_client::HealthClient;

const WAIT: Duration = Duration::from_secs(10);

/// Projections into `dir`, fed in-process (no NATS), gRPC on a free port.
fn config_in(dir: &tempfile::TempDir) -> ProjectionsConfig {
    ProjectionsConfig {
        nats: NatsLogin::new("nats://unused", "dashboard", "unused"),
        data_dir: dir.path().to_path_buf(),
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        heartbeat_interval: Duration::from_secs(5),
        tls: None,
        token: None,
    }
}

async fn feed(sender: &FeedSender, from: usize, to: usize) {
    for (i, (time, event)) in history().into_iter().enumerate() {
        if (from..=to).contains(&(i + 1)) {
            sender.send(i as u64 + 1, time, event).await.expect("fed");
        }
    }
}

async fn next<T>(stream: &mut tonic::Streaming<T>) -> T {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("an update in time")
        .expect("no stream error")
        .expect("the stream goes on")
}

#[tokio::test]
async fn queries_and_watches_answer_the_stored_rows() {
    let dir = tempfile::tempdir().expect("dir");
    let config = config_in(&dir);
    let (sender, events) = EventFeed::channel(64);
    let running = start_with_source(config, events).await.expect("started");
    assert_ne!(running.grpc_addr().port(), 0);
    feed(&sender, 1, 9).await;
    tokio::time::timeout(WAIT, running.wait_for_position(9))
        .await
        .expect("applied");

    let url = format!("http://{}", running.grpc_addr());
    let mut client = ViewsClient::connect(url.clone()).await.expect("connected");

    let sessions = client
        .get_sessions(pb::SessionsRequest {
            user_id: "u1".into(),
            ..Default::default()
        })
        .await
        .expect("sessions")
        .into_inner();
    assert_eq!(sessions.position, 9);
    assert_eq!(sessions.sessions.len(), 1);
    assert_eq!(sessions.sessions[0].status(), pb::SessionStatus::Active);
    assert_eq!(
        sessions.sessions[0].route_reason,
        "nearest by location: 412 km"
    );

    let hosts = client
        .get_hosts(pb::HostsRequest {
            region: "eu".into(),
            ..Default::default()
        })
        .await
        .expect("hosts")
        .into_inner();
    assert_eq!(
        hosts
            .hosts
            .iter()
            .map(|h| h.host_id.as_str())
            .collect::<Vec<_>>(),
        ["h1", "h2"]
    );
    assert_eq!(hosts.pools.len(), 1);
    assert_eq!(
        (hosts.pools[0].idle_hosts, hosts.pools[0].buffer_target),
        (1, 2)
    );

    let beats = client
        .get_heartbeats(pb::HeartbeatsRequest {
            host_id: "h1".into(),
            ..Default::default()
        })
        .await
        .expect("heartbeats")
        .into_inner();
    assert_eq!(beats.hosts.len(), 1);
    assert_eq!(beats.sessions.len(), 2, "s1 and the unknown s9");
    assert_eq!(beats.heartbeat_interval_ms, 5000);

    let problems = client
        .get_consistency(pb::ConsistencyRequest {
            problems_only: true,
            ..Default::default()
        })
        .await
        .expect("consistency")
        .into_inner();
    assert_eq!(problems.sessions.len(), 1);
    assert_eq!(
        problems.sessions[0].agreement(),
        pb::Agreement::UnknownSession
    );

    // Watches: the current rows first, then what changes.
    let mut rollouts = client
        .watch_rollouts(pb::RolloutsRequest {
            app_id: "game".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = next(&mut rollouts).await;
    assert_eq!((first.kind(), first.position), (UpdateKind::SnapshotEnd, 9));
    assert!(first.rollouts.is_empty(), "nothing released yet");
    let mut h1 = client
        .watch_hosts(pb::HostsRequest {
            host_id: "h1".into(),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let first = next(&mut h1).await;
    assert_eq!(first.hosts.len(), 1);
    assert_eq!(first.hosts[0].status(), pb::HostStatus::Active);

    feed(&sender, 10, 11).await;
    let change = next(&mut rollouts).await;
    assert_eq!(change.kind(), UpdateKind::Change);
    assert!(change.position >= 10);
    assert_eq!(change.rollouts[0].current_version, "2.0.0");
    let mut draining = next(&mut h1).await;
    while draining
        .hosts
        .first()
        .is_none_or(|h| h.status() != pb::HostStatus::Draining)
    {
        draining = next(&mut h1).await;
    }
    assert_eq!(draining.position, 11);
    assert_eq!(draining.hosts[0].drain_new_version, "2.0.0");

    feed(&sender, 12, history().len()).await;
    let n = history().len() as u64;
    tokio::time::timeout(WAIT, running.wait_for_position(n))
        .await
        .expect("applied");
    let status = client
        .get_status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.views.len(), 8);
    assert!(status.views.iter().all(|v| v.position == n));
    assert_eq!((status.head, status.lag, status.caught_up), (n, 0, true));

    let channel = tonic::transport::Endpoint::from_shared(url)
        .expect("url")
        .connect()
        .await
        .expect("connected");
    let mut health = HealthClient::new(channel);
    let serving = tokio::time::timeout(WAIT, async {
        loop {
            let answer = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "streamfleet.views.v1.Views".into(),
                })
                .await
                .expect("health")
                .into_inner();
            if answer.status() == tonic_health::pb::health_check_response::ServingStatus::Serving {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(serving.is_ok(), "serving once caught up");

    // Reflection lists the service and resolves its file (with its imports).
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", running.grpc_addr()))
            .expect("url")
            .connect()
            .await
            .expect("connected");
    let mut reflection = ServerReflectionClient::new(channel);
    let asks = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("streamfleet.views.v1.Views".into()),
    ]
    .map(|m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    });
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(asks))
        .await
        .expect("reflection")
        .into_inner();
    match next(&mut answers).await.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => assert!(
            list.service
                .iter()
                .any(|s| s.name == "streamfleet.views.v1.Views"),
            "{list:?}"
        ),
        other => panic!("unexpected reflection answer {other:?}"),
    }
    match next(&mut answers).await.message_response {
        Some(MessageResponse::FileDescriptorResponse(files)) => {
            assert!(!files.file_descriptor_proto.is_empty())
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }

    running.shutdown().await.expect("stopped");

    // The live run stored exactly what a rebuild stores.
    let rebuilt = tempfile::tempdir().expect("dir");
    let (sender, events) = EventFeed::channel(64);
    let feeding = tokio::spawn(async move { feed(&sender, 1, history().len()).await });
    rebuild_from(events, rebuilt.path(), n)
        .await
        .expect("rebuilt");
    feeding.await.expect("fed");
    assert_eq!(diff(dir.path(), rebuilt.path()).expect("diff"), vec![]);
}

async fn get_instances(
    client: &mut ViewsClient<tonic::transport::Channel>,
    req: pb::InstancesRequest,
) -> pb::InstancesResponse {
    client
        .get_instances(req)
        .await
        .expect("instances")
        .into_inner()
}

#[tokio::test]
async fn instances_are_filtered_and_watched() {
    let dir = tempfile::tempdir().expect("dir");
    let config = config_in(&dir);
    let (sender, events) = EventFeed::channel(64);
    let running = start_with_source(config, events).await.expect("started");
    // Through i2's launch: i1 runs on c1 (eu, qemu), i2 on c2 (us, crun).
    feed(&sender, 1, 27).await;
    tokio::time::timeout(WAIT, running.wait_for_position(27))
        .await
        .expect("applied");
    let mut client = ViewsClient::connect(format!("http://{}", running.grpc_addr()))
        .await
        .expect("connected");
    let ids = |r: &pb::InstancesResponse| {
        r.instances
            .iter()
            .map(|i| i.instance_id.clone())
            .collect::<Vec<_>>()
    };

    let all = get_instances(&mut client, pb::InstancesRequest::default()).await;
    assert_eq!(all.position, 27);
    assert_eq!(ids(&all), ["i1", "i2"]);
    assert_eq!(all.hosts.len(), 2);
    assert_eq!(all.capabilities.len(), 3);
    assert_eq!(
        all.hosts
            .iter()
            .map(|h| (h.host_id.as_str(), h.instances, h.used_cpus))
            .collect::<Vec<_>>(),
        [("c1", 1, 2), ("c2", 1, 1)]
    );

    let crun = get_instances(
        &mut client,
        pb::InstancesRequest {
            hypervisor: "crun".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&crun), ["i2"]);
    assert_eq!(crun.hosts.len(), 1);
    assert_eq!(crun.hosts[0].host_id, "c2");
    assert_eq!(crun.capabilities.len(), 1);
    assert_eq!(crun.capabilities[0].hypervisor, "crun");

    let eu = get_instances(
        &mut client,
        pb::InstancesRequest {
            region: "eu".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&eu), ["i1"]);
    assert_eq!(eu.hosts[0].host_id, "c1");
    let on_c2 = get_instances(
        &mut client,
        pb::InstancesRequest {
            host_id: "c2".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&on_c2), ["i2"]);
    let booting = get_instances(
        &mut client,
        pb::InstancesRequest {
            status: pb::InstanceStatus::Booting.into(),
            ..Default::default()
        },
    )
    .await;
    assert!(booting.instances.is_empty());
    assert_eq!(booting.hosts.len(), 2, "hosts are not filtered by status");
    let running_qemu = get_instances(
        &mut client,
        pb::InstancesRequest {
            status: pb::InstanceStatus::Running.into(),
            hypervisor: "qemu".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&running_qemu), ["i1"]);
    let one = get_instances(
        &mut client,
        pb::InstancesRequest {
            instance_id: "i2".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&one), ["i2"]);
    let nothing = get_instances(
        &mut client,
        pb::InstancesRequest {
            region: "ap".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(nothing.instances.is_empty() && nothing.hosts.is_empty());

    // A watch of running instances on c1: the snapshot, then i1's changes (also when it
    // leaves `running`), with c1's counters.
    let mut watch = client
        .watch_instances(pb::InstancesRequest {
            host_id: "c1".into(),
            status: pb::InstanceStatus::Running.into(),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let mut snapshot = Vec::new();
    loop {
        let u = next(&mut watch).await;
        assert_eq!(u.position, 27);
        let end = u.kind() == UpdateKind::SnapshotEnd;
        snapshot.push(u);
        if end {
            break;
        }
    }
    let rows: Vec<&str> = (snapshot.iter())
        .flat_map(|u| u.instances.iter().map(|i| i.instance_id.as_str()))
        .collect();
    assert_eq!(rows, ["i1"]);
    assert_eq!(snapshot.iter().map(|u| u.hosts.len()).sum::<usize>(), 1);
    assert_eq!(
        snapshot.iter().map(|u| u.capabilities.len()).sum::<usize>(),
        3
    );

    feed(&sender, 28, 28).await;
    let change = next(&mut watch).await;
    assert_eq!((change.kind(), change.position), (UpdateKind::Change, 28));
    assert_eq!(change.instances.len(), 1);
    assert_eq!(change.instances[0].status(), pb::InstanceStatus::Booting);
    assert!(change.capabilities.is_empty());

    // Running again, changed, stopped: the watcher of c1 sees the stop last.
    feed(&sender, 29, 34).await;
    let mut stopped = next(&mut watch).await;
    while stopped
        .instances
        .first()
        .is_none_or(|i| i.status() != pb::InstanceStatus::Stopped)
    {
        assert!(stopped.instances.iter().all(|i| i.host_id == "c1"));
        assert!(stopped.hosts.iter().all(|h| h.host_id == "c1"));
        stopped = next(&mut watch).await;
    }
    assert_eq!(stopped.position, 34);
    assert_eq!(stopped.hosts.len(), 1);
    assert_eq!(stopped.hosts[0].used_cpus, 0);

    let n = history().len();
    feed(&sender, 35, n).await;
    tokio::time::timeout(WAIT, running.wait_for_position(n as u64))
        .await
        .expect("applied");
    running.shutdown().await.expect("stopped");
}

async fn get_migrations(
    client: &mut ViewsClient<tonic::transport::Channel>,
    req: pb::MigrationsRequest,
) -> Vec<pb::MigrationRow> {
    client
        .get_migrations(req)
        .await
        .expect("migrations")
        .into_inner()
        .migrations
}

fn migration_ids(rows: &[pb::MigrationRow]) -> Vec<&str> {
    rows.iter().map(|m| m.migration_id.as_str()).collect()
}

#[tokio::test]
async fn migrations_are_filtered_and_watched() {
    let dir = tempfile::tempdir().expect("dir");
    let config = config_in(&dir);
    let (sender, events) = EventFeed::channel(64);
    let running = start_with_source(config, events).await.expect("started");
    // Through m1's first incremental round: synced, c1 → c3.
    feed(&sender, 1, 49).await;
    tokio::time::timeout(WAIT, running.wait_for_position(49))
        .await
        .expect("applied");
    let mut client = ViewsClient::connect(format!("http://{}", running.grpc_addr()))
        .await
        .expect("connected");

    let all = client
        .get_migrations(pb::MigrationsRequest::default())
        .await
        .expect("migrations")
        .into_inner();
    assert_eq!(all.position, 49);
    assert_eq!(migration_ids(&all.migrations), ["m1"]);
    let m1 = &all.migrations[0];
    assert_eq!((m1.step.as_str(), m1.rounds), ("synced", 2));
    for (req, expected) in [
        (
            pb::MigrationsRequest {
                host_id: "c3".into(),
                ..Default::default()
            },
            vec!["m1"],
        ),
        (
            pb::MigrationsRequest {
                host_id: "c2".into(),
                ..Default::default()
            },
            vec![],
        ),
        (
            pb::MigrationsRequest {
                step: "synced".into(),
                instance_id: "i3".into(),
                ..Default::default()
            },
            vec!["m1"],
        ),
        (
            pb::MigrationsRequest {
                step: "completed".into(),
                ..Default::default()
            },
            vec![],
        ),
        (
            pb::MigrationsRequest {
                migration_id: "m2".into(),
                ..Default::default()
            },
            vec![],
        ),
    ] {
        let rows = get_migrations(&mut client, req.clone()).await;
        assert_eq!(migration_ids(&rows), expected, "{req:?}");
    }

    // A watch of the active migrations of c1: the snapshot, then m1 step by step until it
    // ends (sent although it is no longer active), then the migrations back to c1.
    let mut watch = client
        .watch_migrations(pb::MigrationsRequest {
            host_id: "c1".into(),
            active_only: true,
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let snapshot = next(&mut watch).await;
    assert_eq!(
        (snapshot.kind(), snapshot.position),
        (UpdateKind::SnapshotEnd, 49)
    );
    assert_eq!(migration_ids(&snapshot.migrations), ["m1"]);

    feed(&sender, 50, 58).await;
    // Changes may come one position at a time or several at once (a stored batch), each with
    // the row as of its position; the last one is the completion's notice.
    let done = loop {
        let u = next(&mut watch).await;
        assert_eq!(u.kind(), UpdateKind::Change);
        assert_eq!(migration_ids(&u.migrations), ["m1"]);
        let m1 = &u.migrations[0];
        assert!(m1.step != "synced", "only what changed after the snapshot");
        if m1.last_notice_kind == "completed" {
            break u;
        }
    };
    assert_eq!(done.position, 58);
    let m1 = &done.migrations[0];
    assert_eq!((m1.step.as_str(), m1.over), ("completed", true));
    assert_eq!(m1.downtime_ms, 1500);

    // The migrations back to c1: m2 (rolled back) and m3 (cancelled).
    let n = history().len();
    feed(&sender, 59, n).await;
    let mut last = std::collections::BTreeMap::new();
    while last
        .get("m3")
        .is_none_or(|m: &pb::MigrationRow| m.last_notice_kind != "cancelled")
    {
        let u = next(&mut watch).await;
        for m in u.migrations {
            assert_eq!(m.target_host, "c1");
            last.insert(m.migration_id.clone(), m);
        }
    }
    assert_eq!(
        last.keys().map(String::as_str).collect::<Vec<_>>(),
        ["m2", "m3"]
    );
    assert_eq!(last["m2"].step, "rolled_back");
    tokio::time::timeout(WAIT, running.wait_for_position(n as u64))
        .await
        .expect("applied");

    let active = get_migrations(
        &mut client,
        pb::MigrationsRequest {
            active_only: true,
            ..Default::default()
        },
    )
    .await;
    assert!(active.is_empty(), "all over: {active:?}");
    let all = get_migrations(&mut client, pb::MigrationsRequest::default()).await;
    assert_eq!(migration_ids(&all), ["m1", "m2", "m3"]);
    assert_eq!(
        all.iter().map(|m| m.step.as_str()).collect::<Vec<_>>(),
        ["completed", "rolled_back", "cancelled"]
    );
    running.shutdown().await.expect("stopped");
}

fn node_ids(rows: &[pb::NodeRow]) -> Vec<&str> {
    rows.iter().map(|n| n.node_id.as_str()).collect()
}

#[tokio::test]
async fn nodes_are_filtered_and_watched() {
    let dir = tempfile::tempdir().expect("dir");
    let config = config_in(&dir);
    let (sender, events) = EventFeed::channel(64);
    let running = start_with_source(config, events).await.expect("started");
    let from = common::dfs_from();
    // Through the metadata node's first unresponsive spell: all three serve or are suspected.
    let first = from + 7;
    feed(&sender, 1, first).await;
    tokio::time::timeout(WAIT, running.wait_for_position(first as u64))
        .await
        .expect("applied");
    let mut client = ViewsClient::connect(format!("http://{}", running.grpc_addr()))
        .await
        .expect("connected");

    let all = client
        .get_nodes(pb::NodesRequest::default())
        .await
        .expect("nodes")
        .into_inner();
    assert_eq!(all.position, first as u64);
    assert_eq!(node_ids(&all.nodes), ["fs1-cs1", "fs1-cs2", "fs1-master"]);
    assert_eq!(all.file_systems.len(), 1);
    assert_eq!(all.file_systems[0].nodes_serving, 2);
    for (req, expected, file_systems) in [
        (
            pb::NodesRequest {
                role: "data".into(),
                ..Default::default()
            },
            vec!["fs1-cs1", "fs1-cs2"],
            1,
        ),
        (
            pb::NodesRequest {
                phase: "unresponsive".into(),
                ..Default::default()
            },
            vec!["fs1-master"],
            1,
        ),
        (
            pb::NodesRequest {
                host_id: "d2".into(),
                file_system: "fs1".into(),
                ..Default::default()
            },
            vec!["fs1-cs1"],
            1,
        ),
        (
            pb::NodesRequest {
                file_system: "fs9".into(),
                ..Default::default()
            },
            vec![],
            0,
        ),
        (
            pb::NodesRequest {
                node_id: "n-legacy".into(),
                ..Default::default()
            },
            vec![],
            0,
        ),
    ] {
        let r = client
            .get_nodes(req.clone())
            .await
            .expect("nodes")
            .into_inner();
        assert_eq!(node_ids(&r.nodes), expected, "{req:?}");
        assert_eq!(r.file_systems.len(), file_systems, "{req:?}");
    }

    // A watch of the unresponsive nodes on d1: the snapshot, then every changed node whatever
    // its phase and host now (so the metadata node comes on until it serves again on d3), the
    // file system's counts with them.
    let mut watch = client
        .watch_nodes(pb::NodesRequest {
            phase: "unresponsive".into(),
            host_id: "d1".into(),
            ..Default::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let snapshot = next(&mut watch).await;
    assert_eq!(snapshot.kind(), UpdateKind::Snapshot);
    assert_eq!(snapshot.file_systems.len(), 1);
    let snapshot = next(&mut watch).await;
    assert_eq!(
        (snapshot.kind(), snapshot.position),
        (UpdateKind::SnapshotEnd, first as u64)
    );
    assert_eq!(node_ids(&snapshot.nodes), ["fs1-master"]);

    // Changes come one position at a time or several at once (a stored batch), each with the
    // rows as of its position: through the volume's attachment on d2 first.
    let attached = from + 13;
    feed(&sender, first + 1, attached).await;
    let mut recovering_counted = false;
    loop {
        let u = next(&mut watch).await;
        assert_eq!(u.kind(), UpdateKind::Change);
        recovering_counted |= u.file_systems.iter().any(|f| f.nodes_recovering == 1);
        if let Some(m) = u.nodes.iter().rfind(|r| r.node_id == "fs1-master")
            && m.recovery_step == "volume_attached"
        {
            assert_eq!(
                (m.state.as_str(), m.host_id.as_str()),
                ("recovering (volume attached)", "d2")
            );
            break;
        }
    }
    assert!(recovering_counted, "the file system's counts came along");
    let n = history().len();
    feed(&sender, attached + 1, n).await;
    let recovered = loop {
        let u = next(&mut watch).await;
        if let Some(m) = u.nodes.iter().rfind(|r| r.node_id == "fs1-master")
            && m.last_recovery.is_some()
        {
            break m.clone();
        }
    };
    assert_eq!(
        (
            recovered.phase.as_str(),
            recovered.host_id.as_str(),
            recovered.generation
        ),
        ("serving", "d3", 2)
    );
    tokio::time::timeout(WAIT, running.wait_for_position(n as u64))
        .await
        .expect("applied");
    let stuck = client
        .get_nodes(pb::NodesRequest {
            phase: "stuck".into(),
            ..Default::default()
        })
        .await
        .expect("nodes")
        .into_inner();
    assert_eq!(node_ids(&stuck.nodes), ["fs1-cs2"]);
    running.shutdown().await.expect("stopped");
}

/// Sends bytes as they are (a request that is not the message it claims to be).
#[derive(Clone, Default)]
struct RawCodec;

struct RawEncoder;
struct IgnoreDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for IgnoreDecoder {
    type Item = ();
    type Error = tonic::Status;
    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<()>, tonic::Status> {
        use bytes::Buf as _;
        buf.advance(buf.remaining());
        Ok(Some(()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawEncoder;
    type Decoder = IgnoreDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> IgnoreDecoder {
        IgnoreDecoder
    }
}

/// A dashboard (or a fuzzer) sends bytes that are not protobuf. Before, the answer was
/// `INTERNAL` — the server's fault, to be retried; it is the caller's, `INVALID_ARGUMENT`, and
/// the service goes on answering.
#[tokio::test]
async fn malformed_protobuf_is_invalid_argument_and_the_service_keeps_answering() {
    let dir = tempfile::tempdir().expect("dir");
    let config = config_in(&dir);
    let (_sender, events) = EventFeed::channel(64);
    let running = start_with_source(config, events).await.expect("started");
    let url = format!("http://{}", running.grpc_addr());
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connected");
    let mut raw = tonic::client::Grpc::new(channel);
    raw.ready().await.expect("ready");
    // Field 1 as a length-delimited value that claims 100 bytes and carries 2.
    let garbage = vec![0x0a, 0x64, 0x01, 0x02];
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/streamfleet.views.v1.Views/GetSessions",
    );
    let status = raw
        .unary(tonic::Request::new(garbage), path, RawCodec)
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("malformed request"), "{status:?}");
    let mut client = ViewsClient::connect(url).await.expect("connected");
    client
        .get_status(pb::StatusRequest {})
        .await
        .expect("still answering");
}

/// The attack: the views served on an address others reach, read by anyone. Beyond loopback
/// the API refuses to start without TLS and the dashboards' token; with them a plaintext
/// client gets nothing, a TLS client without the token is `UNAUTHENTICATED`, and the token's
/// holder reads the views over TLS. (Health stays open for probes.)
#[tokio::test]
async fn beyond_loopback_the_views_need_tls_and_the_dashboards_token() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = config_in(&dir);
    config.grpc_addr = "0.0.0.0:0".parse().expect("addr");
    let (_sender, events) = EventFeed::channel(64);
    let refused = start_with_source(config.clone(), events).await;
    assert!(
        matches!(
            refused,
            Err(streamfleet_projections::ProjectionsError::Exposed { .. })
        ),
        "started in the open: {refused:?}"
    );

    let certs = tempfile::tempdir().expect("dir");
    let tls = streamfleet_tls::TlsFiles::ensure(certs.path(), &["127.0.0.1"]).expect("certs");
    config.tls = Some(streamfleet_projections::ApiTls {
        cert: tls.cert.clone(),
        key: tls.key.clone(),
    });
    config.token = Some("dash-token".into());
    let (_sender, events) = EventFeed::channel(64);
    let running = start_with_source(config, events).await.expect("started");
    let port = running.grpc_addr().port();

    let plain = ViewsClient::connect(format!("http://127.0.0.1:{port}")).await;
    let answered = match plain {
        Ok(mut c) => c.get_status(pb::StatusRequest::default()).await.is_ok(),
        Err(_) => false,
    };
    assert!(!answered, "a plaintext client read the views");

    let ca = std::fs::read(&tls.ca).expect("ca");
    let channel = tonic::transport::Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .expect("url")
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                .domain_name("127.0.0.1"),
        )
        .expect("tls")
        .connect()
        .await
        .expect("TLS connection");
    let mut anonymous = ViewsClient::new(channel.clone());
    let status = anonymous
        .get_status(pb::StatusRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let mut wrong = ViewsClient::with_interceptor(channel.clone(), |mut r: tonic::Request<()>| {
        r.metadata_mut()
            .insert("authorization", "Bearer guess".parse().expect("value"));
        Ok(r)
    });
    assert_eq!(
        wrong
            .get_status(pb::StatusRequest::default())
            .await
            .expect_err("a wrong token")
            .code(),
        tonic::Code::Unauthenticated
    );
    let mut dashboard =
        ViewsClient::with_interceptor(channel.clone(), |mut r: tonic::Request<()>| {
            r.metadata_mut()
                .insert("authorization", "Bearer dash-token".parse().expect("value"));
            Ok(r)
        });
    dashboard
        .get_status(pb::StatusRequest::default())
        .await
        .expect("the token's holder reads the views");
    let mut health = HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health is open");
    running.shutdown().await.expect("stopped");
}
