//! `streamfleet client`: what an end user's device does. Redeems a session token (or takes an
//! already provisioned session's endpoint and credentials), connects to the host over WebRTC,
//! decodes the H.264 stream with openh264 and prints what it saw: fps, resolution, bitrate and
//! latency read from the timestamps the app paints into every frame.

use std::net::IpAddr;
use std::time::Duration;
use streamfleet_bus_schemas::services::{DoorRedemption, RedemptionReply};
use streamfleet_bus_schemas::subjects;
use streamfleet_media::client::{WatchConfig, WatchError, WatchReport};

/// `streamfleet client` settings.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// A session token to redeem (over NATS, as user `client`).
    #[arg(long, required_unless_present_any = ["url", "user"])]
    pub token: Option<String>,
    /// Instead of a token: ask for one for this user first, as the entitlement service does
    /// (user `entitlement`, password SF_ENTITLEMENT_PASSWORD): a whole session from one command.
    #[arg(long, conflicts_with_all = ["token", "url"])]
    pub user: Option<String>,
    /// The app a `--user` token is for.
    #[arg(long, default_value = "chess")]
    pub app: String,
    /// The entitlement service's NATS password (with `--user`).
    #[arg(long, env = "SF_ENTITLEMENT_PASSWORD", hide_env_values = true)]
    pub entitlement_password: Option<String>,
    /// Do not watch here: print the address of the host's player page for this session
    /// (credentials included, in the URL fragment) and leave the session to a browser.
    #[arg(long)]
    pub play_url: bool,
    /// The IP a `--user` token is bound to (the entitlement service names it). The redemption
    /// node checks it against the address this client connects from.
    #[arg(long, default_value = "127.0.0.1")]
    pub client_ip: String,
    /// The redemption front door (`up` writes it to credentials.env).
    #[arg(
        long,
        env = "SF_REDEEM_URL",
        default_value = "https://127.0.0.1:8443/redeem"
    )]
    pub redeem_url: String,
    /// Send `X-Forwarded-For: IP` with the redemption: as a proxy speaking for a client at IP
    /// (believed only where the front door trusts this machine as a proxy).
    #[arg(long)]
    pub forwarded_for: Option<IpAddr>,
    /// NATS server URL.
    #[arg(long, env = "SF_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// The certificate authority to trust: NATS over TLS (`up` writes `<state>/tls/ca.pem`).
    #[arg(long, env = "SF_NATS_CA")]
    pub nats_ca: Option<std::path::PathBuf>,
    /// Instead of a token: the provisioned session's WHEP endpoint
    /// (`http://ADDRESS:PORT/sessions/ID/whep`).
    #[arg(long, conflicts_with = "token", requires = "credentials")]
    pub url: Option<String>,
    /// The provisioned session's credentials (with `--url`).
    #[arg(long, env = "SF_SESSION_CREDENTIALS", hide_env_values = true)]
    pub credentials: Option<String>,
    /// Stop after this many decoded frames (for scripts); exit 1 if fewer arrive in time.
    #[arg(long)]
    pub frames: Option<u64>,
    /// Stop after this many seconds in any case.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Send a pointer move every N frames and report input-to-photon latency.
    #[arg(long)]
    pub input_every: Option<u64>,
    /// Local IP to receive on (default: loopback for a loopback host, else every interface).
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// Leave the session running at the end (default: end it, as closing the app does).
    #[arg(long)]
    pub keep_session: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs the client; the process exit code: 0 when it saw what was asked, 1 when too few frames
/// arrived, 2 when the host or the redemption refused.
pub async fn run(args: ClientArgs) -> anyhow::Result<i32> {
    let token = match &args.user {
        Some(user) => Some(issue(&args, user).await?),
        None => args.token.clone(),
    };
    let (url, credentials) = match (&args.url, &token) {
        (Some(url), _) => (url.clone(), args.credentials.clone().unwrap_or_default()),
        (None, Some(token)) => match redeem(&args, token).await? {
            Ok(pair) => pair,
            Err(message) => {
                eprintln!("redemption refused: {message}");
                return Ok(2);
            }
        },
        (None, None) => anyhow::bail!("give --token or --url with --credentials"),
    };
    let (host, port, path) = streamfleet_media::signal::split_url(&url)?;
    let session = path
        .trim_start_matches("/sessions/")
        .trim_end_matches("/whep");
    let https = url.starts_with("https://");
    if args.play_url {
        let scheme = if https { "https" } else { "http" };
        println!("{scheme}://{host}:{port}/play#session={session}&credentials={credentials}");
        return Ok(0);
    }
    let host_ip: Option<IpAddr> = host.parse().ok();
    let bind = args.bind.unwrap_or_else(|| match host_ip {
        Some(ip) if ip.is_loopback() => ip,
        _ => IpAddr::from([0, 0, 0, 0]),
    });
    let config = WatchConfig {
        via: streamfleet_media::signal::Via {
            tls: if https { Some(authority(&args)?) } else { None },
            local: None,
        },
        url,
        credentials,
        bind_ip: bind,
        frames: args.frames,
        limit: Duration::from_secs(args.seconds.max(1)),
        input_every: args.input_every,
        delete_at_end: !args.keep_session,
        decode: true,
    };
    let mut watch = match streamfleet_media::client::start(config).await {
        Ok(w) => w,
        Err(WatchError::Refused { status, body }) => {
            eprintln!("host refused ({status}): {body}");
            return Ok(2);
        }
        Err(e) => return Err(e.into()),
    };
    let mut last_print = std::time::Instant::now();
    let mut count = 0u64;
    let frames = &mut watch.frames;
    let printer = async {
        while let Some(f) = frames.recv().await {
            count += 1;
            if !args.json && last_print.elapsed() >= Duration::from_secs(1) {
                last_print = std::time::Instant::now();
                let latency = streamfleet_media::now_us().saturating_sub(f.stamp.captured_at_us)
                    as f64
                    / 1000.0;
                eprintln!(
                    "frame {} · {}x{} · {count} decoded · latency {latency:.1} ms",
                    f.stamp.frame, f.width, f.height
                );
            }
        }
    };
    printer.await;
    let report = match watch.finish().await {
        Ok(r) => r,
        Err(WatchError::NoFrames(limit)) => {
            eprintln!("no frame decoded within {limit:?}");
            return Ok(1);
        }
        Err(e) => return Err(e.into()),
    };
    print_report(&report, args.json);
    if args.frames.is_some_and(|n| report.frames < n) {
        eprintln!(
            "only {} of {} frames decoded",
            report.frames,
            args.frames.unwrap_or(0)
        );
        return Ok(1);
    }
    Ok(0)
}

fn print_report(r: &WatchReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    println!(
        "frames {} ({}..{}) · {}x{} · {:.1} fps · {:.0} kbit/s · latency p50 {:.1} ms p95 {:.1} ms{} · {} unreadable · {} out of order · {} PLI",
        r.frames,
        r.first_frame.unwrap_or(0),
        r.last_frame.unwrap_or(0),
        r.width,
        r.height,
        r.fps,
        r.bitrate_kbps,
        r.latency_p50_ms,
        r.latency_p95_ms,
        r.input_p50_ms
            .map(|v| format!(" · input to photon p50 {v:.1} ms"))
            .unwrap_or_default(),
        r.unreadable,
        r.out_of_order,
        r.plis,
    );
}

/// Asks the token service for a token for `user`, as the entitlement service does.
async fn issue(args: &ClientArgs, user: &str) -> anyhow::Result<String> {
    use streamfleet_bus_schemas::services::{TokenReply, TokenRequest};
    let password = args.entitlement_password.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "--user needs the entitlement service's NATS password (SF_ENTITLEMENT_PASSWORD)"
        )
    })?;
    let login =
        streamfleet_bus_client::NatsLogin::new(args.nats_url.clone(), "entitlement", password)
            .with_ca(args.nats_ca.clone());
    let client = streamfleet_bus_client::connect(&login).await?;
    let req = TokenRequest {
        app_id: args.app.clone().into(),
        user_id: user.into(),
        client_ip: Some(args.client_ip.clone()),
        group_id: None,
        ttl_seconds: None,
    };
    match streamfleet_bus_client::ask(&client, subjects::TOKEN_REQUEST, &req, None).await? {
        TokenReply::Issued(grant) => Ok(grant.token.expose().to_string()),
        TokenReply::Error(e) => anyhow::bail!("token refused: {} ({})", e.message, e.code),
    }
}

/// The installation's authority, which the front door's and the hosts' certificates are issued
/// by (the same `ca.pem` NATS's is).
fn authority(
    args: &ClientArgs,
) -> anyhow::Result<std::sync::Arc<streamfleet_tls::rustls::ClientConfig>> {
    match &args.nats_ca {
        Some(ca) => Ok(streamfleet_tls::client_config(ca)?),
        None => anyhow::bail!(
            "an HTTPS endpoint needs the installation's authority (--nats-ca or SF_NATS_CA)"
        ),
    }
}

/// Redeems the token at the front door (over HTTPS, trusting the installation's authority, from
/// `--bind` when given): `Ok(Err(reason))` when the redemption node refuses it.
async fn redeem(
    args: &ClientArgs,
    token: &str,
) -> anyhow::Result<Result<(String, String), String>> {
    use streamfleet_media::signal;
    let (host, port, path) = signal::split_url(&args.redeem_url)?;
    let via = signal::Via {
        tls: if args.redeem_url.starts_with("https://") {
            Some(authority(args)?)
        } else {
            None
        },
        local: args.bind,
    };
    let body = serde_json::to_vec(&DoorRedemption {
        token: token.to_string().into(),
        latencies_ms: vec![],
    })?;
    let forwarded = args.forwarded_for.map(|ip| ip.to_string());
    let mut headers = Vec::new();
    if let Some(ip) = &forwarded {
        headers.push(("x-forwarded-for", ip.as_str()));
    }
    let reply = signal::request_via(
        &via,
        &host,
        port,
        "POST",
        &path,
        &headers,
        Some(("application/json", &body)),
    )
    .await?;
    let answer: RedemptionReply = serde_json::from_str(&reply.body).map_err(|e| {
        anyhow::anyhow!(
            "the front door answered {} and no redemption: {e}",
            reply.status
        )
    })?;
    Ok(match answer {
        RedemptionReply::Provisioned(s) => Ok((s.whep_url(), s.credentials.expose().to_string())),
        RedemptionReply::Error(e) => Err(format!("{} ({})", e.message, e.code)),
    })
}
