//! The `nodes` view and `streamfleet dfs`, against a real nats-server, node and projections
//! process: three crun compute hosts registered (as their agents would, without running
//! anything: the view and the command line are what is tested here), a file system created
//! with `dfs create`, its hosts' reports sent as the launcher, a checkpoint asked for with
//! `dfs checkpoint` and refused when out of order or for a data node, a data node failed by
//! the watcher's verdict and recovered on another host, `dfs status` (table, JSON, watch), and
//! a rebuild of the views from position 1 equal to the live ones.

use crate::cloud::PATIENCE;
use crate::harness::{Nats, NodeProcess, System};
use std::collections::BTreeMap;
use std::time::Duration;
use streamfleet_bus_schemas::Command;
use streamfleet_bus_schemas::compute::Hypervisor;
use streamfleet_bus_schemas::dfs::*;
use streamfleet_bus_schemas::instance::RegisterComputeHost;
use streamfleet_projections::pb;
use streamfleet_projections::pb::views_client::ViewsClient;
use tokio::io::AsyncBufReadExt;

/// `streamfleet projections serve` into `dir` on a free port; its gRPC URL.
fn projections(nats: &Nats, dir: &std::path::Path) -> (NodeProcess, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_streamfleet"));
    child
        .args(["projections", "serve", "--grpc", "127.0.0.1:0"])
        .args(["--nats-url", &nats.url])
        .arg("--data-dir")
        .arg(dir)
        .env("SF_DASHBOARD_PASSWORD", nats.password("dashboard"))
        .envs(nats.ca_env());
    let (process, line) = NodeProcess::spawn_command(child);
    let addr = line
        .strip_prefix("ready grpc=")
        .expect("ready grpc=ADDR")
        .to_string();
    (process, format!("http://{addr}"))
}

/// `streamfleet dfs <args>` as the service user, reading the views at `views_url`.
fn dfs(nats: &Nats, views_url: &str, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_streamfleet"));
    c.arg("dfs")
        .args(args)
        .env("SF_NATS_URL", &nats.url)
        .env("SF_SERVICE_PASSWORD", nats.password("service"))
        .env("SF_VIEWS_URL", views_url)
        .envs(nats.ca_env())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    c
}

/// Runs `streamfleet dfs <args>`: its success, stdout and stderr.
async fn run_dfs(nats: &Nats, views_url: &str, args: &[&str]) -> (bool, String, String) {
    let out = dfs(nats, views_url, args)
        .output()
        .await
        .expect("streamfleet dfs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `dfs status --json`, polled until `done` holds of its nodes by id (bounded by PATIENCE).
async fn status_until(
    nats: &Nats,
    views_url: &str,
    what: &str,
    done: impl Fn(&BTreeMap<String, serde_json::Value>) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (ok, out, err) = run_dfs(nats, views_url, &["status", "--json"]).await;
        assert!(ok, "dfs status: {err}");
        let status: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
        let nodes: BTreeMap<String, serde_json::Value> = (status["nodes"].as_array())
            .expect("nodes")
            .iter()
            .map(|n| (n["nodeId"].as_str().expect("id").to_string(), n.clone()))
            .collect();
        if done(&nodes) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the views never showed {what}: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The watch's next line, as JSON (bounded by PATIENCE).
async fn next_json(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> serde_json::Value {
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("a watch line in time")
        .expect("read")
        .expect("the watch goes on");
    serde_json::from_str(&line).expect("watch JSON")
}

fn report(node: &str, host: &str, generation: u32, report: NodeReport) -> Command {
    Command::ReportNode(ReportNode {
        node_id: node.into(),
        host_id: host.into(),
        generation,
        report,
    })
}

#[tokio::test]
async fn the_nodes_view_follows_a_file_system_through_a_checkpoint_and_a_recovery() {
    let sys = System::start();
    let nats = &sys.nats;
    let dir = tempfile::tempdir().expect("tempdir");
    let live_dir = dir.path().join("live");
    let (projections, url) = projections(nats, &live_dir);
    let launcher = nats.commands("launcher").await;
    let send = |command: Command| {
        let launcher = launcher.clone();
        async move {
            launcher
                .submit(uuid::Uuid::now_v7(), &command)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", command.type_name()))
        }
    };
    for host in ["c1", "c2", "c3", "c4"] {
        send(Command::RegisterComputeHost(RegisterComputeHost {
            host_id: host.into(),
            region: "eu".into(),
            hypervisor: Hypervisor::Crun,
            cpus: 4,
            memory_mib: 4096,
            detail: "registered by the test".into(),
        }))
        .await;
    }

    // Created with the command line: where each node goes, and why.
    let (ok, out, err) = run_dfs(
        nats,
        &url,
        &[
            "create",
            "fs1",
            "--data-nodes",
            "2",
            "--goal",
            "2",
            "--region",
            "eu",
            "--checkpoint-every",
            "600",
        ],
    )
    .await;
    assert!(ok, "dfs create: {err}");
    assert!(
        out.starts_with("FileSystemCreated fs1 in eu: goal 2"),
        "{out}"
    );
    assert!(
        out.contains("fs1-master") && out.contains("fs1-cs2"),
        "{out}"
    );
    let (ok, _, err) = run_dfs(
        nats,
        &url,
        &["create", "fs1", "--data-nodes", "1", "--goal", "1"],
    )
    .await;
    assert!(!ok && err.contains("file_system_exists"), "{err}");

    let status = status_until(nats, &url, "three launching nodes", |n| {
        n.len() == 3 && n.values().all(|r| r["phase"] == "launching")
    })
    .await;
    let hosts: BTreeMap<String, String> = (status["nodes"].as_array().expect("nodes").iter())
        .map(|n| {
            (
                n["nodeId"].as_str().expect("id").to_string(),
                n["hostId"].as_str().expect("host").to_string(),
            )
        })
        .collect();
    let fs = &status["fileSystems"][0];
    assert_eq!(
        (&fs["fileSystem"], &fs["goal"], &fs["dataNodes"]),
        (
            &serde_json::json!("fs1"),
            &serde_json::json!(2),
            &serde_json::json!(2)
        )
    );
    assert_eq!(fs["nodes"][0], "fs1-master");

    // Each host says its node serves.
    for (pid, (node, host)) in hosts.iter().enumerate() {
        send(report(
            node,
            host,
            0,
            NodeReport::Serving {
                pid: 100 + pid as u32,
            },
        ))
        .await;
    }
    status_until(nats, &url, "three serving nodes", |n| {
        n.values().all(|r| r["phase"] == "serving")
    })
    .await;

    // A checkpoint: asked for, refused while one is under way and for a data node.
    let master_host = hosts["fs1-master"].clone();
    let (ok, out, err) = run_dfs(nats, &url, &["checkpoint", "fs1-master"]).await;
    assert!(ok, "dfs checkpoint: {err}");
    assert_eq!(
        out.trim(),
        format!("CheckpointRequested fs1-master on {master_host} (placement 0), cause command")
    );
    let (ok, _, err) = run_dfs(nats, &url, &["checkpoint", "fs1-master"]).await;
    assert!(!ok && err.contains("node_step_out_of_order"), "{err}");
    let (ok, _, err) = run_dfs(nats, &url, &["checkpoint", "fs1-cs1"]).await;
    assert!(!ok && err.contains("not_metadata_node"), "{err}");
    let (ok, _, err) = run_dfs(nats, &url, &["checkpoint", "nobody"]).await;
    assert!(!ok && err.contains("unknown_node"), "{err}");
    send(report(
        "fs1-master",
        &master_host,
        0,
        NodeReport::CheckpointTaken {
            cause: CheckpointCause::Command,
            image_bytes: 65_536,
            version: 42,
            replayed: 7,
        },
    ))
    .await;
    send(report(
        "fs1-master",
        &master_host,
        0,
        NodeReport::Serving { pid: 555 },
    ))
    .await;

    // A watch from here on.
    let mut watch = dfs(nats, &url, &["status", "fs1", "--watch", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dfs status --watch");
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().expect("stdout")).lines();
    loop {
        let u = next_json(&mut lines).await;
        if u["kind"] == "snapshot_end" {
            break;
        }
    }

    // The watcher judges fs1-cs1 failed: a replacement is chosen on another host, which
    // recovers it step by step.
    let cs1_host = hosts["fs1-cs1"].clone();
    let worker = nats.commands("worker").await;
    let failed = worker
        .submit(
            uuid::Uuid::now_v7(),
            &Command::RecordNodeLiveness(RecordNodeLiveness {
                node_id: "fs1-cs1".into(),
                generation: 0,
                verdict: Liveness::Failed,
                last_answer_at: chrono::Utc::now() - chrono::Duration::seconds(3),
                evidence: "probes unanswered".into(),
                timeout_ms: 2000,
            }),
        )
        .await
        .expect("failed");
    let replacement = failed
        .iter()
        .find_map(|e| match e.event() {
            Some(streamfleet_bus_schemas::Event::ReplacementChosen(r)) => Some(r.host_id),
            _ => None,
        })
        .expect("a replacement host");
    assert_ne!(replacement.as_str(), cs1_host);
    let new = replacement.as_str();
    for step in [
        NodeReport::Fenced {
            detail: "container ended".into(),
        },
        NodeReport::VolumeAttached {
            device: "/dev/nbd3".into(),
        },
        NodeReport::ReplacementLaunched { pid: 777 },
        NodeReport::AddressReassigned,
        NodeReport::Recovered { pid: 777 },
    ] {
        send(report("fs1-cs1", new, 1, step)).await;
    }
    send(report(
        "fs1-master",
        &master_host,
        0,
        NodeReport::BlockReport {
            chunk_servers: vec![
                ChunkServerSeen {
                    address: "10.0.0.1".into(),
                    chunks: 5,
                    connected: true,
                },
                ChunkServerSeen {
                    address: "10.0.0.2".into(),
                    chunks: 4,
                    connected: true,
                },
            ],
        },
    ))
    .await;

    // The watch sends fs1-cs1 as it changes (one position at a time or several at once: a
    // stored batch), failed from the first change on, until it serves again recovered.
    loop {
        let u = next_json(&mut lines).await;
        assert_eq!(u["kind"], "change", "{u}");
        let cs1 = (u["nodes"].as_array().expect("nodes").iter())
            .rfind(|n| n["nodeId"] == "fs1-cs1")
            .cloned();
        if let Some(n) = cs1 {
            assert_eq!(n["failures"], 1, "{n:#}");
            if n["lastRecovery"].is_object() {
                assert_eq!(n["state"], "serving");
                break;
            }
        }
    }
    watch.kill().await.expect("watch stopped");

    let status = status_until(nats, &url, "fs1-cs1 recovered and a block report", |n| {
        n["fs1-cs1"]["lastRecovery"].is_object() && n["fs1-master"]["lastBlockReport"].is_object()
    })
    .await;
    let nodes: BTreeMap<&str, &serde_json::Value> = (status["nodes"].as_array())
        .expect("nodes")
        .iter()
        .map(|n| (n["nodeId"].as_str().expect("id"), n))
        .collect();
    let cs1 = nodes["fs1-cs1"];
    assert_eq!(
        (
            &cs1["phase"],
            &cs1["hostId"],
            &cs1["generation"],
            &cs1["failures"]
        ),
        (
            &serde_json::json!("serving"),
            &serde_json::json!(new),
            &serde_json::json!(1),
            &serde_json::json!(1)
        ),
        "{cs1:#}"
    );
    assert_eq!(cs1["device"], "/dev/nbd3");
    assert_eq!(cs1["lastRecovery"]["hostId"], new);
    assert!(
        cs1["failureReason"]
            .as_str()
            .is_some_and(|r| r.contains("probes unanswered"))
    );
    let master = nodes["fs1-master"];
    assert_eq!(master["lastCheckpoint"]["version"], 42);
    assert_eq!(master["lastCheckpoint"]["cause"], "command");
    assert_eq!(master["lastBlockReport"]["chunks"], 9);
    assert_eq!(master["pid"], 555);
    assert_eq!(status["fileSystems"][0]["nodesServing"], 3);

    // The table for people.
    let (ok, out, err) = run_dfs(nats, &url, &["status", "fs1"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("fs1  region eu  goal 2  3 nodes: 3 serving"),
        "{out}"
    );
    assert!(
        out.contains("! fs1-cs1: failed") && out.contains(&format!("on {cs1_host}: no answer")),
        "{out}"
    );
    let (ok, _, err) = run_dfs(nats, &url, &["status", "fs9"]).await;
    assert!(!ok && err.contains("no file system fs9"), "{err}");

    // Stopped at the head, the live views equal a rebuild from position 1.
    let auditor = nats.client("auditor").await;
    let head = streamfleet_bus_client::log_head(&auditor)
        .await
        .expect("head");
    let mut views = ViewsClient::connect(url.clone()).await.expect("gRPC");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let s = views
            .get_status(pb::StatusRequest {})
            .await
            .expect("status")
            .into_inner();
        if s.views.iter().all(|v| v.position >= head) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(views);
    let mut projections = projections;
    projections.terminate();
    let rebuilt = dir.path().join("rebuilt");
    let stored = streamfleet_projections::rebuild(nats.client("dashboard").await, &rebuilt, head)
        .await
        .expect("rebuild");
    assert_eq!(stored, head);
    let differences = streamfleet_projections::diff(&live_dir, &rebuilt).expect("diff");
    assert!(differences.is_empty(), "{differences:#?}");
    let rows = streamfleet_projections::dump(&rebuilt.join("nodes.redb")).expect("dump");
    assert_eq!(rows.iter().filter(|r| r.table == "nodes").count(), 3);
}
