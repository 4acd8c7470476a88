//! Command-line settings shared by `workers`, `host-agent` and `up`: regions, IP locations,
//! intervals, logins.

use anyhow::Context as _;
use std::time::Duration;
use streamfleet_domain::placement::{IpLocation, Region};

/// Three regions on three continents, used when none are given.
pub const DEFAULT_REGIONS: &str = "eu-west:53.35:-6.26,us-east:38.90:-77.40,ap-south:19.07:72.88";
/// Where the documentation address ranges are, for the demo and the tests.
pub const DEFAULT_LOCATIONS: &str = "198.51.100.0/24=Paris:48.86:2.35,203.0.113.0/24=Singapore:1.35:103.82,192.0.2.0/24=New York:40.71:-74.01";

/// `name:lat:lon,…`
pub fn parse_regions(text: &str) -> anyhow::Result<Vec<Region>> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let parts: Vec<&str> = item.trim().split(':').collect();
            let [name, lat, lon] = parts[..] else {
                anyhow::bail!("region `{item}` is not name:lat:lon");
            };
            Ok(Region {
                name: name.into(),
                lat: lat
                    .parse()
                    .with_context(|| format!("latitude in `{item}`"))?,
                lon: lon
                    .parse()
                    .with_context(|| format!("longitude in `{item}`"))?,
            })
        })
        .collect()
}

/// The geography of `regions` (`name:lat:lon,…`) and `locations` (`cidr=label:lat:lon,…`).
pub fn geography(
    regions: &str,
    locations: &str,
) -> anyhow::Result<streamfleet_domain::instance::Geography> {
    Ok(streamfleet_domain::instance::Geography {
        regions: parse_regions(regions)?,
        locations: parse_locations(locations)?,
    })
}

/// `cidr=label:lat:lon,…`
pub fn parse_locations(text: &str) -> anyhow::Result<Vec<IpLocation>> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let (cidr, place) = item
                .trim()
                .split_once('=')
                .with_context(|| format!("location `{item}` is not cidr=label:lat:lon"))?;
            let parts: Vec<&str> = place.split(':').collect();
            let [label, lat, lon] = parts[..] else {
                anyhow::bail!("location `{item}` is not cidr=label:lat:lon");
            };
            Ok(IpLocation::parse(
                cidr,
                label,
                lat.parse()
                    .with_context(|| format!("latitude in `{item}`"))?,
                lon.parse()
                    .with_context(|| format!("longitude in `{item}`"))?,
            )?)
        })
        .collect()
}

/// The workers' settings.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkersArgs {
    /// NATS server URL.
    #[arg(long, env = "SF_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// The certificate authority to trust: NATS over TLS (`up` writes `<state>/tls/ca.pem`).
    #[arg(long, env = "SF_NATS_CA")]
    pub nats_ca: Option<std::path::PathBuf>,
    /// The workers' NATS password (user `worker`).
    #[arg(long, env = "SF_WORKER_PASSWORD", hide_env_values = true)]
    pub nats_password: String,
    /// The token signing key, 64 hex digits.
    #[arg(long, env = "SF_TOKEN_KEY", hide_env_values = true)]
    pub token_key: String,
    /// Regions, `name:lat:lon,…`.
    #[arg(long, default_value = DEFAULT_REGIONS)]
    pub regions: String,
    /// Client IP locations, `cidr=label:lat:lon,…`.
    #[arg(long, default_value = DEFAULT_LOCATIONS)]
    pub ip_locations: String,
    /// Hosts' heartbeat interval, ms.
    #[arg(long, default_value_t = 60_000)]
    pub heartbeat_interval_ms: u64,
    /// Intervals without a heartbeat before a session or host is lost.
    #[arg(long, default_value_t = 3)]
    pub lost_after_intervals: u32,
    /// How long a requested host may take to register, ms.
    #[arg(long, default_value_t = 120_000)]
    pub launch_timeout_ms: u64,
    /// Where the redemption front door (`POST /redeem`) listens; none: no front door.
    #[arg(long)]
    pub front_door: Option<std::net::SocketAddr>,
    /// The front door's certificate (PEM); with `--tls-key` it speaks HTTPS, else plain HTTP.
    #[arg(long, env = "SF_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The front door's private key (PEM).
    #[arg(long, env = "SF_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// A proxy whose `X-Forwarded-For` the front door believes (repeatable).
    #[arg(long)]
    pub trusted_proxy: Vec<std::net::IpAddr>,
}

impl WorkersArgs {
    /// The workers' configuration.
    pub fn config(&self) -> anyhow::Result<streamfleet_workers::WorkersConfig> {
        Ok(streamfleet_workers::WorkersConfig {
            login: streamfleet_bus_client::NatsLogin::new(
                self.nats_url.clone(),
                "worker",
                self.nats_password.clone(),
            )
            .with_ca(self.nats_ca.clone()),
            token_key: streamfleet_workers::TokenKey::from_hex(&self.token_key)?,
            regions: parse_regions(&self.regions)?,
            locations: parse_locations(&self.ip_locations)?,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms.max(10)),
            lost_after_intervals: self.lost_after_intervals,
            launch_timeout: Duration::from_millis(self.launch_timeout_ms),
            front_door: match self.front_door {
                None => None,
                Some(listen) => Some(streamfleet_workers::FrontDoorConfig {
                    listen,
                    tls: match (&self.tls_cert, &self.tls_key) {
                        (Some(cert), Some(key)) => Some(streamfleet_tls::server_config(cert, key)?),
                        _ => None,
                    },
                    trusted_proxies: self.trusted_proxy.clone(),
                }),
            },
        })
    }
}

/// A host agent's settings.
#[derive(clap::Args, Debug, Clone)]
pub struct AgentArgs {
    /// NATS server URL.
    #[arg(long, env = "SF_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// The certificate authority to trust: NATS over TLS (`up` writes `<state>/tls/ca.pem`).
    #[arg(long, env = "SF_NATS_CA")]
    pub nats_ca: Option<std::path::PathBuf>,
    /// The folder of its hosts' keys (`<host id>.nk`, written by `streamfleet host admit`):
    /// each host logs in to NATS with its own.
    #[arg(long, env = "SF_HOST_KEYS")]
    pub host_keys: std::path::PathBuf,
    /// The hosts' control-port certificate (PEM); with `--tls-key` they speak HTTPS only.
    #[arg(long, env = "SF_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "SF_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// The launchers' NATS password (user `launcher`); needed unless `--no-launcher`.
    #[arg(long, env = "SF_LAUNCHER_PASSWORD", hide_env_values = true)]
    pub launcher_password: Option<String>,
    /// The region of its hosts.
    #[arg(long)]
    pub region: String,
    /// The app its first hosts run.
    #[arg(long, default_value = "chess")]
    pub app: String,
    /// The app's version.
    #[arg(long, default_value = "1.0.0")]
    pub version: String,
    /// Hosts to start with.
    #[arg(long, default_value_t = 2)]
    pub hosts: u32,
    /// Sessions per host.
    #[arg(long, default_value_t = 4)]
    pub capacity: u32,
    /// Hardware description.
    #[arg(long, default_value = "4 vCPU, 1 GPU (simulated)")]
    pub hardware: String,
    /// IP the hosts' control ports listen on and clients connect to.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
    /// Heartbeat interval, ms.
    #[arg(long, default_value_t = 60_000)]
    pub heartbeat_interval_ms: u64,
    /// Prefix of its first hosts' ids, `<prefix>-1`, `<prefix>-2`, … (default: the region);
    /// each must have been admitted, its key in `--host-keys`.
    #[arg(long)]
    pub id_prefix: Option<String>,
    /// Do not launch hosts the control plane requests.
    #[arg(long)]
    pub no_launcher: bool,
    /// Resolution the sessions' app renders and streams at.
    #[arg(long, default_value = "1280x720")]
    pub stream_resolution: streamfleet_media::Resolution,
    /// Frames per second streamed.
    #[arg(long, default_value_t = 30)]
    pub stream_fps: u32,
    /// Most a stream is sent at, kbit/s (default: 2,500 at 720p, scaled by pixels).
    #[arg(long)]
    pub stream_max_kbps: Option<u32>,
    /// Bitrate a stream starts at, kbit/s, before the congestion controller's estimate.
    #[arg(long)]
    pub stream_start_kbps: Option<u32>,
    /// How long a stream's client may be silent before its session ends (`disconnected`), ms.
    #[arg(long, default_value_t = 5000)]
    pub client_timeout_ms: u64,
}

impl AgentArgs {
    /// The agent's configuration.
    pub fn config(&self) -> anyhow::Result<streamfleet_host_agent::AgentConfig> {
        let prefix = self
            .id_prefix
            .clone()
            .unwrap_or_else(|| self.region.clone());
        let launcher = match (self.no_launcher, &self.launcher_password) {
            (true, _) => None,
            (false, Some(password)) => Some(
                streamfleet_bus_client::NatsLogin::new(
                    self.nats_url.clone(),
                    "launcher",
                    password.clone(),
                )
                .with_ca(self.nats_ca.clone()),
            ),
            (false, None) => anyhow::bail!(
                "a launcher needs SF_LAUNCHER_PASSWORD (or --launcher-password); or pass --no-launcher"
            ),
        };
        Ok(streamfleet_host_agent::AgentConfig {
            nats_url: self.nats_url.clone(),
            nats_ca: self.nats_ca.clone(),
            host_keys: self.host_keys.clone(),
            launcher,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(streamfleet_tls::server_config(cert, key)?),
                _ => None,
            },
            region: self.region.clone().into(),
            app_id: self.app.clone().into(),
            version: self.version.clone(),
            hosts: self.hosts,
            capacity: self.capacity,
            hardware: self.hardware.clone(),
            address: self.address.clone(),
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms.max(10)),
            id_prefix: prefix,
            stream_policy: {
                let mut p = streamfleet_media::adapt::Policy::for_resolution(
                    self.stream_resolution,
                    self.stream_fps as f32,
                );
                if let Some(max) = self.stream_max_kbps {
                    p.max_bps = max.saturating_mul(1000).max(p.min_bps);
                    p.start_bps = p.start_bps.min(p.max_bps);
                }
                if let Some(start) = self.stream_start_kbps {
                    p.start_bps = start.saturating_mul(1000).clamp(p.min_bps, p.max_bps);
                }
                p
            },
            client_timeout: Duration::from_millis(self.client_timeout_ms.max(1000)),
        })
    }
}
