//! `streamfleet app register`: an operator registers an app the fleet runs — its first
//! version, what a host launches for it, what a host must offer. Tokens, buffers, host requests
//! and sessions name registered apps only; anything else is refused as `unknown_app`.

use anyhow::Context as _;
use std::path::PathBuf;
use streamfleet_bus_client::{CommandClient, NatsLogin};
use streamfleet_bus_schemas::Command;
use streamfleet_bus_schemas::payloads::{HostRequirements, RegisterApp};
use streamfleet_bus_schemas::principal::Role;

/// App commands.
#[derive(clap::Subcommand)]
pub enum AppCmd {
    /// Register an app (prints the position of its `AppRegistered`).
    Register {
        /// The app's id.
        app: String,
        /// Its first version, dotted numbers (`1.0.0`); later ones: `ReleaseVersion`.
        #[arg(long)]
        version: String,
        /// What a host launches: an image reference or a launch spec.
        #[arg(long)]
        image: String,
        /// Virtual CPUs a host needs, at least.
        #[arg(long, default_value_t = 0)]
        cpus: u32,
        /// Memory a host needs, MiB, at least.
        #[arg(long, default_value_t = 0)]
        memory_mib: u32,
        /// A host needs a GPU.
        #[arg(long)]
        gpu: bool,
        /// NATS server URL.
        #[arg(long, env = "SF_NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats_url: String,
        /// The certificate authority to trust: NATS over TLS (`up` writes `<state>/tls/ca.pem`).
        #[arg(long, env = "SF_NATS_CA")]
        nats_ca: Option<PathBuf>,
        /// The operator's NATS password.
        #[arg(long, env = "SF_OPERATOR_PASSWORD", hide_env_values = true)]
        nats_password: String,
    },
}

pub async fn run(cmd: AppCmd) -> anyhow::Result<()> {
    let AppCmd::Register {
        app,
        version,
        image,
        cpus,
        memory_mib,
        gpu,
        nats_url,
        nats_ca,
        nats_password,
    } = cmd;
    let login = NatsLogin::new(nats_url, "operator", nats_password).with_ca(nats_ca);
    let operator = CommandClient::new(
        streamfleet_bus_client::connect(&login)
            .await
            .context("connecting as operator")?,
        Role::Operator,
        "streamfleet/app",
    );
    let register = Command::RegisterApp(RegisterApp {
        app_id: app.as_str().into(),
        version,
        image,
        requirements: HostRequirements {
            cpus,
            memory_mib,
            gpu,
        },
    });
    let recorded = operator
        .submit(uuid::Uuid::now_v7(), &register)
        .await
        .with_context(|| format!("registering {app}"))?;
    let position = recorded.first().map_or(0, |e| e.position);
    println!("registered {app} position={position}");
    Ok(())
}
