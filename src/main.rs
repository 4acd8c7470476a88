//! `streamfleet`: the operator's command line.

mod bench;
mod fleet_args;
mod up;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use streamfleet_node::{NatsLogin, Node, NodeConfig};

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

#[derive(Subcommand)]
enum Cmd {
    /// Bring the whole system up on this machine: nats-server with nats.conf, then the node.
    Up(up::UpArgs),
    /// Run the node: the only process that opens the event log.
    Node(NodeArgs),
    /// Run the workers: token service, redemption node, host-management services, keepers.
    Workers(fleet_args::WorkersArgs),
    /// Run a host agent: simulated hosts of one region.
    HostAgent(fleet_args::AgentArgs),
    /// Benchmarks, each printed beside a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
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
    /// The node's NATS password (user `node` in nats.conf).
    #[arg(long, env = "SF_NODE_PASSWORD", hide_env_values = true)]
    nats_password: String,
    /// Largest command request accepted, bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_command_bytes: usize,
    /// Events whose index entries wait in memory before one bulk write (tests make it small to
    /// exercise the flush).
    #[arg(long, default_value_t = streamfleet_eventlog::Config::default().index_flush_events)]
    index_flush_events: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Benchmarks print a table; only warnings may interrupt it.
    let default_level = if matches!(cli.command, Cmd::Bench { .. }) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        match cli.command {
            Cmd::Up(args) => up::run(args).await,
            Cmd::Node(args) => run_node(args).await,
            Cmd::Workers(args) => {
                let config = args.config()?;
                streamfleet_workers::run(config, || println!("ready"), async {
                    let _ = shutdown_signal().await;
                })
                .await?;
                Ok(())
            }
            Cmd::HostAgent(args) => {
                let config = args.config();
                let hosts = config.hosts;
                let ready = move || println!("ready hosts={hosts}");
                streamfleet_host_agent::run(config, ready, async {
                    let _ = shutdown_signal().await;
                })
                .await?;
                Ok(())
            }
            Cmd::Bench { which } => bench::run(which).await,
        }
    })
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let mut config = NodeConfig::new(
        args.data_dir,
        NatsLogin::new(args.nats_url, "node", args.nats_password),
    );
    config.max_command_bytes = args.max_command_bytes;
    config.log.index_flush_events = args.index_flush_events;
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
