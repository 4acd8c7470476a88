//! A full disk and back, on a real (small) tmpfs: appends are refused as `StorageFull` while
//! the disk is full, reads go on, and once space is freed the next append is written — same
//! handle, no restart — with every acknowledged event still there.

use streamfleet_eventlog::*;
use streamfleet_testkit::SmallDisk;
use uuid::Uuid;

fn append(n: u64, pad: usize) -> AppendRequest {
    let id = Uuid::now_v7();
    let body = serde_json::to_vec(&serde_json::json!({
        "id": id, "type": "NodeFailed", "subject": format!("node-{}", n % 7),
        "data": { "n": n, "pad": "x".repeat(pad) }
    }))
    .expect("json");
    AppendRequest {
        stream: format!("node-{}", n % 7),
        expected: ExpectedVersion::Any,
        command_id: Some(Uuid::now_v7()),
        command_digest: None,
        events: vec![NewEvent {
            id,
            event_type: "NodeFailed".into(),
            body,
        }],
    }
}

#[tokio::test]
async fn a_full_disk_refuses_appends_as_storage_full_serves_reads_and_takes_appends_again_once_freed()
 {
    let disk = SmallDisk::mount(16);
    let file = disk.path().join("log.redb");
    let log = EventLog::open(&file, Config::default()).expect("open");
    let mut acknowledged: Vec<u64> = Vec::new();
    for n in 0..50 {
        let out = log
            .append(append(n, 1000))
            .await
            .expect("append before full");
        acknowledged.push(out.events[0].position);
    }
    assert_eq!(log.health(), Health::Serving);

    let filler = disk.fill();
    // redb may still have room inside its file: append until the disk says no.
    let mut refusal = None;
    for n in 50..5_000 {
        match log.append(append(n, 8_000)).await {
            Ok(out) => acknowledged.push(out.events[0].position),
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    let refusal = refusal.expect("a full disk refuses an append");
    assert!(
        matches!(refusal, AppendError::StorageFull { .. }),
        "typed as storage full: {refusal:?}"
    );
    assert!(
        matches!(log.health(), Health::StorageFull { .. }),
        "{}",
        log.health()
    );
    assert!(
        log.health()
            .to_string()
            .starts_with("degraded: storage full")
    );

    // Reads keep serving, and hold every acknowledged event.
    let stored = log
        .read_all(1, 100_000)
        .expect("reads serve while the disk is full");
    assert_eq!(
        stored.iter().map(|e| e.position).collect::<Vec<_>>(),
        acknowledged
    );
    let node3 = log
        .read_stream("node-3", 1, ReadDirection::Forward, 10_000)
        .expect("stream reads serve");
    assert!(!node3.is_empty() && node3.iter().all(|e| e.stream == "node-3"));
    // Still full: still refused, as storage full, and still readable.
    let again = log.append(append(9_000, 10)).await;
    assert!(
        matches!(again, Err(AppendError::StorageFull { .. })),
        "{again:?}"
    );
    log.read_all(1, 10).expect("reads still serve");

    // Space comes back: the next append is written on the same log, no restart.
    std::fs::remove_file(filler).expect("free the space");
    let out = log
        .append(append(9_001, 10))
        .await
        .expect("an append after space is freed is written");
    acknowledged.push(out.events[0].position);
    assert_eq!(
        out.events[0].position,
        acknowledged[acknowledged.len() - 2] + 1,
        "no gap"
    );
    assert_eq!(log.health(), Health::Serving);
    let report = log.verify(1, None).expect("the chain holds");
    assert_eq!(report.events, acknowledged.len() as u64);

    // Nothing acknowledged was lost: reopened from the file, the log holds exactly them.
    drop(log);
    let log = EventLog::open(&file, Config::default()).expect("reopen");
    let stored = log.read_all(1, 100_000).expect("read");
    assert_eq!(
        stored.iter().map(|e| e.position).collect::<Vec<_>>(),
        acknowledged
    );
}
