//! `streamfleet host admit`: an operator admits hosts to a running system — each gets its own
//! key pair (the seed into the key folder, 0600), a user in the nats-server configuration (the
//! server reloaded) and `HostAdmitted` in the log. Only then can it register, and only in its
//! region; the fleet asks the launchers for admitted hosts only.

use anyhow::Context as _;
use std::path::PathBuf;
use streamfleet_bus_client::{CommandClient, NatsConfig, NatsLogin};
use streamfleet_bus_schemas::ids::{HostId, RegionId};
use streamfleet_bus_schemas::principal::Role;

/// Host commands.
#[derive(clap::Subcommand)]
pub enum HostCmd {
    /// Admit hosts to a region (prints each host's id and public key).
    Admit(AdmitArgs),
}

#[derive(clap::Args)]
pub struct AdmitArgs {
    /// The hosts' ids (letters, digits, `-`, `_`).
    #[arg(required = true)]
    hosts: Vec<String>,
    /// Their region.
    #[arg(long)]
    region: String,
    /// The state folder of `streamfleet up` (its nats.conf, hosts.list and nats.pid).
    #[arg(long, default_value = ".streamfleet")]
    state_dir: PathBuf,
    /// Where the hosts' seeds go (default: `<state-dir>/host-keys`, where `up`'s agents look).
    #[arg(long)]
    keys: Option<PathBuf>,
    /// NATS server URL.
    #[arg(long, env = "SF_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// The certificate authority to trust: NATS over TLS (`up` writes `<state>/tls/ca.pem`).
    #[arg(long, env = "SF_NATS_CA")]
    nats_ca: Option<std::path::PathBuf>,
    /// The operator's NATS password.
    #[arg(long, env = "SF_OPERATOR_PASSWORD", hide_env_values = true)]
    nats_password: String,
}

pub async fn run(cmd: HostCmd) -> anyhow::Result<()> {
    let HostCmd::Admit(args) = cmd;
    let config = NatsConfig::new(&args.state_dir);
    let pid_file = args.state_dir.join("nats.pid");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("{} (is `streamfleet up` running?)", pid_file.display()))?
        .trim()
        .parse()
        .with_context(|| format!("{} holds no pid", pid_file.display()))?;
    let keys = args
        .keys
        .clone()
        .unwrap_or_else(|| args.state_dir.join("host-keys"));
    let login = NatsLogin::new(
        args.nats_url.clone(),
        "operator",
        args.nats_password.clone(),
    )
    .with_ca(args.nats_ca.clone());
    let operator = CommandClient::new(
        streamfleet_bus_client::connect(&login).await?,
        Role::Operator,
        "streamfleet/host-admit",
    );
    let region = RegionId::from(args.region.as_str());
    for host in &args.hosts {
        let id = HostId::from(host.as_str());
        let key = streamfleet_bus_client::Admitter {
            config: &config,
            nats_url: &args.nats_url,
            ca: args.nats_ca.as_deref(),
            keys: &keys,
            operator: &operator,
        }
        .admit(&id, &region, || streamfleet_bus_client::reload(pid))
        .await
        .with_context(|| format!("admitting host {id}"))?;
        println!("admitted {id} region={region} key={}", key.public_key);
    }
    Ok(())
}
