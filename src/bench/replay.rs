//! `streamfleet bench replay`: the auditors' tools over a log of N events, each figure beside a
//! raw sequential redb read of the same `events` table in the same run.

use super::{NatsServer, beside_raw, fill_log, raw_scan, row};
use std::time::Instant;
use streamfleet_node::{Node, NodeConfig};
use streamfleet_replay::{
    Compression, Flow, ProgressMode, Source, export, rebuild_into, verify_export, verify_file,
};

pub async fn run(n: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "streamfleet bench replay — {} cores, {}; {n} heartbeat events",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let path = data.join("events.redb");
    fill_log(&path, n).await?;
    raw_scan(&path)?; // warms the page cache: every figure below reads from memory
    let raw = raw_scan(&path)?;
    println!("\n[offline, from the file]");
    row(
        "baseline: raw redb sequential read of `events` (warm)",
        raw,
        "events/s",
        "",
    );
    let source = Source::file(&path)?;
    let log = source
        .log_file()
        .ok_or_else(|| anyhow::anyhow!("a file source"))?;

    let t = Instant::now();
    let summary = verify_file(log, 1, None, ProgressMode::Quiet)?;
    anyhow::ensure!(summary.ok, "{summary}");
    beside_raw(
        "verify: read + CRC + BLAKE3 chain (one core)",
        n,
        t.elapsed(),
        raw,
    );

    let t = Instant::now();
    let mut kept = 0u64;
    source
        .scan(1, None, false, async |e| {
            let meta = e.meta().map_err(|p| source.event_error(e.position, p))?;
            kept += u64::from(meta.event_type == "HeartbeatReceived");
            Ok(Flow::Continue)
        })
        .await?;
    anyhow::ensure!(kept == n as u64, "read {kept} of {n}");
    beside_raw(
        "read: decode + attributes for filters (one core)",
        n,
        t.elapsed(),
        raw,
    );

    let t = Instant::now();
    let mut typed = 0u64;
    source
        .scan(1, None, false, async |e| {
            let event = e.typed().map_err(|p| source.event_error(e.position, p))?;
            typed += u64::from(event.position > 0);
            Ok(Flow::Continue)
        })
        .await?;
    anyhow::ensure!(typed == n as u64, "typed {typed} of {n}");
    beside_raw(
        "read: typed payloads, as rebuild feeds them (one core)",
        n,
        t.elapsed(),
        raw,
    );

    let t = Instant::now();
    let views = dir.path().join("views");
    rebuild_into(&source, &views, n as u64, ProgressMode::Quiet).await?;
    beside_raw(
        "rebuild all eight views into a fresh store (reader + views)",
        n,
        t.elapsed(),
        raw,
    );

    let out = dir.path().join("export.jsonl.gz");
    let t = Instant::now();
    export(
        log,
        &out,
        1,
        None,
        Compression::Gzip,
        ProgressMode::Quiet,
        &[],
    )?;
    beside_raw(
        "export to gzip JSON lines, chain checked",
        n,
        t.elapsed(),
        raw,
    );
    let t = Instant::now();
    let check = verify_export(&out, ProgressMode::Quiet, None)?;
    anyhow::ensure!(check.ok, "{check}");
    beside_raw("verify-export of that file alone", n, t.elapsed(), raw);
    drop(source);

    println!("\n[live, over NATS as the auditor]");
    let nats = NatsServer::start()?;
    let node = Node::start(NodeConfig::new(&data, nats.login("node"))).await?;
    let live = Source::live(&nats.login("auditor")).await?;
    let t = Instant::now();
    let mut seen = 0u64;
    live.scan(1, Some(n as u64), false, async |_| {
        seen += 1;
        Ok(Flow::Continue)
    })
    .await?;
    anyhow::ensure!(seen == n as u64, "caught up {seen} of {n}");
    beside_raw(
        "catch-up: every event through the node's read API",
        n,
        t.elapsed(),
        raw,
    );
    drop(live);
    node.stop().await;
    Ok(())
}
