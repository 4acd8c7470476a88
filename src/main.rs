//! `streamfleet`: the operator's command line.

mod app;
mod bench;
mod client;
mod compute_host;
mod dfs;
mod fleet_args;
mod host;
mod instance;
mod migration;
mod up;
mod views_login;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use streamfleet_bus_client::NatsLogin;
use streamfleet_node::{Node, NodeConfig};

#[derive(Parser)]
#[command(
    name = "streamfleet",
    version,
    about = "Control plane of an application-streaming cloud"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// The node watcher's settings (on `streamfleet workers`).
#[derive(clap::Args, Debug, Clone)]
struct NodeWatchArgs {
    /// Silence after which a file system's node is failed and recovered elsewhere, ms.
    #[arg(long, default_value_t = 2_000)]
    node_timeout_ms: u64,
    /// The compute hosts' node probe interval, ms: the node watcher looks this often (a node
    /// is unresponsive after a third of the timeout, at least two intervals).
    #[arg(long, default_value_t = 250)]
    node_probe_ms: u64,
}

impl NodeWatchArgs {
    fn config(&self) -> streamfleet_workers::NodeWatchConfig {
        let probe_ms = self.node_probe_ms.max(10);
        streamfleet_workers::NodeWatchConfig {
            timeout: std::time::Duration::from_millis(self.node_timeout_ms.max(probe_ms)),
            probe_interval: std::time::Duration::from_millis(probe_ms),
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Bring the whole system up on this machine: nats-server, the node, workers, projections,
    /// host agents.
    Up(up::UpArgs),
    /// Run the node: the only process that opens the event log.
    Node(NodeArgs),
    /// Run the workers: token service, redemption node, host-management services, keepers, and
    /// the node watcher of the file systems' nodes.
    Workers {
        #[command(flatten)]
        args: fleet_args::WorkersArgs,
        #[command(flatten)]
        node_watch: NodeWatchArgs,
    },
    /// Run a host agent: simulated hosts of one region, each with its own admitted key.
    HostAgent(fleet_args::AgentArgs),
    /// Run a compute host: its network namespace, its hypervisor's driver, and the agent that
    /// carries out its instances' events (needs root).
    ComputeHost(compute_host::ComputeHostArgs),
    /// Hosts: admit them (each its own NATS identity) before they can register.
    Host {
        #[command(subcommand)]
        which: host::HostCmd,
    },
    /// Apps: register them (version, image, host requirements) before tokens name them.
    App {
        #[command(subcommand)]
        which: app::AppCmd,
    },
    /// Instances (virtual machines, containers): the catalogue, the instance commands, list and show.
    Instance {
        #[command(subcommand)]
        which: instance::InstanceCmd,
    },
    /// Migrations: move an instance to a host with the same settings at its next reboot or a
    /// deadline; list and show them from the views.
    Migration {
        #[command(subcommand)]
        which: migration::MigrationCmd,
    },
    /// Distributed file systems whose nodes heal: create one, show its nodes from the views
    /// (`--watch`), ask its metadata node for a checkpoint.
    Dfs {
        #[command(subcommand)]
        which: dfs::DfsCmd,
    },
    /// Print the nats-server configuration Streamfleet renders (no hosts admitted).
    NatsConf,
    /// The projections: serve the views over gRPC, rebuild them, compare two stores.
    Projections {
        #[command(subcommand)]
        which: ProjectionsCmd,
    },
    /// Audit history: read, verify, state as of a moment, rebuild and diff views, export.
    Replay {
        #[command(subcommand)]
        which: streamfleet_replay::cli::ReplayCmd,
    },
    /// Be a user's device: redeem a token, watch the session's stream, print what arrived.
    Client(client::ClientArgs),
    /// Benchmarks, each printed beside a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
}

#[derive(Subcommand)]
enum ProjectionsCmd {
    /// Follow the log into the eight views and serve them over gRPC (prints `ready grpc=ADDR`).
    Serve {
        /// Folder of the views' redb files.
        #[arg(long, default_value = ".streamfleet/projections")]
        data_dir: PathBuf,
        /// gRPC listen address (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:50051")]
        grpc: std::net::SocketAddr,
        /// NATS server URL.
        #[arg(long, env = "SF_NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats_url: String,
        /// The certificate authority to trust: NATS over TLS (`up` writes `<state>/tls/ca.pem`).
        #[arg(long, env = "SF_NATS_CA")]
        nats_ca: Option<std::path::PathBuf>,
        /// The dashboard user's NATS password.
        #[arg(long, env = "SF_DASHBOARD_PASSWORD", hide_env_values = true)]
        nats_password: String,
        /// The API's certificate (PEM); with `--tls-key` it speaks TLS only (required beyond
        /// loopback).
        #[arg(long, env = "SF_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// Its private key (PEM).
        #[arg(long, env = "SF_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The dashboards' token every views call must carry as `authorization: Bearer …`
        /// (required beyond loopback).
        #[arg(long, env = "SF_VIEWS_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Hosts' heartbeat interval, ms (a row is `late` after two).
        #[arg(long, default_value_t = 60_000)]
        heartbeat_interval_ms: u64,
    },
    /// Build every view from position 1 into a fresh folder, up to a position (default: the
    /// log's head now), then stop.
    Rebuild {
        /// The folder to build into (must not hold views yet).
        #[arg(long)]
        out: PathBuf,
        /// Last position to apply.
        #[arg(long)]
        until: Option<u64>,
        /// NATS server URL.
        #[arg(long, env = "SF_NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats_url: String,
        /// The certificate authority to trust: NATS over TLS (`up` writes `<state>/tls/ca.pem`).
        #[arg(long, env = "SF_NATS_CA")]
        nats_ca: Option<std::path::PathBuf>,
        /// The dashboard user's NATS password.
        #[arg(long, env = "SF_DASHBOARD_PASSWORD", hide_env_values = true)]
        nats_password: String,
    },
    /// Compare two view folders row by row; exits 1 and names each difference when they differ.
    Diff {
        /// One folder.
        a: PathBuf,
        /// The other.
        b: PathBuf,
    },
}

#[derive(clap::Args)]
struct NodeArgs {
    /// Folder holding the log file (events.redb).
    #[arg(long, default_value = ".streamfleet/data")]
    data_dir: PathBuf,
    /// NATS server URL.
    #[arg(long, env = "SF_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// The certificate authority to trust: NATS over TLS (`up` writes `<state>/tls/ca.pem`).
    #[arg(long, env = "SF_NATS_CA")]
    nats_ca: Option<std::path::PathBuf>,
    /// The node's NATS password (user `node`).
    #[arg(long, env = "SF_NODE_PASSWORD", hide_env_values = true)]
    nats_password: String,
    /// Largest command request accepted, bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_command_bytes: usize,
    /// Events whose index entries wait in memory before one bulk write (tests make it small to
    /// exercise the flush).
    #[arg(long, default_value_t = streamfleet_eventlog::Config::default().index_flush_events)]
    index_flush_events: usize,
    /// Events between two signed checkpoints of the chain head (`checkpoints.jsonl` beside the
    /// log; one is signed on stop too).
    #[arg(long, default_value_t = 1000)]
    checkpoint_every: u64,
    /// Regions as `name:lat:lon,…`: a launch naming a client goes to the nearest that can run it.
    #[arg(long, default_value = fleet_args::DEFAULT_REGIONS)]
    regions: String,
    /// Where address prefixes are, `cidr=label:lat:lon,…`.
    #[arg(long, default_value = fleet_args::DEFAULT_LOCATIONS)]
    locations: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Benchmarks and audits print results; only warnings may interrupt them.
    let default_level = if matches!(
        cli.command,
        Cmd::Bench { .. } | Cmd::Replay { .. } | Cmd::Client(_)
    ) {
        "warn"
    } else {
        "info"
    };
    // webrtc-rs warns about normal moments of a connection (no candidate pairs yet, a duplicate
    // SRTP packet): its targets log errors only unless RUST_LOG names them.
    const QUIET_WEBRTC: &str = "rtc=error,rtc_ice=error,rtc_dtls=error,rtc_interceptor=error,rtc_sctp=error,rtc_srtp=error,webrtc=error";
    let filter = match std::env::var("RUST_LOG") {
        Ok(given) if given.contains("rtc") => given,
        Ok(given) => format!("{given},{QUIET_WEBRTC}"),
        Err(_) => format!("{default_level},{QUIET_WEBRTC}"),
    };
    let env_filter = |f: &str| {
        tracing_subscriber::EnvFilter::try_new(f)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level))
    };
    if let Cmd::Up(args) = &cli.command {
        // `up` keeps the terminal for its summary: warnings and errors there, everything at
        // `--log-level` (or RUST_LOG) in the state folder's log file.
        use tracing_subscriber::{Layer, layer::SubscriberExt, util::SubscriberInitExt};
        let file_filter = match std::env::var("RUST_LOG") {
            Ok(given) if given.contains("rtc") => given,
            Ok(given) => format!("{given},{QUIET_WEBRTC}"),
            Err(_) => format!("{},{QUIET_WEBRTC}", args.log_level),
        };
        let file = up::log_file_handle(&args.log_file())?;
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(file))
                    .with_filter(env_filter(&file_filter)),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr)
                    .with_filter(env_filter(&format!("warn,{QUIET_WEBRTC}"))),
            )
            .init();
    } else {
        // Colours only for a person's terminal: a child of `up` writes into the log file.
        use std::io::IsTerminal;
        tracing_subscriber::fmt()
            .with_env_filter(env_filter(&filter))
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        match cli.command {
            Cmd::Up(args) => up::run(args).await,
            Cmd::Node(args) => run_node(args).await,
            Cmd::Workers { args, node_watch } => {
                let config = args.config()?;
                let scheme = match &config.front_door {
                    Some(door) if door.tls.is_some() => "https",
                    _ => "http",
                };
                let ready = move |door: Option<std::net::SocketAddr>| match door {
                    Some(addr) => println!("ready front-door={scheme}://{addr}"),
                    None => println!("ready"),
                };
                // One signal stops both; either failing for good ends the process.
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    let _ = shutdown_signal().await;
                    let _ = stop_tx.send(true);
                });
                let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                let login = config.login.clone();
                tokio::try_join!(
                    streamfleet_workers::run(config, ready, stopped(stop_rx.clone())),
                    streamfleet_workers::node_watch::run(
                        login,
                        node_watch.config(),
                        stopped(stop_rx)
                    ),
                )?;
                Ok(())
            }
            Cmd::Projections { which } => projections(which).await,
            Cmd::HostAgent(args) => {
                let config = args.config()?;
                let hosts = config.hosts;
                let ready = move || println!("ready hosts={hosts}");
                streamfleet_host_agent::run(config, ready, async {
                    let _ = shutdown_signal().await;
                })
                .await?;
                Ok(())
            }
            Cmd::Replay { which } => {
                if !streamfleet_replay::cli::run(which).await? {
                    // Printed above: a failed verification or differing views.
                    std::process::exit(1);
                }
                Ok(())
            }
            Cmd::Bench { which } => bench::run(which).await,
            Cmd::Host { which } => host::run(which).await,
            Cmd::ComputeHost(args) => compute_host::run(args).await,
            Cmd::App { which } => app::run(which).await,
            Cmd::Instance { which } => instance::run(which).await,
            Cmd::Migration { which } => migration::run(which).await,
            Cmd::Dfs { which } => dfs::run(which).await,
            Cmd::NatsConf => {
                print!("{}", streamfleet_bus_schemas::nats_conf::render(&[], None));
                Ok(())
            }
            Cmd::Client(args) => {
                let code = client::run(args).await?;
                if code != 0 {
                    std::process::exit(code);
                }
                Ok(())
            }
        }
    })
}

async fn projections(which: ProjectionsCmd) -> anyhow::Result<()> {
    match which {
        ProjectionsCmd::Serve {
            data_dir,
            grpc,
            nats_url,
            nats_ca,
            nats_password,
            tls_cert,
            tls_key,
            token,
            heartbeat_interval_ms,
        } => {
            let running =
                streamfleet_projections::start(streamfleet_projections::ProjectionsConfig {
                    nats: NatsLogin::new(nats_url, "dashboard", nats_password).with_ca(nats_ca),
                    data_dir,
                    grpc_addr: grpc,
                    heartbeat_interval: std::time::Duration::from_millis(
                        heartbeat_interval_ms.max(10),
                    ),
                    tls: tls_cert
                        .zip(tls_key)
                        .map(|(cert, key)| streamfleet_projections::ApiTls { cert, key }),
                    token: token.map(Into::into),
                })
                .await?;
            println!("ready grpc={}", running.grpc_addr());
            shutdown_signal().await?;
            running.shutdown().await?;
            Ok(())
        }
        ProjectionsCmd::Rebuild {
            out,
            until,
            nats_url,
            nats_ca,
            nats_password,
        } => {
            if out.exists() && std::fs::read_dir(&out)?.next().is_some() {
                anyhow::bail!(
                    "{} is not empty: rebuild into a fresh folder",
                    out.display()
                );
            }
            let client = streamfleet_bus_client::connect(
                &NatsLogin::new(nats_url, "dashboard", nats_password).with_ca(nats_ca),
            )
            .await?;
            let until = match until {
                Some(u) => u,
                None => streamfleet_bus_client::log_head(&client).await?,
            };
            let stored = streamfleet_projections::rebuild(client, &out, until).await?;
            println!("rebuilt {} up to position {stored}", out.display());
            Ok(())
        }
        ProjectionsCmd::Diff { a, b } => {
            let differences = streamfleet_projections::diff(&a, &b)?;
            for d in &differences {
                println!("{d:?}");
            }
            if differences.is_empty() {
                println!("no differences");
                Ok(())
            } else {
                anyhow::bail!("{} rows differ", differences.len())
            }
        }
    }
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let mut config = NodeConfig::new(
        args.data_dir,
        NatsLogin::new(args.nats_url, "node", args.nats_password).with_ca(args.nats_ca),
    );
    config.max_command_bytes = args.max_command_bytes;
    config.log.index_flush_events = args.index_flush_events;
    config.checkpoint_every = args.checkpoint_every;
    config.geography = fleet_args::geography(&args.regions, &args.locations)?;
    let node = Node::start(config).await?;
    // Tests and scripts wait for this line.
    println!("ready head={}", node.log().head());
    shutdown_signal().await?;
    tracing::info!("stopping");
    node.stop().await;
    Ok(())
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, the two ways operators stop a process.
pub async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
