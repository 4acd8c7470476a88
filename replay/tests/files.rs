//! The replay tools on real log files: bad files get errors naming the file, bad events errors
//! naming the position, and a million events go through export and verify-export.

use std::path::Path;
use streamfleet_eventlog::{AppendRequest, Config, EventLog, ExpectedVersion, NewEvent, OpenError};
use streamfleet_replay::{
    Compression, Flow, Moment, ProgressMode, ReplayError, Source, aggregate_as_of, export,
    verify_export, verify_file,
};
use uuid::Uuid;

/// A heartbeat report as the node records it.
fn heartbeat(host: &str, schema: u32) -> Vec<u8> {
    let id = Uuid::now_v7();
    serde_json::to_vec(&serde_json::json!({
        "specversion": "1.0", "id": id, "source": "streamfleet/node", "type": "HeartbeatReceived",
        "subject": format!("host-{host}"), "time": chrono::Utc::now(),
        "datacontenttype": "application/json", "schemaversion": schema,
        "correlationid": id, "causationid": id,
        "data": { "host_id": host, "sent_at": chrono::Utc::now(),
                  "sessions": [{ "session_id": "0190f5a2c3d44e5f8a9b0c1d2e3f4a5b" }] }
    }))
    .expect("json")
}

/// Writes `n` heartbeat events over 100 host streams, in appends of up to 1,000 (every other
/// append names a command id).
async fn write_log(path: &Path, n: usize) {
    let log = EventLog::open(path, Config::default()).expect("open");
    let mut set = tokio::task::JoinSet::new();
    for chunk in 0..n.div_ceil(1000) {
        let log = log.clone();
        let count = (n - chunk * 1000).min(1000);
        set.spawn(async move {
            let host = format!("h{}", chunk % 100);
            let events = (0..count)
                .map(|_| NewEvent {
                    id: Uuid::now_v7(),
                    event_type: "HeartbeatReceived".into(),
                    body: heartbeat(&host, 1),
                })
                .collect();
            log.append(AppendRequest {
                stream: format!("host-{host}"),
                expected: ExpectedVersion::Any,
                command_id: (chunk % 2 == 0).then(Uuid::now_v7),
                command_digest: None,
                events,
            })
            .await
            .expect("append")
        });
        while set.len() > 4 {
            set.join_next().await.expect("task").expect("join");
        }
    }
    while let Some(r) = set.join_next().await {
        r.expect("join");
    }
}

fn open_err(path: &Path) -> OpenError {
    match Source::file(path) {
        Err(ReplayError::Open(e)) => e,
        Err(other) => panic!("{}: not an open error: {other}", path.display()),
        Ok(_) => panic!("{} opened", path.display()),
    }
}

#[tokio::test]
async fn files_that_are_not_readable_logs_get_errors_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shown = |name: &str| dir.path().join(name).display().to_string();

    let missing = open_err(&dir.path().join("missing.redb"));
    assert!(matches!(missing, OpenError::Database { .. }), "{missing}");
    assert!(
        missing.to_string().contains(&shown("missing.redb")),
        "{missing}"
    );

    for (name, bytes) in [
        ("text.redb", b"hello, I am not a database\n".to_vec()),
        ("empty.redb", Vec::new()),
        ("zeros.redb", vec![0u8; 64 * 1024]),
    ] {
        std::fs::write(dir.path().join(name), bytes).expect("write");
        let e = open_err(&dir.path().join(name));
        assert!(e.to_string().contains(&shown(name)), "{e}");
    }

    let other = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&other).expect("create");
        let txn = db.begin_write().expect("write");
        let t: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("accounts");
        txn.open_table(t)
            .expect("table")
            .insert(1, 2)
            .expect("insert");
        txn.commit().expect("commit");
    }
    let e = open_err(&other);
    assert!(
        matches!(e, OpenError::NotAnEventLog { found: None, .. }),
        "{e}"
    );

    // A log of a newer format than this build.
    let newer = dir.path().join("newer.redb");
    write_log(&newer, 10).await;
    {
        let db = redb::Database::open(&newer).expect("open");
        let txn = db.begin_write().expect("write");
        let meta: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("meta");
        txn.open_table(meta)
            .expect("meta")
            .insert("format", "streamfleet-eventlog/9")
            .expect("insert");
        txn.commit().expect("commit");
    }
    let e = open_err(&newer);
    assert!(matches!(e, OpenError::NewerFormat { found: 9, .. }), "{e}");
    assert!(e.to_string().contains("newer"), "{e}");

    // A file a node has open.
    let live = dir.path().join("live.redb");
    write_log(&live, 10).await;
    let log = EventLog::open(&live, Config::default()).expect("open");
    let e = open_err(&live);
    assert!(matches!(e, OpenError::InUse { .. }), "{e}");
    // A copy taken while the node has it open is recovered privately, and complete.
    let copy = dir.path().join("copy.redb");
    std::fs::copy(&live, &copy).expect("copy");
    let before = std::fs::read(&copy).expect("read");
    let source = Source::file(&copy).expect("a torn copy opens");
    let file = source.log_file().expect("file");
    let summary = verify_file(file, 1, None, ProgressMode::Quiet).expect("verify");
    assert!(summary.ok && summary.events == 10, "{summary}");
    assert!(
        summary.recovered && file.was_recovered(),
        "a copy of an open log needs recovery"
    );
    drop(source);
    assert_eq!(
        std::fs::read(&copy).expect("read"),
        before,
        "the copy was not modified"
    );
    drop(log);
    assert!(
        Source::file(&live).is_ok(),
        "readable once the node closed it"
    );
}

#[tokio::test]
async fn a_truncated_log_never_verifies_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log.redb");
    write_log(&path, 20_000).await;
    let bytes = std::fs::read(&path).expect("read");
    for keep in [bytes.len() / 2, bytes.len() * 9 / 10, 4096] {
        let cut = dir.path().join(format!("cut-{keep}.redb"));
        std::fs::write(&cut, &bytes[..keep]).expect("write");
        let verdict = Source::file(&cut)
            .and_then(|s| verify_file(s.log_file().expect("file"), 1, None, ProgressMode::Quiet));
        match verdict {
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains(&cut.display().to_string()), "{text}");
                assert!(text.contains("truncated"), "{text}");
            }
            Ok(summary) => assert!(
                !summary.ok || summary.recovered,
                "a file cut to {keep} of {} bytes verified clean without a warning: {summary}",
                bytes.len()
            ),
        }
    }
}

#[tokio::test]
async fn an_event_of_a_newer_schema_stops_reading_at_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log.redb");
    {
        let log = EventLog::open(&path, Config::default()).expect("open");
        let newer = streamfleet_bus_schemas::SCHEMA_VERSION + 1;
        for schema in [1, 1, newer, 1] {
            log.append(AppendRequest {
                stream: "host-h1".into(),
                expected: ExpectedVersion::Any,
                command_id: None,
                command_digest: None,
                events: vec![NewEvent {
                    id: Uuid::now_v7(),
                    event_type: "HeartbeatReceived".into(),
                    body: heartbeat("h1", schema),
                }],
            })
            .await
            .expect("append");
        }
    }
    let source = Source::file(&path).expect("open");
    let mut read = Vec::new();
    let err = source
        .scan(1, None, false, async |e| {
            let meta = e.meta().map_err(|p| source.event_error(e.position, p))?;
            read.push((e.position, meta.schemaversion));
            Ok(Flow::Continue)
        })
        .await
        .expect_err("position 3 is newer");
    assert_eq!(read, vec![(1, 1), (2, 1)]);
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string())
            && text.contains("position 3")
            && text.contains(&format!(
                "schema version {}",
                streamfleet_bus_schemas::SCHEMA_VERSION + 1
            )),
        "{text}"
    );
    let err = aggregate_as_of(&source, "host-h1", Moment::Now)
        .await
        .expect_err("as-of cannot fold position 3");
    assert!(err.to_string().contains("position 3"), "{err}");
    let before = aggregate_as_of(&source, "host-h1", Moment::Position(2))
        .await
        .expect("the state before it");
    assert_eq!((before.version, before.position), (2, 2));
}

#[tokio::test]
async fn a_million_events_export_and_verify_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log.redb");
    write_log(&path, 1_000_000).await;
    let source = Source::file(&path).expect("open");
    let log = source.log_file().expect("file");
    let verified = verify_file(log, 1, None, ProgressMode::Quiet).expect("verify");
    assert!(verified.ok && verified.events == 1_000_000, "{verified}");

    let data = dir.path().join("all.jsonl.gz");
    let manifest = export(
        log,
        &data,
        1,
        None,
        Compression::Gzip,
        ProgressMode::Quiet,
        &[],
    )
    .expect("export");
    assert_eq!(manifest.events, 1_000_000);
    assert_eq!(manifest.types.get("HeartbeatReceived"), Some(&1_000_000));
    assert_eq!(
        manifest.chain_at_end, verified.chain,
        "the export ends on the log's chain"
    );
    let check = verify_export(&data, ProgressMode::Quiet, None).expect("verify-export");
    assert!(check.ok, "{check}");
    assert_eq!(check.events, 1_000_000);
    assert_eq!(check.chain_at_end, verified.chain);

    // A range starting past 1 verifies from its chain_before; any changed line is named.
    let part = dir.path().join("part.jsonl");
    let m = export(
        log,
        &part,
        500_001,
        Some(500_100),
        Compression::None,
        ProgressMode::Quiet,
        &[],
    )
    .expect("export a range");
    let ranged = verify_file(log, 500_001, Some(500_100), ProgressMode::Quiet).expect("verify");
    assert_eq!(
        (m.chain_before.as_str(), m.chain_at_end.as_str()),
        (ranged.chain_before.as_str(), ranged.chain.as_str())
    );
    assert!(
        verify_export(&part, ProgressMode::Quiet, None)
            .expect("check")
            .ok
    );
    let text = std::fs::read_to_string(&part).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 100);
    assert!(
        lines[0].starts_with("{\"position\":500001,"),
        "{}",
        lines[0]
    );
    let line: serde_json::Value = serde_json::from_str(lines[0]).expect("each line is JSON");
    assert_eq!(line["specversion"], "1.0");
    type Edit = Box<dyn Fn(&mut Vec<String>)>;
    let edits: [(&str, Edit, u64); 3] = [
        (
            "a changed payload",
            Box::new(|l: &mut Vec<String>| l[41] = l[41].replace("\"h", "\"x")),
            42,
        ),
        (
            "a dropped line",
            Box::new(|l: &mut Vec<String>| {
                l.remove(60);
            }),
            61,
        ),
        (
            "swapped lines",
            Box::new(|l: &mut Vec<String>| l.swap(10, 11)),
            11,
        ),
    ];
    for (what, edit, line_no) in edits {
        let mut changed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        edit(&mut changed);
        std::fs::write(&part, changed.join("\n") + "\n").expect("write");
        let check = verify_export(&part, ProgressMode::Quiet, None).expect("check");
        let failure = check.failure.expect(what);
        assert_eq!(failure.line, line_no, "{what}: {failure:?}");
    }

    // A truncated compressed export fails, naming where.
    let gz = std::fs::read(&data).expect("read");
    let cut = dir.path().join("cut.jsonl.gz");
    std::fs::write(&cut, &gz[..gz.len() / 3]).expect("write");
    std::fs::copy(
        streamfleet_replay::export::manifest_path(&data),
        streamfleet_replay::export::manifest_path(&cut),
    )
    .expect("manifest");
    let check = verify_export(&cut, ProgressMode::Quiet, None).expect("check");
    assert!(!check.ok);
    assert!(
        check
            .failure
            .expect("a failure")
            .problem
            .contains("unreadable")
    );
}

/// The attack: an export rewritten whole — other events, chained anew from its first line, its
/// manifest recomputed to match — passes every check an export can make of itself. With the
/// node's public key it fails: the manifest carries the node's signed checkpoints, and the
/// rewritten lines do not reproduce the chain hashes they state; a forged or stripped checkpoint
/// fails too.
#[tokio::test]
async fn an_export_rewritten_whole_is_caught_by_the_checkpoints_it_carries() {
    use streamfleet_eventlog::checkpoint::{SigningKey, sign};
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = key.verifying_key();
    let export_signed = |name: &str, with: Vec<streamfleet_eventlog::checkpoint::Checkpoint>| {
        let source = Source::file(dir.path().join(format!("{name}.redb"))).expect("open");
        let data = dir.path().join(format!("{name}.jsonl"));
        let log = source.log_file().expect("file");
        let signed: Vec<_> = if with.is_empty() {
            [100, 200, 300]
                .iter()
                .map(|&p| {
                    let record = log
                        .records(p, Some(p))
                        .expect("read")
                        .next()
                        .expect("a record")
                        .expect("readable");
                    sign(&key, p, &record.chain)
                })
                .collect()
        } else {
            with
        };
        let manifest = export(
            log,
            &data,
            1,
            None,
            Compression::None,
            ProgressMode::Quiet,
            &signed,
        );
        (data, manifest)
    };
    write_log(&dir.path().join("true.redb"), 300).await;
    write_log(&dir.path().join("forged.redb"), 300).await;

    let (data, manifest) = export_signed("true", Vec::new());
    let manifest = manifest.expect("exported");
    assert_eq!(manifest.checkpoints.len(), 3);
    let check = verify_export(&data, ProgressMode::Quiet, Some(&public)).expect("check");
    assert!(check.ok, "{check}");
    assert_eq!(check.signed_through, 300);

    // The rewrite: other events, a consistent chain and manifest of their own...
    let (forged, forged_manifest) = export_signed("forged", Vec::new());
    assert!(
        verify_export(&forged, ProgressMode::Quiet, None)
            .expect("check")
            .ok,
        "consistent in itself"
    );
    // ...carrying the true export's checkpoints, which the forger cannot re-sign.
    let mut grafted = forged_manifest.expect("exported");
    grafted.checkpoints = manifest.checkpoints.clone();
    let write = |m: &streamfleet_replay::export::Manifest| {
        std::fs::write(
            streamfleet_replay::export::manifest_path(&forged),
            serde_json::to_vec(m).expect("json"),
        )
        .expect("manifest")
    };
    write(&grafted);
    let failure = verify_export(&forged, ProgressMode::Quiet, Some(&public))
        .expect("check")
        .failure
        .expect("caught");
    assert!(
        failure.problem.starts_with("checkpoint_mismatch") && failure.position == Some(100),
        "{failure:?}"
    );
    // Re-signed with another key, or stripped: caught as well.
    let other = SigningKey::from_bytes(&[9; 32]);
    let mut resigned = grafted.clone();
    let chains: Vec<[u8; 32]> = resigned
        .checkpoints
        .iter()
        .map(|c| c.chain_hash().expect("hex"))
        .collect();
    resigned.checkpoints = resigned
        .checkpoints
        .iter()
        .zip(chains)
        .map(|(c, chain)| sign(&other, c.position, &chain))
        .collect();
    write(&resigned);
    let failure = verify_export(&forged, ProgressMode::Quiet, Some(&public))
        .expect("check")
        .failure
        .expect("caught");
    assert!(
        failure.problem.starts_with("checkpoint_forged"),
        "{failure:?}"
    );
    let mut stripped = grafted;
    stripped.checkpoints.clear();
    write(&stripped);
    let failure = verify_export(&forged, ProgressMode::Quiet, Some(&public))
        .expect("check")
        .failure
        .expect("caught");
    assert!(
        failure.problem.starts_with("checkpoint_missing"),
        "{failure:?}"
    );

    // A log that no longer matches a checkpoint is not exported under it.
    let (_, refused) = export_signed("forged", manifest.checkpoints.clone());
    assert!(refused.is_err(), "exported a log its checkpoints disown");
}

/// Page-level damage: bytes flipped in several places, a truncated file, garbage. Before, some
/// of it made `verify` panic inside the storage engine. Now each is an answer: a failure naming
/// the first position that could not be read, or an error naming the file — never a panic.
#[tokio::test]
async fn damaged_truncated_and_garbage_files_are_named_never_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.redb");
    write_log(&good, 5_000).await;
    let bytes = std::fs::read(&good).expect("read");
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for seed in 0..24u64 {
        let mut damaged = bytes.clone();
        // Flip a run of bytes at a few places spread over the file.
        let mut at = (seed * 7919 + 4096) as usize % damaged.len();
        for _ in 0..4 {
            for b in damaged.iter_mut().skip(at).take(64) {
                *b ^= 0x5a;
            }
            at = (at + damaged.len() / 5 + seed as usize * 131) % damaged.len();
        }
        cases.push((format!("flipped #{seed}"), damaged));
    }
    cases.push(("truncated".into(), bytes[..bytes.len() / 2].to_vec()));
    cases.push(("garbage".into(), vec![0x42; 64 * 1024]));
    cases.push(("empty".into(), Vec::new()));
    for (what, content) in cases {
        let path = dir.path().join("case.redb");
        std::fs::write(&path, &content).expect("write");
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match Source::file(&path) {
                Err(e) => Err(e.to_string()),
                Ok(source) => {
                    let log = source.log_file().expect("a file");
                    match verify_file(log, 1, None, ProgressMode::Quiet) {
                        Ok(s) => Ok(s),
                        Err(e) => Err(e.to_string()),
                    }
                }
            }));
        match outcome {
            Err(_) => panic!("{what}: verify panicked"),
            Ok(Err(message)) => assert!(!message.is_empty(), "{what}"),
            Ok(Ok(summary)) => {
                if !summary.ok {
                    let failure = summary.failure.expect("a failure is named");
                    assert!(
                        failure.position >= 1 && !failure.problem.is_empty(),
                        "{what}"
                    );
                }
            }
        }
    }
}
