//! `streamfleet host admit | revoke`: an operator lets hosts into a running system, or shuts
//! one out. Admitting gives a host its own key pair (the seed into the key folder, 0600), a
//! user in the nats-server configuration (the server reloaded) and `HostAdmitted` in the log;
//! only then can it register, and only in its region, and the fleet asks the launchers for
//! admitted hosts only. Revoking takes the user out (nats-server, reloaded, closes the host's
//! connections), deletes the seed and records `RemoveHost` (`revoked`).

use anyhow::Context as _;
use std::path::PathBuf;
use streamfleet_bus_client::{Admitter, CommandClient, NatsConfig, NatsLogin};
use streamfleet_bus_schemas::ids::{HostId, RegionId};
use streamfleet_bus_schemas::principal::Role;

/// Host commands.
#[derive(clap::Subcommand)]
pub enum HostCmd {
    /// Admit hosts to a region (prints each host's id and public key).
    Admit {
        /// The hosts' ids (letters, digits, `-`, `_`).
        #[arg(required = true)]
        hosts: Vec<String>,
        /// Their region.
        #[arg(long)]
        region: String,
        #[command(flatten)]
        system: SystemArgs,
    },
    /// Revoke hosts' admission: their NATS identities end now, their connections with them.
    Revoke {
        /// The hosts' ids.
        #[arg(required = true)]
        hosts: Vec<String>,
        #[command(flatten)]
        system: SystemArgs,
    },
}

/// Where the running system is, and the operator's login.
#[derive(clap::Args)]
pub struct SystemArgs {
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
    nats_ca: Option<PathBuf>,
    /// The operator's NATS password.
    #[arg(long, env = "SF_OPERATOR_PASSWORD", hide_env_values = true)]
    nats_password: String,
}

pub async fn run(cmd: HostCmd) -> anyhow::Result<()> {
    let (HostCmd::Admit { system, .. } | HostCmd::Revoke { system, .. }) = &cmd;
    let config = NatsConfig::new(&system.state_dir);
    let pid_file = system.state_dir.join("nats.pid");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("{} (is `streamfleet up` running?)", pid_file.display()))?
        .trim()
        .parse()
        .with_context(|| format!("{} holds no pid", pid_file.display()))?;
    let keys = system
        .keys
        .clone()
        .unwrap_or_else(|| system.state_dir.join("host-keys"));
    let login = NatsLogin::new(
        system.nats_url.clone(),
        "operator",
        system.nats_password.clone(),
    )
    .with_ca(system.nats_ca.clone());
    let operator = CommandClient::new(
        streamfleet_bus_client::connect(&login).await?,
        Role::Operator,
        "streamfleet/host",
    );
    let admitter = Admitter {
        config: &config,
        nats_url: &system.nats_url,
        ca: system.nats_ca.as_deref(),
        keys: &keys,
        operator: &operator,
    };
    let reload = || streamfleet_bus_client::reload(pid);
    match &cmd {
        HostCmd::Admit { hosts, region, .. } => {
            let region = RegionId::from(region.as_str());
            for host in hosts {
                let id = HostId::from(host.as_str());
                let key = admitter
                    .admit(&id, &region, reload)
                    .await
                    .with_context(|| format!("admitting host {id}"))?;
                println!("admitted {id} region={region} key={}", key.public_key);
            }
        }
        HostCmd::Revoke { hosts, .. } => {
            for host in hosts {
                let id = HostId::from(host.as_str());
                admitter
                    .revoke(&id, reload)
                    .await
                    .with_context(|| format!("revoking host {id}"))?;
                println!("revoked {id}");
            }
        }
    }
    Ok(())
}
