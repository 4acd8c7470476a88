//! An auditor replays a real session flow with `streamfleet replay`: reads it live over NATS,
//! computes a session's state at several moments, diffs the live views against a rebuild, and
//! verifies a copy of the node's log, catching every one of 50 single-byte flips at the right
//! position.

use crate::cloud::*;
use crate::views::{caught_up, quiesce};
use rand::Rng;
use serde_json::Value;
use std::path::Path;
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::services::RedemptionReply;
use streamfleet_projections::pb;
use streamfleet_projections::pb::views_client::ViewsClient;
use tokio::io::AsyncBufReadExt;

/// Runs `streamfleet replay <args>` as the auditor; returns (exit code, stdout).
async fn replay(cloud: &Cloud, args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_streamfleet"))
        .arg("replay")
        .args(args)
        .env("SF_NATS_URL", &cloud.sys.nats.url)
        .env("SF_AUDITOR_PASSWORD", cloud.sys.nats.password("auditor"))
        .envs(cloud.sys.nats.ca_env())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run streamfleet replay");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().unwrap_or(-1);
    if code != 0 && code != 1 {
        panic!("replay {args:?} failed ({code}):\n{stdout}\n{stderr}");
    }
    (code, stdout)
}

async fn replay_json(cloud: &Cloud, args: &[&str]) -> (i32, Value) {
    let (code, out) = replay(cloud, args).await;
    let json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"));
    (code, json)
}

fn position_of(events: &[(u64, Event)], what: impl Fn(&Event) -> bool) -> u64 {
    events
        .iter()
        .find(|(_, e)| what(e))
        .map(|(p, _)| *p)
        .expect("the event was followed")
}

#[tokio::test]
async fn an_auditor_reads_replays_diffs_and_verifies_a_session_flow() {
    let mut cloud = Cloud::start(&[AgentSpec::new("eu-west", "eu", 1, 4)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let live_dir = dir.path().join("live");
    let (mut projections, url) = cloud.projections(&live_dir);
    let mut watch = cloud.watch().await;
    // An auditor follows the log live from the start.
    let mut follow = tokio::process::Command::new(env!("CARGO_BIN_EXE_streamfleet"))
        .args([
            "replay",
            "read",
            "--follow",
            "--format",
            "json",
            "--type",
            "SessionEnded",
        ])
        .env("SF_NATS_URL", &cloud.sys.nats.url)
        .env("SF_AUDITOR_PASSWORD", cloud.sys.nats.password("auditor"))
        .envs(cloud.sys.nats.ca_env())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("replay read --follow");
    let mut followed = tokio::io::BufReader::new(follow.stdout.take().expect("stdout")).lines();

    // The script: a token, its session, a heartbeat that reports it, the user ending it.
    let grant = cloud.issue("ada", Some(PARIS), None, None).await;
    let session = match cloud.redeem(grant.token.expose(), PARIS).await {
        RedemptionReply::Provisioned(s) => s,
        RedemptionReply::Error(e) => panic!("refused: {e:?}"),
    };
    let sid = session.session_id.clone();
    watch
        .until("a heartbeat reporting the session", |events, _| {
            events.iter().any(|(_, e)| matches!(e, Event::HeartbeatReceived(h) if h.sessions.iter().any(|b| b.session_id == sid)))
        })
        .await;
    let (status, _) = cloud
        .http(
            &session.address,
            session.control_port,
            "DELETE",
            &format!("/sessions/{sid}"),
            &[("authorization", &bearer(session.credentials.expose()))],
        )
        .await;
    assert_eq!(status, 200);
    watch
        .until("the session ended", |events, _| {
            events
                .iter()
                .any(|(_, e)| matches!(e, Event::SessionEnded(x) if x.session_id == sid))
        })
        .await;
    let line = tokio::time::timeout(PATIENCE, followed.next_line())
        .await
        .expect("the follower printed the end in time")
        .expect("read")
        .expect("a line");
    let ended: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(ended["type"], "SessionEnded");
    assert_eq!(ended["data"]["session_id"], sid.as_str());
    follow.kill().await.expect("stop following");
    let events = watch.events.clone();
    let issued_at = position_of(
        &events,
        |e| matches!(e, Event::TokenIssued(t) if t.token_id == grant.token_id),
    );
    let provisioned_at = position_of(
        &events,
        |e| matches!(e, Event::SessionProvisioned(s) if s.session_id == sid),
    );
    let beat_at = position_of(
        &events,
        |e| matches!(e, Event::HeartbeatReceived(h) if h.sessions.iter().any(|b| b.session_id == sid)),
    );
    let ended_at = position_of(
        &events,
        |e| matches!(e, Event::SessionEnded(s) if s.session_id == sid),
    );
    assert!(issued_at < provisioned_at && provisioned_at < beat_at && beat_at < ended_at);

    let head = quiesce(&mut cloud).await;
    let mut views = ViewsClient::connect(url).await.expect("gRPC");
    caught_up(&mut views, head).await;
    let stream = format!("session-{sid}");

    // Read live over NATS: the session's stream, and a filter by type and category.
    let (code, lines) = replay(&cloud, &["read", "--stream", &stream, "--format", "json"]).await;
    assert_eq!(code, 0);
    let read: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("a CloudEvents line"))
        .collect();
    let summary: Vec<(u64, &str)> = read
        .iter()
        .map(|e| {
            (
                e["position"].as_u64().expect("position"),
                e["type"].as_str().expect("type"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (provisioned_at, "SessionProvisioned"),
            (ended_at, "SessionEnded")
        ]
    );
    assert!(
        read.iter()
            .all(|e| e["specversion"] == "1.0" && e["subject"] == stream.as_str())
    );
    assert_eq!(
        read[0]["actor"], "worker",
        "the redemption node provisioned it"
    );
    // Who caused what: every host's reports, and nothing else, by the hosts' own identities.
    let (_, by_hosts) = replay(&cloud, &["read", "--actor", "host.*", "--format", "json"]).await;
    let by_hosts: Vec<Value> = by_hosts
        .lines()
        .map(|l| serde_json::from_str(l).expect("a CloudEvents line"))
        .collect();
    assert!(
        by_hosts.iter().any(|e| e["type"] == "HostRegistered"),
        "{by_hosts:?}"
    );
    for e in &by_hosts {
        let actor = e["actor"].as_str().expect("actor");
        assert!(actor.starts_with("host."), "{e}");
        if let Some(host) = e["data"]["host_id"].as_str() {
            assert_eq!(
                actor,
                format!("host.{host}"),
                "a host speaks for itself: {e}"
            );
        }
    }
    let provisioned_time = read[0]["time"].as_str().expect("time").to_string();
    let (_, table) = replay(
        &cloud,
        &["read", "--category", "token", "--type", "TokenIssued"],
    )
    .await;
    assert!(table.starts_with(" POSITION"), "{table}");
    assert!(
        table.contains("ACTOR") && table.contains(" worker "),
        "{table}"
    );
    assert!(
        table.contains(&format!("token-{}", grant.token_id)),
        "{table}"
    );
    assert!(!table.contains("SessionProvisioned"), "{table}");

    // The session at several moments, from history alone (live over NATS).
    let mut at_end = Value::Null;
    for (at, version, ended) in [
        (issued_at, 0, None),
        (provisioned_at, 1, Some(Value::Null)),
        (beat_at, 1, Some(Value::Null)),
        (ended_at - 1, 1, Some(Value::Null)),
        (ended_at, 2, Some(Value::from("ended"))),
        (head, 2, Some(Value::from("ended"))),
    ] {
        let p = at.to_string();
        let (code, then) =
            replay_json(&cloud, &["as-of", &stream, "--position", &p, "--json"]).await;
        assert_eq!(code, 0);
        assert_eq!(then["version"], version, "as of {at}: {then}");
        match ended {
            None => assert_eq!(
                then["state"],
                serde_json::json!({"kind": "empty"}),
                "as of {at}"
            ),
            Some(ended) => {
                assert_eq!(then["state"]["kind"], "session", "as of {at}: {then}");
                assert_eq!(then["state"]["state"]["ended"], ended, "as of {at}: {then}");
                assert_eq!(
                    then["state"]["state"]["provisioned"]["host_id"],
                    session.host_id.as_str()
                );
            }
        }
        at_end = then;
    }
    let (_, by_time) = replay_json(
        &cloud,
        &["as-of", &stream, "--time", &provisioned_time, "--json"],
    )
    .await;
    assert_eq!(by_time["version"], 1, "{by_time}");
    assert_eq!(by_time["position"], provisioned_at);
    let (_, host_then) = replay_json(
        &cloud,
        &[
            "as-of",
            &format!("host-{}", session.host_id),
            "--position",
            &provisioned_at.to_string(),
            "--json",
        ],
    )
    .await;
    assert_eq!(host_then["state"]["kind"], "host", "{host_then}");
    assert!(
        host_then.to_string().contains(sid.as_str()),
        "the host held the session then: {host_then}"
    );

    // A view as of a moment, rebuilt from history.
    for (at, has_row) in [(issued_at, false), (provisioned_at, true)] {
        let (_, view) = replay_json(
            &cloud,
            &[
                "as-of",
                "--view",
                "sessions",
                "--position",
                &at.to_string(),
                "--json",
            ],
        )
        .await;
        assert_eq!(view["position"], at);
        let keys: Vec<&str> = view["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .filter(|r| r["table"] == "sessions")
            .map(|r| r["key"].as_str().expect("key"))
            .collect();
        assert_eq!(keys.contains(&sid.as_str()), has_row, "as of {at}: {view}");
    }

    // While served, the views' files are the projections process's own.
    let live = live_dir.to_string_lossy().to_string();
    let (code, refused) = replay(&cloud, &["diff", "--live", &live, "--quiet"]).await;
    assert_eq!(code, 1);
    assert!(refused.is_empty(), "an error, on stderr: {refused}");
    // Stopped, the live views equal a rebuild from history (read live over NATS).
    projections.terminate();
    let (code, diff) = replay_json(&cloud, &["diff", "--live", &live, "--json", "--quiet"]).await;
    assert_eq!(code, 0, "{diff}");
    assert_eq!(diff["differences"], serde_json::json!([]));
    let checkpoints = diff["checkpoints"].as_object().expect("checkpoints");
    assert_eq!(
        checkpoints.len(),
        streamfleet_projections::views::VIEW_NAMES.len(),
        "one checkpoint per view"
    );
    assert!(
        checkpoints.values().all(|p| p.as_u64() == Some(head)),
        "{diff}"
    );

    // A deliberately altered store gives a diff naming the row.
    let altered = dir.path().join("altered");
    copy_dir(&live_dir, &altered);
    alter_session_row(&altered.join("sessions.redb"), &sid);
    let (code, out) = replay(
        &cloud,
        &["diff", "--live", &altered.to_string_lossy(), "--quiet"],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("sessions/sessions/{sid}")), "{out}");
    assert!(out.contains("mallory") && out.contains("\"ada\""), "{out}");
    assert!(out.contains("1 rows differ"), "{out}");

    // Offline: a copy of the stopped node's log verifies clean, and gives the same history.
    cloud.sys._node.terminate();
    let copy = dir.path().join("copy.redb");
    std::fs::copy(cloud.sys._data.path().join("events.redb"), &copy).expect("copy the log");
    let copy_arg = copy.to_string_lossy().to_string();
    let (code, verified) = replay_json(
        &cloud,
        &["verify", "--file", &copy_arg, "--json", "--quiet"],
    )
    .await;
    assert_eq!(code, 0, "{verified}");
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["events"], head);
    assert_eq!(verified["last"], head);
    let (_, offline) = replay_json(
        &cloud,
        &[
            "as-of",
            &stream,
            "--file",
            &copy_arg,
            "--position",
            &head.to_string(),
            "--json",
        ],
    )
    .await;
    assert_eq!(
        offline, at_end,
        "the file and the live node give the same state"
    );
    let rebuilt = dir.path().join("rebuilt");
    let (code, _) = replay(
        &cloud,
        &[
            "rebuild",
            "--file",
            &copy_arg,
            "--out",
            &rebuilt.to_string_lossy(),
            "--quiet",
        ],
    )
    .await;
    assert_eq!(code, 0);
    let differences = streamfleet_projections::diff(&live_dir, &rebuilt).expect("diff");
    assert!(differences.is_empty(), "{differences:#?}");

    // An export of the real log verifies alone, and its end chain is the log's.
    let export = dir.path().join("export.jsonl.gz");
    let (code, _) = replay(
        &cloud,
        &[
            "export",
            "--file",
            &copy_arg,
            "--out",
            &export.to_string_lossy(),
            "--compression",
            "gzip",
            "--quiet",
        ],
    )
    .await;
    assert_eq!(code, 0);
    let (code, checked) = replay_json(
        &cloud,
        &[
            "verify-export",
            &export.to_string_lossy(),
            "--json",
            "--quiet",
        ],
    )
    .await;
    assert_eq!(code, 0, "{checked}");
    assert_eq!(checked["chain_at_end"], verified["chain"]);

    // 50 single-byte flips inside records at random places: verify names the right position.
    tamper_50_times(&cloud, &copy, dir.path()).await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// Rewrites the session's row in a sessions view file with another user.
fn alter_session_row(path: &Path, session_id: &str) {
    use prost::Message;
    use redb::ReadableTable;
    let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("sessions");
    let db = redb::Database::open(path).expect("open view file");
    let txn = db.begin_write().expect("write");
    {
        let mut rows = txn.open_table(table).expect("sessions table");
        let bytes = rows
            .get(session_id)
            .expect("get")
            .expect("the session's row")
            .value()
            .to_vec();
        let mut row = pb::SessionRow::decode(bytes.as_slice()).expect("a session row");
        assert_eq!(row.user_id, "ada");
        row.user_id = "mallory".into();
        rows.insert(session_id, row.encode_to_vec().as_slice())
            .expect("insert");
    }
    txn.commit().expect("commit");
}

async fn tamper_50_times(cloud: &Cloud, log: &Path, dir: &Path) {
    let file = streamfleet_eventlog::LogFile::open(log).expect("open the copy");
    let mut records = Vec::new();
    file.for_each_raw(1, None, |position, bytes| {
        records.push((position, bytes.to_vec()));
        true
    })
    .expect("records");
    drop(file);
    let original = std::fs::read(log).expect("read the copy");
    let tampered = dir.join("tampered.redb");
    let tampered_arg = tampered.to_string_lossy().to_string();
    let mut rng = rand::rng();
    let (mut flips, mut tries) = (0, 0);
    while flips < 50 {
        tries += 1;
        assert!(
            tries < 5000,
            "found only {flips} records stored once in the file"
        );
        let (position, record) = &records[rng.random_range(0..records.len())];
        // Only a record whose bytes appear once is certainly the live copy (redb may keep
        // stale copies in freed pages).
        let mut at = original
            .windows(record.len())
            .enumerate()
            .filter(|(_, w)| w == record)
            .map(|(i, _)| i);
        let (Some(start), None) = (at.next(), at.next()) else {
            continue;
        };
        let offset = start + rng.random_range(0..record.len());
        let mut bytes = original.clone();
        bytes[offset] ^= 1 << rng.random_range(0..8);
        std::fs::write(&tampered, &bytes).expect("write the tampered copy");
        let (code, result) = replay_json(
            cloud,
            &["verify", "--file", &tampered_arg, "--json", "--quiet"],
        )
        .await;
        assert_eq!(
            code, 1,
            "flip at byte {offset} (position {position}): {result}"
        );
        assert_eq!(result["ok"], false);
        assert_eq!(
            result["failure"]["position"], *position,
            "flip at byte {offset} of position {position}'s record: {result}"
        );
        flips += 1;
    }
}
