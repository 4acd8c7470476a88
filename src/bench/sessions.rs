//! `streamfleet bench sessions`: redemption latency at a fixed rate, and durable heartbeat
//! ingestion with the projections following, each beside a bare NATS round trip measured in
//! the same run.

use super::{NatsServer, pct, row};
use std::sync::Arc;
use std::time::{Duration, Instant};
use streamfleet_bus_schemas::payloads::{RecordHeartbeats, RegisterHost, SessionBeat};
use streamfleet_bus_schemas::services::*;
use streamfleet_bus_schemas::{Command, CommandReply, subjects};
use streamfleet_node::{Node, NodeConfig};
use uuid::Uuid;

/// The settings of `bench sessions`.
#[derive(clap::Args)]
pub struct SessionsArgs {
    /// Redemptions per second, sent open-loop.
    #[arg(long, default_value_t = 2_000)]
    pub rate: u32,
    /// Seconds of redemptions.
    #[arg(long, default_value_t = 5)]
    pub seconds: u32,
    /// Seconds of heartbeat ingestion.
    #[arg(long, default_value_t = 10)]
    pub heartbeat_seconds: u32,
    /// Hosts reporting heartbeats.
    #[arg(long, default_value_t = 200)]
    pub hosts: u32,
    /// Sessions (heartbeats) per host report.
    #[arg(long, default_value_t = 250)]
    pub sessions_per_report: u32,
    /// Heartbeats per second of the paced run (projection lag at a steady rate).
    #[arg(long, default_value_t = 100_000)]
    pub heartbeat_rate: u32,
}

pub async fn run(args: SessionsArgs) -> anyhow::Result<()> {
    println!(
        "streamfleet bench sessions — {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );
    let dir = tempfile::tempdir()?;
    let nats = NatsServer::start()?;
    redemptions(&args, &nats, dir.path()).await?;
    heartbeats(&args, &nats, dir.path()).await?;
    Ok(())
}

/// Latency of `n` requests sent open-loop at `rate`/s by `send`; returns sorted latencies and
/// failures.
async fn open_loop<F, Fut>(rate: u32, n: usize, send: F) -> (Vec<Duration>, usize, Duration)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = tokio::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        tokio::time::sleep_until(start + period * i as u32).await;
        let scheduled = start + period * i as u32;
        let fut = send(i);
        set.spawn(async move {
            let ok = fut.await;
            (ok, scheduled.elapsed())
        });
    }
    let (mut lat, mut failed) = (Vec::with_capacity(n), 0);
    while let Some(r) = set.join_next().await {
        match r {
            Ok((true, d)) => lat.push(d),
            _ => failed += 1,
        }
    }
    lat.sort();
    (lat, failed, start.elapsed())
}

fn latency_row(name: &str, lat: &[Duration], failed: usize, elapsed: Duration) {
    row(
        name,
        lat.len() as f64 / elapsed.as_secs_f64(),
        "/s",
        &format!(
            "p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms{}",
            pct(lat, 0.5),
            pct(lat, 0.99),
            pct(lat, 1.0),
            if failed > 0 {
                format!("  ({failed} failed)")
            } else {
                String::new()
            }
        ),
    );
}

async fn echo(nats: &NatsServer) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use futures::StreamExt;
    let server = nats.try_client("bench").await?;
    let mut sub = server.subscribe("bench.echo").await?;
    server.flush().await?;
    Ok(tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                let _ = server.publish(reply, msg.payload).await;
            }
        }
    }))
}

async fn redemptions(
    args: &SessionsArgs,
    nats: &NatsServer,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let n = (args.rate * args.seconds) as usize;
    println!(
        "\n[redeem → SessionProvisioned: {n} redemptions at {}/s, open-loop, latency from the scheduled send]",
        args.rate
    );
    let node = Node::start(NodeConfig::new(dir.join("redeem-log"), nats.login("node"))).await?;
    nats.register_app("chess").await?;
    let key = streamfleet_workers::TokenKey::generate_hex();
    let workers_config = streamfleet_workers::WorkersConfig {
        login: nats.login("worker"),
        token_key: streamfleet_workers::TokenKey::from_hex(&key)?,
        regions: crate::fleet_args::parse_regions(crate::fleet_args::DEFAULT_REGIONS)?,
        locations: crate::fleet_args::parse_locations(crate::fleet_args::DEFAULT_LOCATIONS)?,
        heartbeat_interval: Duration::from_secs(60),
        lost_after_intervals: 3,
        launch_timeout: Duration::from_secs(600),
        front_door: None,
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn(streamfleet_workers::run(
        workers_config,
        move |_| {
            let _ = ready_tx.send(());
        },
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        },
    ));
    ready_rx.await?;
    let capacity = 256;
    let hosts = (n as u32).div_ceil(capacity) + 1;
    let ids: Vec<String> = (1..=hosts).map(|h| format!("bench-{h}")).collect();
    nats.admit_hosts(
        &ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "eu-west",
    )
    .await?;
    let agent_config = streamfleet_host_agent::AgentConfig {
        nats_url: nats.url.clone(),
        nats_ca: nats.ca(),
        host_keys: nats.host_keys(),
        launcher: None,
        tls: None,
        region: "eu-west".into(),
        app_id: "chess".into(),
        version: "1.0.0".into(),
        hosts,
        capacity,
        hardware: "bench".into(),
        address: "127.0.0.1".into(),
        heartbeat_interval: Duration::from_secs(60),
        id_prefix: "bench".into(),
        stream_policy: streamfleet_media::adapt::Policy::for_resolution(
            streamfleet_media::Resolution::HD,
            30.0,
        ),
        client_timeout: Duration::from_secs(5),
    };
    let (agent_ready_tx, agent_ready_rx) = tokio::sync::oneshot::channel();
    let (agent_stop_tx, mut agent_stop_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(streamfleet_host_agent::run(
        agent_config,
        move || {
            let _ = agent_ready_tx.send(());
        },
        async move {
            let _ = agent_stop_rx.wait_for(|s| *s).await;
        },
    ));
    agent_ready_rx.await?;

    // Tokens first (not timed): what the entitlement service would have handed out.
    let entitlement = nats.try_client("entitlement").await?;
    let mut tokens = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(256) {
        let mut set = tokio::task::JoinSet::new();
        for i in chunk {
            let client = entitlement.clone();
            let req = TokenRequest {
                app_id: "chess".into(),
                user_id: format!("u{i}").into(),
                client_ip: None,
                group_id: None,
                ttl_seconds: Some(3600),
            };
            set.spawn(async move {
                match streamfleet_bus_client::ask(&client, subjects::TOKEN_REQUEST, &req, None)
                    .await?
                {
                    TokenReply::Issued(g) => Ok::<_, anyhow::Error>(g.token),
                    TokenReply::Error(e) => anyhow::bail!("token refused: {e:?}"),
                }
            });
        }
        while let Some(t) = set.join_next().await {
            tokens.push(t??);
        }
    }

    let echo = echo(nats).await?;
    let bare = nats.try_client("bench").await?;
    let (lat, failed, elapsed) = open_loop(args.rate, n, |_| {
        let c = bare.clone();
        async move {
            c.request("bench.echo", bytes::Bytes::from_static(b"{}"))
                .await
                .is_ok()
        }
    })
    .await;
    latency_row("baseline: bare NATS request/reply", &lat, failed, elapsed);

    let tokens = Arc::new(tokens);
    let client = nats.try_client("service").await?;
    let (lat, failed, elapsed) = open_loop(args.rate, n, |i| {
        let (c, tokens) = (client.clone(), tokens.clone());
        async move {
            let req = Redemption {
                token: tokens[i].clone(),
                client_ip: "198.51.100.7".into(),
                latencies_ms: Vec::new(),
            };
            matches!(
                streamfleet_bus_client::ask(&c, subjects::REDEEM, &req, None).await,
                Ok(RedemptionReply::Provisioned(_))
            )
        }
    })
    .await;
    latency_row(
        "redeem → provisioned (3 commands, 1 agent ask)",
        &lat,
        failed,
        elapsed,
    );
    echo.abort();
    let _ = agent_stop_tx.send(true);
    let _ = stop_tx.send(true);
    let _ = agent.await;
    let _ = workers.await;
    node.stop().await;
    Ok(())
}

async fn heartbeats(
    args: &SessionsArgs,
    nats: &NatsServer,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let per = args.sessions_per_report as usize;
    println!(
        "\n[heartbeat ingestion: {} hosts, {per} sessions per report, durable, projections following; {} s]",
        args.hosts, args.heartbeat_seconds
    );
    let node = Node::start(NodeConfig::new(
        dir.join("heartbeat-log"),
        nats.login("node"),
    ))
    .await?;
    // Every host reports under its own identity, as in production: admitted, registered, and
    // one connection each.
    let ids: Vec<String> = (0..args.hosts).map(|h| format!("hb-{h}")).collect();
    nats.admit_hosts(
        &ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "eu-west",
    )
    .await?;
    let mut conns = Vec::with_capacity(ids.len());
    for id in &ids {
        let commands = nats.host_commands(id).await;
        let register = Command::RegisterHost(RegisterHost {
            host_id: id.as_str().into(),
            region: "eu-west".into(),
            app_id: "chess".into(),
            version: "1.0.0".into(),
            capacity: args.sessions_per_report.clamp(1, 1024),
            hardware: "bench".into(),
            address: "127.0.0.1".into(),
            control_port: 1,
            control_tls: false,
        });
        commands.submit(Uuid::now_v7(), &register).await?;
        conns.push(commands);
    }
    let projections = streamfleet_projections::start(streamfleet_projections::ProjectionsConfig {
        nats: nats.login("dashboard"),
        data_dir: dir.join("heartbeat-views"),
        grpc_addr: "127.0.0.1:0".parse()?,
        heartbeat_interval: Duration::from_secs(60),
        tls: None,
        token: None,
    })
    .await?;
    let projections = Arc::new(projections);
    // Each host: admitted, registered.
    projections
        .wait_for_position(2 * u64::from(args.hosts))
        .await;

    let report = |h: u32, sessions: usize| {
        Command::RecordHeartbeats(RecordHeartbeats {
            host_id: format!("hb-{h}").into(),
            sent_at: chrono::Utc::now(),
            sessions: (0..sessions)
                .map(|s| SessionBeat {
                    session_id: format!("hb-{h}-s{s}").into(),
                    stats: None,
                })
                .collect(),
        })
    };
    // Each host reports every `pace` in the paced run (every host's report once = a round).
    let round = f64::from(args.hosts) * per as f64;
    let pace = Duration::from_secs_f64(round / f64::from(args.heartbeat_rate.max(1)));
    let paced_label = format!("heartbeats paced at {}/s", args.heartbeat_rate);
    for (label, sessions, paced) in [
        ("baseline: empty reports (command round trip)", 0, false),
        ("heartbeats, as fast as they are taken", per, false),
        (paced_label.as_str(), per, true),
    ] {
        let deadline = Instant::now() + Duration::from_secs(u64::from(args.heartbeat_seconds));
        let lags = Arc::new(std::sync::Mutex::new(Vec::new()));
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        let hosts = args.hosts;
        for h in 0..args.hosts {
            let (c, projections, lags) =
                (conns[h as usize].clone(), projections.clone(), lags.clone());
            let cmd = report(h, sessions);
            set.spawn(async move {
                let mut sent = 0u64;
                // Paced hosts start spread over one interval, as real ones do.
                let mut next = tokio::time::Instant::now()
                    + pace.mul_f64(f64::from(h) / f64::from(hosts.max(1)));
                while Instant::now() < deadline {
                    if paced {
                        tokio::time::sleep_until(next).await;
                        next += pace;
                    }
                    let Ok(CommandReply::Accepted { events, .. }) =
                        c.send(Uuid::now_v7(), &cmd).await
                    else {
                        continue;
                    };
                    sent += 1;
                    if sent.is_multiple_of(16) {
                        let (at, position) = (Instant::now(), events[0].position);
                        let (projections, lags) = (projections.clone(), lags.clone());
                        tokio::spawn(async move {
                            projections.wait_for_position(position).await;
                            lags.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(at.elapsed());
                        });
                    }
                }
                sent
            });
        }
        let mut reports = 0u64;
        while let Some(r) = set.join_next().await {
            reports += r.unwrap_or(0);
        }
        let elapsed = start.elapsed();
        // Let the lag samples of the last reports land.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut lags = lags.lock().unwrap_or_else(|e| e.into_inner()).clone();
        lags.sort();
        let rate = reports as f64 * sessions.max(1) as f64 / elapsed.as_secs_f64();
        row(
            label,
            rate,
            if sessions == 0 {
                "reports/s"
            } else {
                "heartbeats/s"
            },
            &format!(
                "{:.0} reports/s; projection lag p50 {:.1} ms p99 {:.1} ms",
                reports as f64 / elapsed.as_secs_f64(),
                pct(&lags, 0.5),
                pct(&lags, 0.99)
            ),
        );
    }
    match Arc::try_unwrap(projections) {
        Ok(p) => {
            let _ = p.shutdown().await;
        }
        Err(_) => tracing::warn!("projections still referenced; not shut down"),
    }
    node.stop().await;
    Ok(())
}
