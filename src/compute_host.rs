//! `streamfleet compute-host`: one compute host — its network namespace on the deployment's
//! fabric, its driver (qemu, crun or sim), and the agent that carries out its instances' events
//! (`streamfleet_compute::agent`). Needs root for the namespaces.

use anyhow::Context as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use streamfleet_bus_client::CommandClient;
use streamfleet_bus_client::NatsLogin;
use streamfleet_bus_schemas::compute::Hypervisor;
use streamfleet_bus_schemas::principal::Role;
use streamfleet_compute::accel::{self, Accel, Probed};
use streamfleet_compute::agent::{self, HostOffer};
use streamfleet_compute::crun::CrunDriver;
use streamfleet_compute::dfs::container::Containers;
use streamfleet_compute::dfs::host::{NodeHost, NodeSettings};
use streamfleet_compute::dfs::volume::VolumeStore;
use streamfleet_compute::migration::MigrationSettings;
use streamfleet_compute::network::{Fabric, HostNetwork};
use streamfleet_compute::qemu::QemuDriver;
use streamfleet_compute::sim::SimDriver;

/// A compute host's settings.
#[derive(clap::Args)]
pub struct ComputeHostArgs {
    /// The host's id.
    #[arg(long)]
    host_id: String,
    /// Its region.
    #[arg(long)]
    region: String,
    /// The hypervisor it runs: qemu, crun or sim.
    #[arg(long, value_parser = parse_hypervisor)]
    hypervisor: Hypervisor,
    /// Cpus it offers to instances.
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Memory it offers to instances, MiB.
    #[arg(long, default_value_t = 1024)]
    memory_mib: u32,
    /// The image folders (`<image>/vmlinuz`, `<image>/rootfs`, built by
    /// `scripts/guest-image.sh`).
    #[arg(long, default_value = ".streamfleet/images")]
    images: PathBuf,
    /// The host's folder: its instances' disks and crun's state.
    #[arg(long, default_value = ".streamfleet/compute")]
    state_dir: PathBuf,
    /// QEMU's accelerator: `auto` uses KVM only when a probe guest boots with it, else TCG.
    #[arg(long, default_value = "auto", value_parser = ["auto", "tcg", "kvm"])]
    accel: String,
    /// The deployment's fabric namespace (created when missing).
    #[arg(long, default_value = "sf-fabric")]
    fabric: String,
    /// NATS server URL.
    #[arg(long, env = "SF_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// The certificate authority to trust: NATS over TLS (`up` writes `<state>/tls/ca.pem`).
    #[arg(long, env = "SF_NATS_CA")]
    nats_ca: Option<PathBuf>,
    /// The launchers' NATS password (user `launcher`).
    #[arg(long, env = "SF_LAUNCHER_PASSWORD", hide_env_values = true)]
    nats_password: String,
    /// Migration, at the deadline: seconds the guest may take to power off cleanly before it is
    /// paused for its move.
    #[arg(long, default_value_t = 20)]
    migration_grace: u64,
    /// Migration, as the source: seconds to wait for the target's launch after stopping the
    /// instance, before starting it here again.
    #[arg(long, default_value_t = 240)]
    migration_launch_timeout: u64,
    /// The deployment's network-volume store (every host of the deployment names the same
    /// folder): the file-system nodes' volumes.
    #[arg(long, default_value = ".streamfleet/network-volumes")]
    volume_store: PathBuf,
    /// How often (ms) the host probes the file-system nodes it runs.
    #[arg(long, default_value_t = 250)]
    node_probe_ms: u64,
}

fn parse_hypervisor(text: &str) -> Result<Hypervisor, String> {
    Hypervisor::ALL
        .into_iter()
        .find(|h| h.name() == text)
        .ok_or_else(|| format!("`{text}` is not a hypervisor (qemu, crun, sim)"))
}

pub async fn run(args: ComputeHostArgs) -> anyhow::Result<()> {
    let login = NatsLogin::new(args.nats_url, "launcher", args.nats_password).with_ca(args.nats_ca);
    let client = streamfleet_bus_client::connect(&login)
        .await
        .context("connecting as launcher")?;
    let host_id: streamfleet_bus_schemas::ids::HostId = args.host_id.as_str().into();
    let offer = HostOffer {
        host_id: args.host_id.as_str().into(),
        region: args.region.as_str().into(),
        cpus: args.cpus,
        memory_mib: args.memory_mib,
    };
    let dir = args.state_dir.join(&args.host_id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let images = std::path::absolute(&args.images)?;
    let dir = std::path::absolute(&dir)?;
    let ready = || println!("ready host={}", args.host_id);
    let settings = MigrationSettings {
        grace: Duration::from_secs(args.migration_grace),
        launch_timeout: Duration::from_secs(args.migration_launch_timeout),
        ..MigrationSettings::default()
    };
    match args.hypervisor {
        Hypervisor::Sim => {
            agent::run_with(
                Arc::new(SimDriver::default()),
                client,
                offer,
                settings,
                ready,
            )
            .await?
        }
        hypervisor => {
            let fabric = Fabric::create(&args.fabric).await?;
            let network = HostNetwork::prepare(&host_id, &fabric).await?;
            let volumes = dir.join("instances");
            if hypervisor == Hypervisor::Qemu {
                let accel = match Accel::parse(&args.accel) {
                    Some(accel) => Probed {
                        accel,
                        why: "as configured".into(),
                    },
                    None => accel::probe(&images.join("linux-busybox"), &dir.join("accel")).await,
                };
                tracing::info!(host = %args.host_id, accel = accel.accel.name(), why = %accel.why, "qemu accelerator");
                let driver = QemuDriver::new(images, volumes, network, accel);
                agent::run_with(Arc::new(driver), client, offer, settings, ready).await?
            } else {
                // A crun host also runs file-system nodes (`streamfleet_compute::dfs`).
                let nodes = NodeHost::new(
                    host_id.clone(),
                    Containers::new(dir.join("nodes"), network.clone()),
                    VolumeStore {
                        folder: std::path::absolute(&args.volume_store)?,
                    },
                    CommandClient::new(
                        client.clone(),
                        Role::Launcher,
                        format!("compute/{}/nodes", args.host_id),
                    ),
                    NodeSettings {
                        probe_every: Duration::from_millis(args.node_probe_ms.max(10)),
                        ..NodeSettings::default()
                    },
                );
                let node_client = client.clone();
                tokio::spawn(async move {
                    if let Err(e) = nodes.run(node_client).await {
                        tracing::error!(error = %e, "the file-system nodes' loop ended");
                    }
                });
                let driver = CrunDriver::new(images, volumes, dir.join("crun"), network);
                agent::run_with(Arc::new(driver), client, offer, settings, ready).await?
            }
        }
    }
    Ok(())
}
