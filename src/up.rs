//! `streamfleet up`: the whole system on one machine until Ctrl-C: nats-server with the
//! rendered configuration (`<state>/nats.conf`), each host admitted with its own key,
//! the node, the workers, the projections with their gRPC API, host agents for three regions,
//! and (unless `--no-demo`) a synthetic entitlement service and clients keeping sessions coming
//! and going. It prints where to look, then a one-line live summary every few seconds.

use crate::fleet_args;
use anyhow::Context as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use streamfleet_bus_client::{CommandClient, NatsConfig, NatsLogin};
use streamfleet_bus_schemas::ids::{HostId, RegionId};
use streamfleet_bus_schemas::payloads::{HostRequirements, RegisterApp, SetBufferTarget};
use streamfleet_bus_schemas::principal::Role;
use streamfleet_bus_schemas::{Command, CommandReply, RejectionReason};
use streamfleet_node::{Node, NodeConfig};
use streamfleet_workers::{TokenKey, WorkersConfig};
use uuid::Uuid;

mod demo;
mod ownership;
mod summary;
mod supervisor;

/// The app the demo streams.
const APP: &str = "chess";
/// Host identities admitted per region: the agent's two first hosts and spares to launch.
const HOST_IDENTITIES_PER_REGION: u32 = 8;

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where state lives: credentials.env, the JetStream store, the event log.
    #[arg(long, default_value = ".streamfleet")]
    state_dir: PathBuf,
    /// NATS client port.
    #[arg(long, default_value_t = 4222)]
    port: u16,
    /// Where the redemption front door (HTTPS `POST /redeem`) listens.
    #[arg(long, default_value = "127.0.0.1:8443")]
    front_door: std::net::SocketAddr,
    /// A proxy whose `X-Forwarded-For` the front door believes (repeatable; none by default:
    /// the connection's own address is the client's).
    #[arg(long)]
    trusted_proxy: Vec<std::net::IpAddr>,
    /// Plaintext NATS. By default NATS speaks TLS only: `up` makes a certificate authority and
    /// a server certificate in `<state-dir>/tls/` and every client verifies against `ca.pem`.
    #[arg(long)]
    no_tls: bool,
    /// Where the projections' gRPC API listens.
    #[arg(long, default_value = "127.0.0.1:50051")]
    grpc: std::net::SocketAddr,
    /// Hosts' heartbeat interval, ms (60 s in production; short so the demo moves).
    #[arg(long, default_value_t = 2_000)]
    heartbeat_interval_ms: u64,
    /// Start no synthetic entitlement service and clients.
    #[arg(long)]
    no_demo: bool,
    /// Seconds between live summaries.
    #[arg(long, default_value_t = 5)]
    summary_every: u64,
    /// What goes to the log file `<state-dir>/streamfleet.log` (an `EnvFilter`: `info`, `debug`,
    /// `streamfleet_workers=debug`, …; `RUST_LOG` wins when set). The terminal shows the summary,
    /// warnings and errors only.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Compute hosts running QEMU virtual machines (each `streamfleet compute-host`; needs
    /// root for its network namespace). Migration needs two that match.
    #[arg(long, default_value_t = 2)]
    qemu_hosts: u32,
    /// Compute hosts running crun containers.
    #[arg(long, default_value_t = 1)]
    crun_hosts: u32,
    /// Also run a small MooseFS file system (`demo`: a master and two chunk servers on crun
    /// hosts, at least three of them) whose nodes heal; see `streamfleet dfs status`.
    #[arg(long)]
    dfs: bool,
    /// The compute hosts' region (default: the first region).
    #[arg(long)]
    compute_region: Option<String>,
    /// Where the compute hosts find the catalogue's images (default `<state-dir>/images`, where
    /// `./up.sh` builds them with scripts/guest-image.sh).
    #[arg(long)]
    images: Option<PathBuf>,
    /// The compute hosts' fabric namespace: instances are reached from it
    /// (`ip netns exec sf-fabric busybox nc <address> 7000`).
    #[arg(long, default_value = "sf-fabric")]
    fabric: String,
    /// QEMU's accelerator on the compute hosts: `auto` uses KVM only when a probe guest boots
    /// with it.
    #[arg(long, default_value = "auto", value_parser = ["auto", "tcg", "kvm"])]
    accel: String,
}

impl UpArgs {
    /// Where everything `up` and its children log goes.
    pub fn log_file(&self) -> PathBuf {
        self.state_dir.join("streamfleet.log")
    }
}

pub use streamfleet_bus_client::password_variable as password_var;

/// A random password that nats-server reads as a string: nats.conf expands `$VAR` as a config
/// token, so a value that starts with a digit or a dot would be read as a number (or refused).
pub fn new_password() -> String {
    let tail: String = (0..24)
        .map(|_| char::from(b"abcdefghijkmnpqrstuvwxyz23456789"[rand::random_range(0..32)]))
        .collect();
    format!("sf{tail}")
}

/// Reads `credentials.env`, creating it with fresh random passwords (and a token signing key)
/// on first use, and adding any a newer version needs.
fn credentials(state_dir: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let path = state_dir.join("credentials.env");
    let mut text = if path.exists() {
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?
    } else {
        String::from(
            "# Generated by `streamfleet up`: one NATS password per role of nats.conf, and the\n\
             # key that signs session tokens. Keep it secret.\n",
        )
    };
    let before = text.len();
    for role in Role::ALL {
        let var = password_var(role);
        if !text.lines().any(|l| l.starts_with(&format!("{var}="))) {
            text.push_str(&format!("{var}={}\n", new_password()));
        }
    }
    if !text.lines().any(|l| l.starts_with("SF_VIEWS_TOKEN=")) {
        text.push_str(&format!("SF_VIEWS_TOKEN={}\n", new_password()));
    }
    if !text.lines().any(|l| l.starts_with("SF_TOKEN_KEY=")) {
        text.push_str(&format!(
            "SF_TOKEN_KEY={}\n",
            streamfleet_workers::TokenKey::generate_hex()
        ));
    }
    if text.len() != before {
        write_private(&path, &text)?;
    } else {
        restrict(&path, 0o600)?;
    }
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// Keeps a setting of this run in `credentials.env` (`SF_NATS_CA`: the installation's authority
/// when NATS speaks TLS; `SF_REDEEM_URL`: the front door), so that a shell that sources the file
/// (`streamfleet client`, `replay`, `host admit`) finds them; `None` removes it.
fn record_credential(
    state_dir: &std::path::Path,
    name: &str,
    value: Option<&str>,
) -> anyhow::Result<()> {
    let path = state_dir.join("credentials.env");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let prefix = format!("{name}=");
    let mut kept: String = text
        .lines()
        .filter(|l| !l.starts_with(&prefix))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Some(value) = value {
        kept.push_str(&format!("{prefix}{value}\n"));
    }
    if kept != text {
        write_private(&path, &kept)?;
    }
    Ok(())
}

/// Makes the state folder readable by its owner only (0700), from its creation on.
fn private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    restrict(dir, 0o700)
}

/// Writes `text` to a file that is 0600 from the moment it exists (no window in which another
/// user could open it), replacing what was there.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    restrict(path, 0o600)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Sets `path`'s mode (an older state folder may have been made with looser ones).
fn restrict(path: &std::path::Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("restricting {} to {mode:o}", path.display()))
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    private_dir(&args.state_dir)?;
    let owner = std::sync::Arc::new(ownership::Ownership::take(&args.state_dir)?);
    let creds = credentials(&args.state_dir)?;
    // Absolute: nats.conf expands $SF_JETSTREAM_DIR as a token, and `.streamfleet/…` would read
    // as a malformed number.
    let state = std::fs::canonicalize(&args.state_dir)?;
    let js_dir = state.join("jetstream");
    let mut tls = None;
    let mut ca = None;
    if !args.no_tls {
        let files =
            streamfleet_tls::TlsFiles::ensure(&state.join("tls"), &["127.0.0.1", "localhost"])?;
        tls = Some(streamfleet_bus_schemas::nats_conf::ServerTls {
            cert: files.cert,
            key: files.key,
        });
        ca = Some(files.ca);
    }
    let nats_config = NatsConfig::new(&args.state_dir).with_tls(tls.clone());
    record_credential(
        &args.state_dir,
        "SF_NATS_CA",
        ca.as_ref().map(|ca| ca.display().to_string()).as_deref(),
    )?;
    let nats_conf = nats_config.write()?;
    let nats_env: Vec<(String, String)> = creds
        .iter()
        .filter(|(k, _)| k.starts_with("SF_") && k.ends_with("_PASSWORD"))
        .cloned()
        .collect();
    let (port, pid_file) = (args.port, args.state_dir.join("nats.pid"));
    let nats = supervisor::Supervised::start(
        supervisor::Spec {
            name: "nats-server".into(),
            command: Box::new(move || {
                let mut command = tokio::process::Command::new("nats-server");
                command
                    .arg("-c")
                    .arg(&nats_conf)
                    .arg("-p")
                    .arg(port.to_string())
                    // The passwords nats.conf reads, and nothing else: the token signing key
                    // stays out of nats-server's environment.
                    .env_clear()
                    .envs(std::env::vars().filter(|(k, _)| !k.starts_with("SF_")))
                    .envs(nats_env.iter().cloned())
                    .env("SF_JETSTREAM_DIR", &js_dir);
                Ok(command)
            }),
            ready: supervisor::Ready::StderrContains("Server is ready"),
            // For `streamfleet host admit`, which reloads this server after admitting a host.
            started: Box::new(move |pid| {
                if let Err(error) = std::fs::write(&pid_file, pid.to_string()) {
                    tracing::warn!(%error, "nats.pid not written");
                }
            }),
        },
        owner.clone(),
    )
    .await
    .context("starting nats-server (is it installed? ./up.sh installs it)")?;

    let secret = |var: &str| {
        creds
            .iter()
            .find(|(k, _)| k == var)
            .map(|(_, v)| v.clone())
            .with_context(|| format!("{var} in credentials.env"))
    };
    let url = format!("nats://127.0.0.1:{}", args.port);
    let mut node_config = NodeConfig::new(
        args.state_dir.join("data"),
        NatsLogin::new(url.clone(), "node", secret(&password_var(Role::Node))?).with_ca(ca.clone()),
    );
    node_config.geography =
        fleet_args::geography(fleet_args::DEFAULT_REGIONS, fleet_args::DEFAULT_LOCATIONS)?;
    let node = Node::start(node_config).await?;

    let heartbeat = Duration::from_millis(args.heartbeat_interval_ms.max(100));
    let workers_config = WorkersConfig {
        login: NatsLogin::new(url.clone(), "worker", secret(&password_var(Role::Worker))?)
            .with_ca(ca.clone()),
        token_key: TokenKey::from_hex(&secret("SF_TOKEN_KEY")?)?,
        regions: fleet_args::parse_regions(fleet_args::DEFAULT_REGIONS)?,
        locations: fleet_args::parse_locations(fleet_args::DEFAULT_LOCATIONS)?,
        heartbeat_interval: heartbeat,
        lost_after_intervals: 3,
        launch_timeout: Duration::from_secs(30),
        // Clients redeem here, over HTTPS: the binding is checked against their real address.
        front_door: Some(streamfleet_workers::FrontDoorConfig {
            listen: args.front_door,
            tls: match &tls {
                Some(tls) => Some(streamfleet_tls::server_config(&tls.cert, &tls.key)?),
                None => None,
            },
            trusted_proxies: args.trusted_proxy.clone(),
        }),
    };
    let regions: Vec<RegionId> = workers_config
        .regions
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    // The node watcher of the file systems' nodes, with the workers' login and its defaults.
    let node_watch = tokio::spawn({
        let login = workers_config.login.clone();
        let stop = stopped(stop_rx.clone());
        async move {
            let config = streamfleet_workers::NodeWatchConfig::default();
            if let Err(error) = streamfleet_workers::node_watch::run(login, config, stop).await {
                tracing::error!(%error, "the node watcher stopped");
            }
        }
    });
    let workers = tokio::spawn(streamfleet_workers::run(
        workers_config,
        move |door| {
            let _ = ready_tx.send(door);
        },
        stopped(stop_rx.clone()),
    ));
    let front_door = ready_rx
        .await
        .context("the workers stopped before they were ready")?
        .context("the front door did not open")?;
    let redeem_url = format!(
        "{}://{front_door}/redeem",
        if ca.is_some() { "https" } else { "http" }
    );
    record_credential(&args.state_dir, "SF_REDEEM_URL", Some(&redeem_url))?;

    // Operator set-up, recorded once: the app registered, a buffer of one idle host per region.
    let service = CommandClient::new(
        streamfleet_bus_client::connect(
            &NatsLogin::new(
                url.clone(),
                "service",
                secret(&password_var(Role::Service))?,
            )
            .with_ca(ca.clone()),
        )
        .await?,
        Role::Service,
        "streamfleet/up",
    );
    // Every host runs under its own identity, admitted first: the agents' first hosts and
    // spares the fleet may ask the launchers for (buffer refills, replacements).
    let operator = CommandClient::new(
        streamfleet_bus_client::connect(
            &NatsLogin::new(
                url.clone(),
                "operator",
                secret(&password_var(Role::Operator))?,
            )
            .with_ca(ca.clone()),
        )
        .await?,
        Role::Operator,
        "streamfleet/up",
    );
    let host_keys = args.state_dir.join("host-keys");
    let admitted: Vec<HostId> = nats_config
        .hosts()?
        .into_iter()
        .map(|h| h.host_id)
        .collect();
    for region in &regions {
        let new: Vec<HostId> = (1..=HOST_IDENTITIES_PER_REGION)
            .map(|n| HostId::from(format!("{region}-{n}")))
            .filter(|id| !admitted.contains(id))
            .collect();
        if new.is_empty() {
            continue;
        }
        streamfleet_bus_client::Admitter {
            config: &nats_config,
            nats_url: &url,
            ca: ca.as_deref(),
            keys: &host_keys,
            operator: &operator,
        }
        .admit_all(&new, region, || streamfleet_bus_client::reload(nats.pid()))
        .await
        .with_context(|| format!("admitting the hosts of {region}"))?;
    }
    // The app the demo runs, registered once (a state folder of an earlier version has it
    // released already, which stands for a registration).
    let register = Command::RegisterApp(RegisterApp {
        app_id: APP.into(),
        version: "1.0.0".into(),
        image: "streamfleet/synthetic-chess".into(),
        requirements: HostRequirements {
            cpus: 1,
            memory_mib: 512,
            gpu: false,
        },
    });
    match operator
        .send(
            Uuid::new_v5(&Uuid::NAMESPACE_OID, b"up/register/chess"),
            &register,
        )
        .await?
    {
        CommandReply::Accepted { .. } => {}
        CommandReply::Rejected {
            reason: RejectionReason::Domain { rule, .. },
            ..
        } if rule == "app_already_registered" => {}
        CommandReply::Rejected { message, .. } => {
            anyhow::bail!("registering {APP}: {message}")
        }
    }
    for region in &regions {
        let target = Command::SetBufferTarget(SetBufferTarget {
            region: region.clone(),
            app_id: APP.into(),
            idle_hosts: 1,
        });
        service
            .send(
                Uuid::new_v5(
                    &Uuid::NAMESPACE_OID,
                    format!("up/buffer/{region}").as_bytes(),
                ),
                &target,
            )
            .await?;
    }

    let exe = std::env::current_exe().context("this program's path")?;
    let mut agents = Vec::new();
    let launcher_password = secret(&password_var(Role::Launcher))?;
    for region in &regions {
        let (exe, url, region_name) = (exe.clone(), url.clone(), region.to_string());
        let (host_keys, ca, tls) = (host_keys.clone(), ca.clone(), tls.clone());
        let (launcher_password, filter) = (launcher_password.clone(), log_filter(&args.log_level));
        let log_file = args.log_file();
        let agent = supervisor::Supervised::start(
            supervisor::Spec {
                name: format!("host agent {region}"),
                command: Box::new(move || {
                    let mut command = tokio::process::Command::new(&exe);
                    command
                        .args([
                            "host-agent",
                            "--nats-url",
                            &url,
                            "--region",
                            &region_name,
                            "--app",
                            APP,
                            "--hosts",
                            "2",
                            "--capacity",
                            "4",
                        ])
                        .args([
                            "--heartbeat-interval-ms",
                            &heartbeat.as_millis().to_string(),
                        ])
                        .arg("--host-keys")
                        .arg(&host_keys)
                        .env("SF_LAUNCHER_PASSWORD", &launcher_password)
                        .envs(ca.iter().map(|ca| ("SF_NATS_CA", ca.clone())))
                        // The control ports speak HTTPS with the installation's certificate.
                        .envs(tls.iter().flat_map(|tls| {
                            [
                                ("SF_TLS_CERT", tls.cert.clone()),
                                ("SF_TLS_KEY", tls.key.clone()),
                            ]
                        }))
                        .env("RUST_LOG", &filter)
                        // The agents' own logs go to the log file, not the terminal.
                        .stderr(Stdio::from(log_file_handle(&log_file)?));
                    Ok(command)
                }),
                ready: supervisor::Ready::StdoutStarts("ready"),
                started: Box::new(|_| {}),
            },
            owner.clone(),
        )
        .await
        .with_context(|| format!("starting the host agent for {region}"))?;
        agents.push(agent);
    }

    // Compute hosts: real instances (QEMU guests, crun containers) behind the instance commands.
    let compute_region = args
        .compute_region
        .clone()
        .or_else(|| regions.first().map(|r| r.to_string()))
        .context("no region for the compute hosts")?;
    let mut compute_hosts: Vec<HostId> = Vec::new();
    let mut compute_agents = Vec::new();
    let wanted = [
        ("qemu", args.qemu_hosts, 2, 1024),
        (
            "crun",
            if args.dfs {
                args.crun_hosts.max(3)
            } else {
                args.crun_hosts
            },
            4,
            2048,
        ),
    ];
    let volume_store = std::path::absolute(args.state_dir.join("network-volumes"))?;
    if wanted.iter().any(|(_, n, _, _)| *n > 0) && !streamfleet_compute::teardown::can_host() {
        tracing::warn!(
            "not root: no compute hosts (they need network namespaces); instances cannot launch"
        );
    } else {
        let images = std::path::absolute(
            args.images
                .clone()
                .unwrap_or_else(|| args.state_dir.join("images")),
        )?;
        for (hypervisor, count, cpus, memory_mib) in wanted {
            for n in 1..=count {
                let host_id = HostId::from(format!("{compute_region}-{hypervisor}-{n}"));
                let (exe, url, region) = (exe.clone(), url.clone(), compute_region.clone());
                let (ca, launcher_password) = (ca.clone(), launcher_password.clone());
                let (images, state_dir) = (images.clone(), args.state_dir.join("compute"));
                let accel = args.accel.clone();
                let volume_store = volume_store.clone();
                let (fabric, filter, log_file) = (
                    args.fabric.clone(),
                    log_filter(&args.log_level),
                    args.log_file(),
                );
                let id = host_id.to_string();
                let agent = supervisor::Supervised::start(
                    supervisor::Spec {
                        name: format!("compute host {host_id}"),
                        command: Box::new(move || {
                            let mut command = tokio::process::Command::new(&exe);
                            command
                                .args(["compute-host", "--host-id", &id, "--region", &region])
                                .args(["--hypervisor", hypervisor, "--nats-url", &url])
                                .args(["--cpus", &cpus.to_string()])
                                .args(["--memory-mib", &memory_mib.to_string()])
                                .args(["--fabric", &fabric, "--accel", &accel])
                                .arg("--images")
                                .arg(&images)
                                .arg("--state-dir")
                                .arg(&state_dir)
                                .arg("--volume-store")
                                .arg(&volume_store)
                                .env("SF_LAUNCHER_PASSWORD", &launcher_password)
                                .envs(ca.iter().map(|ca| ("SF_NATS_CA", ca.clone())))
                                .env("RUST_LOG", &filter)
                                .stderr(Stdio::from(log_file_handle(&log_file)?));
                            Ok(command)
                        }),
                        ready: supervisor::Ready::StdoutStarts("ready"),
                        started: Box::new(|_| {}),
                    },
                    owner.clone(),
                )
                .await
                .with_context(|| format!("starting compute host {host_id}"))?;
                compute_hosts.push(host_id);
                compute_agents.push(agent);
            }
        }
    }

    // The demo file system, declared once: the same command id again gets the first answer
    // back (the master's address with it).
    let dfs_master = if args.dfs && !compute_hosts.is_empty() {
        let create = Command::CreateFileSystem(streamfleet_bus_schemas::dfs::CreateFileSystem {
            file_system: "demo".into(),
            data_nodes: 2,
            goal: 2,
            region: Some(compute_region.as_str().into()),
            volume_mib: None,
            checkpoint_every_seconds: None,
        });
        match operator
            .send(Uuid::new_v5(&Uuid::NAMESPACE_OID, b"up/dfs/demo"), &create)
            .await?
        {
            CommandReply::Accepted { events, .. } => events
                .iter()
                .filter_map(|e| e.data.as_ref())
                .filter_map(|d| d.get("nodes")?.get(0)?.get("address")?.as_str())
                .map(str::to_string)
                .next(),
            CommandReply::Rejected { message, .. } => {
                tracing::warn!(%message, "the demo file system was not created");
                None
            }
        }
    } else {
        None
    };
    let projections = streamfleet_projections::start(streamfleet_projections::ProjectionsConfig {
        nats: NatsLogin::new(
            url.clone(),
            "dashboard",
            secret(&password_var(Role::Dashboard))?,
        )
        .with_ca(ca.clone()),
        data_dir: args.state_dir.join("projections"),
        grpc_addr: args.grpc,
        heartbeat_interval: heartbeat,
        // On loopback the views stay plaintext and open (grpcurl -plaintext); beyond it they
        // need TLS and the dashboards' token (SF_VIEWS_TOKEN in credentials.env).
        tls: match (&tls, args.grpc.ip().is_loopback()) {
            (Some(tls), false) => Some(streamfleet_projections::ApiTls {
                cert: tls.cert.clone(),
                key: tls.key.clone(),
            }),
            _ => None,
        },
        token: (!args.grpc.ip().is_loopback())
            .then(|| secret("SF_VIEWS_TOKEN"))
            .transpose()?
            .map(Into::into),
    })
    .await
    .context("starting the projections")?;

    if !args.no_demo {
        let demo = demo::Demo {
            entitlement: NatsLogin::new(
                url.clone(),
                "entitlement",
                secret(&password_var(Role::Entitlement))?,
            )
            .with_ca(ca.clone()),
            // The demo's clients are redeemed for by a trusted internal caller naming their
            // (documentation-range) addresses: a demo of geography on one machine.
            client: NatsLogin::new(
                url.clone(),
                "service",
                secret(&password_var(Role::Service))?,
            )
            .with_ca(ca.clone()),
            app_id: APP.into(),
            hosts: streamfleet_media::signal::Via {
                tls: match &ca {
                    Some(ca) => Some(streamfleet_tls::client_config(ca)?),
                    None => None,
                },
                local: None,
            },
        };
        tokio::spawn(demo.run(stopped(stop_rx.clone())));
    }
    let summary = tokio::spawn(summary::run(
        NatsLogin::new(
            url.clone(),
            "dashboard",
            secret(&password_var(Role::Dashboard))?,
        )
        .with_ca(ca.clone()),
        Duration::from_secs(args.summary_every.max(1)),
    ));

    println!("Streamfleet is up.");
    println!(
        "  NATS:        {url}  (users and passwords: {}; {})",
        args.state_dir.join("credentials.env").display(),
        match &ca {
            Some(ca) => format!("TLS only, verify with SF_NATS_CA={}", ca.display()),
            None => "plaintext (--no-tls)".into(),
        }
    );
    println!(
        "  commands:    NATS requests on sf.cmd.<aggregate>.<verb>.<principal>  (schemas/asyncapi.json)"
    );
    println!(
        "  hosts:       each with its own NATS key in {} (admit more: streamfleet host admit)",
        host_keys.display()
    );
    println!("  events:      sf.evt.<category>.<type>; reads: sf.log.read");
    println!(
        "  sessions:    tokens on sf.svc.token.request; clients redeem at {redeem_url} (POST {{\"token\":…}}; sf.svc.redeem for trusted services)"
    );
    println!(
        "  views:       gRPC {}  (reflection on: grpcurl -plaintext {} list)",
        projections.grpc_addr(),
        projections.grpc_addr()
    );
    println!(
        "  regions:     {} (host agents: 2 hosts of {APP} each)",
        regions.join(", ")
    );
    if let Some(master) = &dfs_master {
        println!(
            "  file system: demo (MooseFS; streamfleet dfs status demo), mount it: nsenter --net=/var/run/netns/{} mfsmount <dir> -H {master} -o mfsioretries=10",
            args.fabric
        );
    }
    if !compute_hosts.is_empty() {
        println!(
            "  instances:   {} in {compute_region}; streamfleet instance launch <id> (SF_SERVICE_PASSWORD), reach one: ip netns exec {} busybox nc <address> 7000",
            compute_hosts
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            args.fabric
        );
    }
    println!(
        "  event log:   {}  (head {})",
        args.state_dir.join("data/events.redb").display(),
        node.log().head()
    );
    println!(
        "  watch one:   set -a; . {}; set +a; streamfleet client --user you --client-ip 198.51.100.7  (--play-url: a link for a browser)",
        args.state_dir.join("credentials.env").display()
    );
    println!(
        "  log:         {} (the terminal shows warnings, errors and this summary)",
        args.log_file().display()
    );
    println!("Ctrl-C stops.");
    // A child that dies (nats-server, a host agent) is started again by its supervisor; the
    // node, workers and projections reconnect to a restarted nats-server by themselves. Only
    // Ctrl-C or SIGTERM ends `up`.
    crate::shutdown_signal().await?;
    println!("stopping");
    summary.abort();
    let _ = stop_tx.send(true);
    for agent in agents {
        agent.stop().await;
    }
    // The compute hosts go down with everything they run, as in a power cut: nothing `up`
    // started outlives it. Their agents record the instances as failed when they come back.
    for agent in compute_agents {
        agent.stop().await;
    }
    for host_id in &compute_hosts {
        let host_dir = args.state_dir.join("compute").join(host_id.as_str());
        streamfleet_compute::teardown::power_off_nodes(&host_dir.join("nodes")).await;
        streamfleet_compute::teardown::power_off(host_id, &host_dir.join("crun")).await;
    }
    if !compute_hosts.is_empty() {
        streamfleet_compute::teardown::remove_fabric(&args.fabric).await;
    }
    let _ = workers.await;
    let _ = node_watch.await;
    if let Err(error) = projections.shutdown().await {
        tracing::warn!(%error, "projections did not stop cleanly");
    }
    node.stop().await;
    nats.stop().await;
    Ok(())
}

/// The filter for the log file: `RUST_LOG` when set, else `--log-level`.
fn log_filter(level: &str) -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_string())
}

/// The log file, opened for appending.
pub fn log_file_handle(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the log file {}", path.display()))
}
