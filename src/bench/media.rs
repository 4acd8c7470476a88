//! `streamfleet bench media`: the media plane's figures, each beside a baseline from the same run.
//!
//! - encode: render + encode frames on one core at 720p and 1080p, beside the `openh264` crate's
//!   own encoder with its defaults on the same pictures;
//! - glass to glass: capture → decode latency over WebRTC on loopback, read from the stamps, beside
//!   encode + decode of the same frames with no network;
//! - concurrency: how many 720p30 streams this host keeps at ≥ 28 fps (receivers count frames
//!   without decoding, so the host's CPU is what is measured);
//! - settle: after a link's cap drops (tc tbf in a network namespace), how long until the sent
//!   bitrate stays under it, beside the receiver-report interval the controller acts on.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use streamfleet_media::client::{WatchConfig, watch};
use streamfleet_media::stream::{Stream, StreamConfig, StreamReport};
use streamfleet_media::{App, Encoder, EncoderSettings, Resolution, Stamp};
use tokio::net::TcpListener;

#[derive(clap::Args, Debug, Clone)]
pub struct MediaArgs {
    /// Frames per encode figure.
    #[arg(long, default_value_t = 300)]
    pub frames: u32,
    /// Seconds per latency run.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Most concurrent streams tried.
    #[arg(long, default_value_t = 16)]
    pub max_streams: usize,
    /// Run only these parts (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<MediaPart>,
}

/// The parts of `bench media`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum MediaPart {
    /// Encode fps on one core.
    Encode,
    /// Glass-to-glass latency on loopback.
    Latency,
    /// Concurrent 720p30 streams.
    Concurrency,
    /// Bitrate settling after a cap drop.
    Settle,
}

pub async fn run(args: MediaArgs) -> anyhow::Result<()> {
    println!(
        "streamfleet bench media — {} cores, {}; openh264 {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        if which("nasm") {
            "with nasm (assembly)"
        } else {
            "WITHOUT nasm (C only)"
        },
    );
    let run = |p: MediaPart| args.only.is_empty() || args.only.contains(&p);
    if run(MediaPart::Encode) {
        println!("\n[encode, one core]");
        for (r, bps) in [
            (Resolution::HD, 2_500_000),
            (Resolution::FULL_HD, 5_600_000),
        ] {
            encode(r, bps, args.frames)?;
        }
    }
    if run(MediaPart::Latency) {
        println!("\n[glass to glass, loopback]");
        latency(args.seconds).await?;
    }
    if run(MediaPart::Concurrency) {
        println!("\n[concurrent 720p30 streams on this host]");
        concurrency(args.max_streams).await?;
    }
    if run(MediaPart::Settle) {
        println!("\n[bitrate after the cap drops]");
        settle().await?;
    }
    Ok(())
}

fn which(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn encode(r: Resolution, bps: u32, frames: u32) -> anyhow::Result<()> {
    let mut app = App::new();
    let pictures: Vec<_> = (0..frames).map(|n| app.render(r, u64::from(n))).collect();
    let t = Instant::now();
    let mut app = App::new();
    for n in 0..frames {
        std::hint::black_box(app.render(r, u64::from(n)));
    }
    let render = f64::from(frames) / t.elapsed().as_secs_f64();
    let mut ours = Encoder::new(EncoderSettings {
        bitrate_bps: bps,
        fps: 30.0,
        resolution: r,
    })?;
    let t = Instant::now();
    let mut bytes = 0usize;
    for p in &pictures {
        bytes += ours.encode(p)?.map_or(0, |f| f.data.len());
    }
    let secs = t.elapsed().as_secs_f64();
    let fps = f64::from(frames) / secs;
    let mut base = openh264::encoder::Encoder::new()?;
    let t = Instant::now();
    for p in &pictures {
        let yuv = openh264::formats::YUVBuffer::from_vec(
            [p.y.as_slice(), &p.u, &p.v].concat(),
            p.width,
            p.height,
        );
        std::hint::black_box(base.encode(&yuv)?.to_vec());
    }
    let base_fps = f64::from(frames) / t.elapsed().as_secs_f64();
    super::row(
        &format!("encode {r} at {} kbit/s (ours)", bps / 1000),
        fps,
        "fps",
        &format!(
            "{:.1}x real time at 30 fps; {:.0} kbit/s out",
            fps / 30.0,
            bytes as f64 * 8.0 / (f64::from(frames) / 30.0) / 1000.0
        ),
    );
    super::row(
        "  baseline: openh264 crate, default settings",
        base_fps,
        "fps",
        "",
    );
    super::row("  the app's rendering alone", render, "fps", "");
    Ok(())
}

/// A stand-in for the host's control port: answers each WHEP POST with a new stream.
async fn whep_server(
    ip: IpAddr,
    config: StreamConfig,
) -> anyhow::Result<(u16, tokio::sync::mpsc::UnboundedReceiver<Arc<Stream>>)> {
    let listener = TcpListener::bind((ip, 0)).await?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let offer = move |body: String| {
        let (config, tx) = (config.clone(), tx.clone());
        async move {
            use axum::http::{StatusCode, header};
            use axum::response::IntoResponse;
            match Stream::answer(&body, &config).await {
                Ok((stream, answer)) => {
                    let _ = tx.send(Arc::new(stream));
                    (
                        StatusCode::CREATED,
                        [(header::CONTENT_TYPE, "application/sdp")],
                        answer,
                    )
                        .into_response()
                }
                Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
            }
        }
    };
    let app = axum::Router::new().route("/sessions/{id}/whep", axum::routing::post(offer));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "bench WHEP server stopped");
        }
    });
    Ok((port, rx))
}

fn watch_config(ip: IpAddr, port: u16, seconds: u64, decode: bool) -> WatchConfig {
    WatchConfig {
        url: format!("http://{ip}:{port}/sessions/bench/whep"),
        via: Default::default(),
        credentials: "bench".into(),
        bind_ip: ip,
        frames: None,
        limit: Duration::from_secs(seconds),
        input_every: decode.then_some(10),
        delete_at_end: false,
        decode,
    }
}

async fn latency(seconds: u64) -> anyhow::Result<()> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // Baseline: the same frames encoded and decoded with no network in between.
    let mut encoder = Encoder::new(EncoderSettings {
        bitrate_bps: 2_500_000,
        fps: 30.0,
        resolution: Resolution::HD,
    })?;
    let mut decoder = openh264::decoder::Decoder::new()?;
    let mut app = App::new();
    let mut base = vec![];
    for _ in 0..150 {
        let p = app.render(Resolution::HD, streamfleet_media::now_us());
        let t = Instant::now();
        if let Some(f) = encoder.encode(&p)?
            && let Some(yuv) = decoder.decode(&f.data)?
        {
            use openh264::formats::YUVSource;
            let (w, h) = yuv.dimensions();
            anyhow::ensure!(
                Stamp::read(yuv.y(), yuv.strides().0, w, h).is_some(),
                "stamp lost"
            );
            base.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    base.sort_by(f64::total_cmp);
    let (port, mut streams) = whep_server(ip, StreamConfig::new(ip)).await?;
    let report = watch(watch_config(ip, port, seconds, true)).await?;
    drop(streams.recv().await);
    println!(
        "  {:<52} {:>9.1} ms p50 {:>7.1} ms p95   ({} frames, {:.1} fps, {}x{})",
        "capture → decode over WebRTC (stamps)",
        report.latency_p50_ms,
        report.latency_p95_ms,
        report.frames,
        report.fps,
        report.width,
        report.height
    );
    println!(
        "  {:<52} {:>9.1} ms p50 {:>7.1} ms p95",
        "  baseline: encode + decode, no network",
        base[base.len() / 2],
        base[base.len() * 95 / 100]
    );
    if let Some(input) = report.input_p50_ms {
        println!(
            "  {:<52} {:>9.1} ms p50",
            "input → photon (data channel → frame showing it)", input
        );
    }
    Ok(())
}

async fn concurrency(max: usize) -> anyhow::Result<()> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut sustained = 0;
    for k in 1..=max {
        let (port, mut rx) = whep_server(ip, StreamConfig::new(ip)).await?;
        let watchers: Vec<_> = (0..k)
            .map(|_| tokio::spawn(watch(watch_config(ip, port, 12, false))))
            .collect();
        let mut streams = vec![];
        for _ in 0..k {
            if let Some(s) = rx.recv().await {
                streams.push(s);
            }
        }
        // Let them run 8 s, then read what each host stream sends.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let reports: Vec<StreamReport> = streams.iter().map(|s| s.report()).collect();
        for w in watchers {
            let _ = w.await;
        }
        let worst = reports.iter().map(|r| r.fps).min().unwrap_or(0);
        let dropped: u64 = reports.iter().map(|r| r.dropped).sum();
        println!(
            "  {k} stream(s): slowest sends {worst} fps, {dropped} frames dropped at the source"
        );
        if worst >= 28 {
            sustained = k;
        } else {
            break;
        }
    }
    super::row(
        "720p30 streams sustained (every one ≥ 28 fps)",
        sustained as f64,
        "streams",
        "",
    );
    Ok(())
}

async fn settle() -> anyhow::Result<()> {
    let link = match streamfleet_testkit::Link::create('b') {
        Ok(link) => link,
        Err(e) => {
            println!("  skipped: cannot create a network namespace here ({e})");
            return Ok(());
        }
    };
    link.cap(20_000)?;
    let host: IpAddr = link.host_ip.parse()?;
    let (port, mut rx) = whep_server(host, StreamConfig::new(host)).await?;
    let exe = std::env::current_exe()?;
    let mut client = tokio::process::Command::from(link.exec(&exe))
        .args([
            "client",
            "--url",
            &format!("http://{host}:{port}/sessions/bench/whep"),
            "--credentials",
            "bench",
            "--bind",
            &link.client_ip,
            "--seconds",
            "40",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stream = match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
        Ok(Some(s)) => s,
        _ => {
            let _ = client.start_kill();
            let out = client.wait_with_output().await?;
            anyhow::bail!(
                "the client in the namespace did not connect: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    // Up to speed uncapped, then the cap drops to 800 kbit/s.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = stream.report().bitrate_kbps;
    const CAP: u32 = 800;
    link.cap(CAP)?;
    let dropped_at = Instant::now();
    let mut under_since: Option<Instant> = None;
    let settled = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = stream.report();
        // Two-second window: under the cap once the window holds nothing sent above it.
        if r.bitrate_kbps <= CAP {
            let since = *under_since.get_or_insert(Instant::now());
            if since.elapsed() >= Duration::from_secs(3) {
                break Some(since.duration_since(dropped_at));
            }
        } else {
            under_since = None;
        }
        if dropped_at.elapsed() > Duration::from_secs(25) {
            break None;
        }
    };
    let _ = client.start_kill();
    stream.close();
    drop(stream);
    drop(link);
    match settled {
        Some(t) => println!(
            "  {:<52} {:>9.1} s     (from {before} kbit/s to under {CAP})",
            "sent bitrate under the new cap after",
            t.as_secs_f64()
        ),
        None => println!("  sent bitrate did not settle under {CAP} kbit/s within 25 s"),
    }
    println!(
        "  {:<52} {:>9.1} s",
        "  baseline: receiver-report interval (acts once per report)", 1.0
    );
    Ok(())
}
