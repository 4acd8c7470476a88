//! `streamfleet bench log|sessions|replay`: the log and the node, each figure beside a baseline measured in the
//! same run on the same machine (raw redb, bare NATS request/reply, JetStream publish).

use anyhow::Context as _;
use futures::StreamExt;
use std::path::Path;
use std::time::{Duration, Instant};
use streamfleet_bus_client::{CommandClient, Follower};
use streamfleet_bus_schemas::payloads::{RecordHeartbeats, RegisterHost};
use streamfleet_bus_schemas::principal::Role;
use streamfleet_bus_schemas::{Command as Cmd, CommandReply, ExpectedVersion};
use streamfleet_eventlog::{AppendRequest, Config, EventLog, NewEvent, WriterSnapshot};
use streamfleet_node::{Node, NodeConfig};
use streamfleet_testkit::NatsServer;
use uuid::Uuid;

mod failover;
mod instances;
mod media;
mod migration;
mod replay;
mod sessions;

#[derive(clap::Subcommand)]
pub enum Which {
    /// Sessions: redemption latency at a fixed rate; heartbeat ingestion with projections.
    Sessions(sessions::SessionsArgs),
    /// Instances: command → answering on its address per driver, beside a start by hand; sim
    /// launches per second.
    Instances(instances::InstancesArgs),
    /// Migration: a QEMU instance moved between two hosts at its reboot; downtime, its boot and
    /// control-plane parts, the disk sync beside `cp`.
    Migration(migration::MigrationArgs),
    /// File-system node failover: a MooseFS master killed -9 under a writer; detection,
    /// fence-to-serving, kill-to-serving, files lost, beside a restart in place.
    Failover(failover::FailoverArgs),
    /// The media plane: encode fps, glass-to-glass latency, concurrent streams, bitrate settling.
    Media(media::MediaArgs),
    /// The auditors' tools: offline read and verify, projection rebuild, export, live catch-up.
    Replay {
        /// Events in the log the figures are taken over.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
    },
    /// The event log and the node: appends, commands over NATS, catch-up reads.
    Log {
        /// Events for the catch-up figures.
        #[arg(long, default_value_t = 1_000_000)]
        catch_up_events: usize,
        /// Smaller counts everywhere (a quick look, not for BENCHMARKS.md).
        #[arg(long)]
        quick: bool,
        /// Run only these parts (default: all).
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<Part>,
    },
}

/// The parts of `bench log`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// In-process durable appends vs raw redb.
    Appends,
    /// Commands over NATS vs bare request/reply and JetStream.
    Commands,
    /// Catch-up reads vs a raw redb scan.
    CatchUp,
}

pub async fn run(which: Which) -> anyhow::Result<()> {
    match which {
        Which::Sessions(args) => sessions::run(args).await,
        Which::Media(args) => media::run(args).await,
        Which::Instances(args) => instances::run(args).await,
        Which::Migration(args) => migration::run(args).await,
        Which::Failover(args) => failover::run(args).await,
        Which::Replay { events } => replay::run(events).await,
        Which::Log {
            catch_up_events,
            quick,
            only,
        } => {
            let parts = if only.is_empty() {
                vec![Part::Appends, Part::Commands, Part::CatchUp]
            } else {
                only
            };
            log(catch_up_events, quick, &parts).await
        }
    }
}

/// A heartbeat-sized event body, as the node writes it.
fn body(stream: &str, id: Uuid) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "specversion": "1.0", "id": id, "source": "streamfleet/node", "type": "HeartbeatReceived",
        "subject": stream, "time": chrono::Utc::now(), "datacontenttype": "application/json",
        "schemaversion": 1, "correlationid": id, "causationid": id,
        "data": { "host_id": stream, "sent_at": chrono::Utc::now(), "sessions": [{ "session_id": "0190f5a2c3d44e5f8a9b0c1d2e3f4a5b" }] }
    }))
    .expect("json")
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3
}

/// A row for a pass over `n` events that took `elapsed`, beside the raw read rate.
fn beside_raw(name: &str, n: usize, elapsed: Duration, raw: f64) {
    let rate = n as f64 / elapsed.as_secs_f64();
    row(
        name,
        rate,
        "events/s",
        &format!("{:.0}% of raw", 100.0 * rate / raw),
    );
}

fn row(name: &str, rate: f64, unit: &str, extra: &str) {
    println!("  {name:<52} {rate:>12.0} {unit:<10} {extra}");
}

async fn log(catch_up_events: usize, quick: bool, parts: &[Part]) -> anyhow::Result<()> {
    let scale = if quick { 10 } else { 1 };
    let dir = tempfile::tempdir()?;
    println!(
        "streamfleet bench log — {} cores, {}; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        if quick {
            "QUICK (not for BENCHMARKS.md)"
        } else {
            "full"
        }
    );

    if parts.contains(&Part::Appends) {
        bench_appends(dir.path(), scale).await?;
    }
    let nats = NatsServer::start()?;
    if parts.contains(&Part::Commands) {
        bench_commands(dir.path(), &nats, scale).await?;
    }
    if parts.contains(&Part::CatchUp) {
        bench_catch_up(dir.path(), &nats, catch_up_events / scale).await?;
    }
    Ok(())
}

async fn bench_appends(dir: &Path, scale: usize) -> anyhow::Result<()> {
    println!("\n[durable appends, in-process; one event per append, heartbeat-sized body]");
    let ceiling = raw_redb_inserts(&dir.join("raw.redb"), 200_000 / scale, 1000)?;
    row(
        "baseline: raw redb insert, 1000 per commit",
        ceiling,
        "events/s",
        "(the ceiling)",
    );
    let same_batch = raw_redb_inserts(&dir.join("raw128.redb"), 200_000 / scale, 128)?;
    row(
        "baseline: raw redb insert, 128 per commit",
        same_batch,
        "events/s",
        &format!(
            "{:.0}% of ceiling: the batch size 256 writers reach",
            100.0 * same_batch / ceiling
        ),
    );
    for (writers, total) in [
        (1, 5_000 / scale),
        (16, 40_000 / scale),
        (256, 200_000 / scale),
    ] {
        let r = appends(&dir.join(format!("w{writers}.redb")), writers, total).await?;
        row(
            &format!("log append, {writers} concurrent writers"),
            r.rate,
            "appends/s",
            &format!(
                "{:.0}% of ceiling; p50 {:.2} ms p99 {:.2} ms; {:.1} appends/commit; commit (fsync) {:.0}% of writer time; writer busy {:.0}%; {} index flushes of {:.1} ms",
                100.0 * r.rate / ceiling,
                r.p50,
                r.p99,
                r.per_commit,
                r.fsync_share * 100.0,
                r.writer_busy * 100.0,
                r.flushes,
                r.flush_ms
            ),
        );
    }

    Ok(())
}

async fn bench_commands(dir: &Path, nats: &NatsServer, scale: usize) -> anyhow::Result<()> {
    println!("\n[commands over NATS: request → decide → durable append → reply; RecordHeartbeats]");
    let node = Node::start(NodeConfig::new(dir.join("node"), nats.login("node"))).await?;
    let payload_len =
        serde_json::to_vec(
            &CommandClient::new(nats.try_client("service").await?, Role::Service, "bench")
                .envelope(Uuid::now_v7(), &heartbeat("s-0"), None),
        )?
        .len();
    let echo = nats.try_client("bench").await?;
    let mut echo_sub = echo.subscribe("bench.echo").await?;
    let echo_reply = echo.clone();
    tokio::spawn(async move {
        while let Some(m) = echo_sub.next().await {
            if let Some(r) = m.reply {
                let _ = echo_reply.publish(r, vec![b'x'; 200].into()).await;
            }
        }
    });
    echo.flush().await?;
    let js = async_nats::jetstream::new(nats.try_client("bench").await?);
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "BENCH".into(),
        subjects: vec!["bench.js.>".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("JetStream stream: {e}"))?;
    for (clients, total) in [(1, 3_000 / scale), (64, 100_000 / scale)] {
        let cmd = commands(nats, node.log(), clients, total).await?;
        let bare = baseline(nats, Baseline::Request, clients, total, payload_len).await?;
        let jsr = baseline(nats, Baseline::JetStream, clients, total, payload_len).await?;
        row(
            &format!("streamfleet command, {clients} concurrent clients"),
            cmd.rate,
            "cmds/s",
            &format!(
                "p50 {:.2} ms p99 {:.2} ms; {:.1} appends/commit; commit (fsync) {:.0}% of writer time; writer busy {:.0}%",
                cmd.p50,
                cmd.p99,
                cmd.per_commit,
                cmd.fsync_share * 100.0,
                cmd.writer_busy * 100.0
            ),
        );
        row(
            &format!("baseline: bare NATS request/reply, {clients} clients"),
            bare.rate,
            "req/s",
            &format!("p50 {:.2} ms p99 {:.2} ms", bare.p50, bare.p99),
        );
        row(
            &format!("baseline: JetStream publish+ack, {clients} clients"),
            jsr.rate,
            "msgs/s",
            &format!("p50 {:.2} ms p99 {:.2} ms", jsr.p50, jsr.p99),
        );
    }
    node.stop().await;
    Ok(())
}

async fn bench_catch_up(dir: &Path, nats: &NatsServer, n: usize) -> anyhow::Result<()> {
    println!("\n[catch-up reads of {n} events]");
    let cdir = dir.join("catchup");
    std::fs::create_dir_all(&cdir)?;
    let path = cdir.join("events.redb");
    fill_log(&path, n).await?;
    raw_scan(&path)?; // warms the caches, so every figure below reads from memory
    let raw = raw_scan(&path)?;
    row(
        "baseline: raw redb sequential read of `events` (warm)",
        raw,
        "events/s",
        "",
    );
    let log = EventLog::open(&path, Config::default())?;
    let t = Instant::now();
    let mut from = 1;
    loop {
        let batch = log.read_all(from, 4096)?;
        let Some(last) = batch.last() else { break };
        from = last.position + 1;
    }
    beside_raw(
        "log read_all (CRC-checked), in-process",
        n,
        t.elapsed(),
        raw,
    );
    let t = Instant::now();
    log.verify(1, None)?;
    beside_raw(
        "log verify (CRC + BLAKE3 chain), in-process",
        n,
        t.elapsed(),
        raw,
    );
    drop(log);
    let node = Node::start(NodeConfig::new(&cdir, nats.login("node"))).await?;
    let mut follower = Follower::start(nats.try_client("auditor").await?, 1).await?;
    let t = Instant::now();
    for _ in 0..n {
        follower.next().await?;
    }
    beside_raw(
        "Follower catch-up over NATS (read API), another process's view",
        n,
        t.elapsed(),
        raw,
    );
    node.stop().await;
    Ok(())
}

/// Writes `n` heartbeat-sized events to a fresh log at `path`, 1,000 per append over as many
/// host streams, eight appends in flight.
async fn fill_log(path: &Path, n: usize) -> anyhow::Result<()> {
    let log = EventLog::open(path, Config::default())?;
    let mut set = tokio::task::JoinSet::new();
    for chunk in 0..n.div_ceil(1000) {
        let log = log.clone();
        let count = (n - chunk * 1000).min(1000);
        set.spawn(async move {
            let stream = format!("host-c{chunk}");
            let events = (0..count)
                .map(|_| {
                    let id = Uuid::now_v7();
                    NewEvent {
                        id,
                        event_type: "HeartbeatReceived".into(),
                        body: body(&stream, id),
                    }
                })
                .collect();
            log.append(AppendRequest {
                stream: stream.clone(),
                expected: ExpectedVersion::Any,
                command_id: None,
                command_digest: None,
                events,
            })
            .await
        });
        while set.len() > 8 {
            set.join_next().await.context("join")???;
        }
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

struct Figures {
    rate: f64,
    /// Share of the wall time the writer thread spent in transactions.
    writer_busy: f64,
    /// Index flushes during the run, and their mean duration.
    flushes: u64,
    flush_ms: f64,
    p50: f64,
    p99: f64,
    per_commit: f64,
    fsync_share: f64,
}

fn figures(
    total: usize,
    elapsed: Duration,
    mut lat: Vec<Duration>,
    writer: Option<WriterSnapshot>,
) -> Figures {
    lat.sort();
    let w = writer.unwrap_or_default();
    let in_txn = w.insert_nanos + w.commit_nanos;
    Figures {
        rate: total as f64 / elapsed.as_secs_f64(),
        writer_busy: in_txn as f64 / elapsed.as_nanos() as f64,
        p50: pct(&lat, 0.5),
        p99: pct(&lat, 0.99),
        per_commit: w.appends as f64 / w.commits.max(1) as f64,
        fsync_share: w.commit_nanos as f64 / in_txn.max(1) as f64,
        flushes: w.index_flushes,
        flush_ms: w.index_flush_nanos as f64 / w.index_flushes.max(1) as f64 / 1e6,
    }
}

/// A stored record of the size the log writes, for the raw baselines.
fn sample_record() -> Vec<u8> {
    let stream = "host-raw";
    streamfleet_eventlog::record::encode(
        &[0; 32],
        1,
        1,
        Some(Uuid::now_v7()),
        stream,
        &body(stream, Uuid::now_v7()),
    )
    .0
}

fn raw_redb_inserts(path: &Path, total: usize, per_commit: usize) -> anyhow::Result<f64> {
    let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
    let db = redb::Database::create(path)?;
    let record = sample_record();
    let t = Instant::now();
    let mut key = 0u64;
    while (key as usize) < total {
        let txn = db.begin_write()?;
        {
            let mut t = txn.open_table(table)?;
            for _ in 0..per_commit {
                key += 1;
                t.insert(key, record.as_slice())?;
            }
        }
        txn.commit()?;
    }
    Ok(key as f64 / t.elapsed().as_secs_f64())
}

/// Reads every record of the `events` table with bare redb, in the same 4096-key read
/// transactions as the log's `read_all`, touching each value's bytes but checking nothing.
fn raw_scan(path: &Path) -> anyhow::Result<f64> {
    use redb::ReadableDatabase;
    let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
    let db = redb::Database::open(path)?;
    let start = Instant::now();
    let (mut n, mut bytes, mut from) = (0u64, 0usize, 1u64);
    loop {
        let txn = db.begin_read()?;
        let t = txn.open_table(table)?;
        let mut read = 0;
        for item in t.range(from..)?.take(4096) {
            let (k, v) = item?;
            bytes += v.value().len();
            from = k.value() + 1;
            read += 1;
        }
        n += read;
        if read == 0 {
            break;
        }
    }
    std::hint::black_box(bytes);
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

async fn appends(path: &Path, writers: usize, total: usize) -> anyhow::Result<Figures> {
    let log = EventLog::open(path, Config::default())?;
    let before = log.writer_counters().snapshot();
    let per = total / writers;
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..writers {
        let log = log.clone();
        set.spawn(async move {
            let stream = format!("host-w{w}");
            let mut lat = Vec::with_capacity(per);
            for _ in 0..per {
                let id = Uuid::now_v7();
                let req = AppendRequest {
                    stream: stream.clone(),
                    expected: ExpectedVersion::Any,
                    command_id: Some(Uuid::now_v7()),
                    command_digest: None,
                    events: vec![NewEvent {
                        id,
                        event_type: "HeartbeatReceived".into(),
                        body: body(&stream, id),
                    }],
                };
                let s = Instant::now();
                log.append(req).await?;
                lat.push(s.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        });
    }
    let mut lat = Vec::with_capacity(total);
    while let Some(r) = set.join_next().await {
        lat.extend(r??);
    }
    Ok(figures(
        per * writers,
        t.elapsed(),
        lat,
        Some(log.writer_counters().snapshot() - before),
    ))
}

fn heartbeat(host: &str) -> Cmd {
    Cmd::RecordHeartbeats(RecordHeartbeats {
        host_id: host.into(),
        sent_at: chrono::Utc::now(),
        sessions: Vec::new(),
    })
}

/// Runs `total` requests from `clients` concurrent tasks over `clients.min(8)` connections.
async fn concurrent<F, Fut>(
    nats: &NatsServer,
    role: &str,
    clients: usize,
    total: usize,
    one: F,
) -> anyhow::Result<(Duration, Vec<Duration>)>
where
    F: Fn(async_nats::Client, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let mut conns = Vec::new();
    for _ in 0..clients.min(8) {
        conns.push(nats.try_client(role).await?);
    }
    let per = total / clients;
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (client, one) = (conns[c % conns.len()].clone(), one.clone());
        set.spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let s = Instant::now();
                one(client.clone(), c, i).await?;
                lat.push(s.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        });
    }
    let mut lat = Vec::new();
    while let Some(r) = set.join_next().await {
        lat.extend(r??);
    }
    Ok((t.elapsed(), lat))
}

async fn commands(
    nats: &NatsServer,
    log: &EventLog,
    clients: usize,
    total: usize,
) -> anyhow::Result<Figures> {
    // Each client is a host of its own (admitted, registered, reporting under its own key), as
    // heartbeats come in production.
    let mut hosts = Vec::with_capacity(clients);
    for c in 0..clients {
        let id = format!("b{clients}-{c}");
        nats.admit_host(&id, "r").await?;
        let host = nats.host_commands(&id).await;
        let cmd = Cmd::RegisterHost(RegisterHost {
            host_id: id.as_str().into(),
            region: "r".into(),
            app_id: "a".into(),
            version: "1.0.0".into(),
            capacity: 1,
            hardware: "bench".into(),
            address: "127.0.0.1".into(),
            control_port: 1,
            control_tls: false,
        });
        host.submit(Uuid::now_v7(), &cmd).await?;
        hosts.push((id, host));
    }
    let before = log.writer_counters().snapshot();
    let per = total / clients;
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (id, host) in hosts {
        set.spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for _ in 0..per {
                let s = Instant::now();
                let reply = host.send(Uuid::now_v7(), &heartbeat(&id)).await?;
                anyhow::ensure!(
                    matches!(reply, CommandReply::Accepted { .. }),
                    "rejected: {reply:?}"
                );
                lat.push(s.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        });
    }
    let mut lat = Vec::new();
    while let Some(r) = set.join_next().await {
        lat.extend(r??);
    }
    let elapsed = t.elapsed();
    Ok(figures(
        total / clients * clients,
        elapsed,
        lat,
        Some(log.writer_counters().snapshot() - before),
    ))
}

/// The NATS baselines, on the same payload size and concurrency as the commands.
#[derive(Clone, Copy)]
enum Baseline {
    /// A request answered by a bare responder.
    Request,
    /// A JetStream publish, waiting for its ack.
    JetStream,
}

async fn baseline(
    nats: &NatsServer,
    kind: Baseline,
    clients: usize,
    total: usize,
    len: usize,
) -> anyhow::Result<Figures> {
    let payload = bytes::Bytes::from(vec![b'x'; len]);
    let (elapsed, lat) = concurrent(nats, "bench", clients, total, move |client, c, _| {
        let payload = payload.clone();
        async move {
            match kind {
                Baseline::Request => {
                    client.request("bench.echo", payload).await?;
                }
                Baseline::JetStream => {
                    async_nats::jetstream::new(client)
                        .publish(format!("bench.js.{c}"), payload)
                        .await?
                        .await?;
                }
            }
            Ok(())
        }
    })
    .await?;
    Ok(figures(total / clients * clients, elapsed, lat, None))
}
