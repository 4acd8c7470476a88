//! `streamfleet instance …`: the compute layer for a service user — the image catalogue, and the
//! instance command set (launch, stop, start, reboot, volumes, networks, snapshot, terminate)
//! sent as the `service` role over the same NATS commands any service sends, plus `list` and
//! `show`, which fold the instances' streams from the log with the domain's own fold.
//!
//! A command that changes what runs waits, unless `--no-wait`, for the host to carry it out:
//! `InstanceLaunched` (after a launch, start or reboot) or `InstanceFailed`, followed live.

use anyhow::{Context as _, bail};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use streamfleet_bus_client::{CommandClient, Follower, LogReader, NatsLogin, log_head};
use streamfleet_bus_schemas::compute::{Feature, Hypervisor};
use streamfleet_bus_schemas::ids::InstanceId;
use streamfleet_bus_schemas::instance::*;
use streamfleet_bus_schemas::principal::Role;
use streamfleet_bus_schemas::{Command, Event, ReadRequest, subjects};
use streamfleet_domain::State;
use streamfleet_domain::instance::InstanceState;

/// Where the bus is, and the service user's login.
#[derive(clap::Args)]
pub struct ServiceLogin {
    /// NATS server URL.
    #[arg(long, env = "SF_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub(crate) nats_url: String,
    /// The certificate authority to trust: NATS over TLS (`up` writes `<state>/tls/ca.pem`).
    #[arg(long, env = "SF_NATS_CA")]
    pub(crate) nats_ca: Option<PathBuf>,
    /// The service user's NATS password (user `service`).
    #[arg(long, env = "SF_SERVICE_PASSWORD", hide_env_values = true)]
    pub(crate) nats_password: String,
}

/// How a changing command ends.
#[derive(clap::Args)]
pub struct Waiting {
    /// Return once the command is recorded, without waiting for the host.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the host, in seconds.
    #[arg(long, default_value_t = 300)]
    wait_seconds: u64,
}

/// Instance commands.
#[derive(clap::Subcommand)]
pub enum InstanceCmd {
    /// The image catalogue: each image's OS and the hypervisors that run it.
    Images {
        /// As JSON: `[{"name", "os", "hypervisors"}]`.
        #[arg(long)]
        json: bool,
    },
    /// Launch an instance (the service chooses the hypervisor unless told; prints the choice,
    /// the host and the addresses), then wait until it answers on its address.
    Launch {
        /// The instance's id (letters, digits, `-`, `_`).
        instance_id: String,
        /// The image, by its catalogue name.
        #[arg(long, default_value = "linux-busybox")]
        image: String,
        /// The hypervisor wanted (qemu, crun, sim); absent: the service chooses.
        #[arg(long, value_parser = parse_hypervisor)]
        hypervisor: Option<Hypervisor>,
        /// A feature the instance needs (repeat): hot_attach_volume, hot_attach_network,
        /// snapshot, reboot, stop_start.
        #[arg(long = "feature", value_parser = parse_feature)]
        features: Vec<Feature>,
        /// The region; absent: the nearest to `--client-ip`, or the cheapest.
        #[arg(long)]
        region: Option<String>,
        /// The address of the client the instance serves: with no region, the nearest region
        /// that can run it.
        #[arg(long)]
        client_ip: Option<String>,
        /// Virtual cpus.
        #[arg(long, default_value_t = 1)]
        cpus: u32,
        /// Memory, MiB.
        #[arg(long, default_value_t = 128)]
        memory_mib: u32,
        /// Root disk, MiB.
        #[arg(long, default_value_t = 8)]
        disk_mib: u32,
        #[command(flatten)]
        waiting: Waiting,
        #[command(flatten)]
        login: ServiceLogin,
    },
    /// Stop an instance (a clean power-off; disks and addresses kept).
    Stop {
        /// The instance.
        instance_id: String,
        #[command(flatten)]
        login: ServiceLogin,
    },
    /// Start a stopped (or failed) instance again, then wait until it answers.
    Start {
        /// The instance.
        instance_id: String,
        #[command(flatten)]
        waiting: Waiting,
        #[command(flatten)]
        login: ServiceLogin,
    },
    /// Reboot an instance, then wait until it answers again.
    Reboot {
        /// The instance.
        instance_id: String,
        #[command(flatten)]
        waiting: Waiting,
        #[command(flatten)]
        login: ServiceLogin,
    },
    /// End an instance for good (its disks deleted, its addresses back to the pool).
    Terminate {
        /// The instance.
        instance_id: String,
        #[command(flatten)]
        login: ServiceLogin,
    },
    /// Attach a new, empty volume to a running instance.
    AttachVolume {
        /// The instance.
        instance_id: String,
        /// The volume's id.
        volume_id: String,
        /// Its size, MiB.
        #[arg(long)]
        size_mib: u32,
        #[command(flatten)]
        login: ServiceLogin,
    },
    /// Detach a volume from a running instance (and delete it).
    DetachVolume {
        /// The instance.
        instance_id: String,
        /// The volume's id.
        volume_id: String,
        #[command(flatten)]
        login: ServiceLogin,
    },
    /// Attach one more network interface to a running instance.
    AttachNetwork {
        /// The instance.
        instance_id: String,
        /// The network's id.
        network_id: String,
        #[command(flatten)]
        login: ServiceLogin,
    },
    /// Detach a network interface from a running instance.
    DetachNetwork {
        /// The instance.
        instance_id: String,
        /// The network's id.
        network_id: String,
        #[command(flatten)]
        login: ServiceLogin,
    },
    /// Take a snapshot of an instance's disks.
    Snapshot {
        /// The instance.
        instance_id: String,
        /// The snapshot's id.
        snapshot_id: String,
        #[command(flatten)]
        login: ServiceLogin,
    },
    /// Every instance the log knows, with its state, host and addresses.
    List {
        /// Terminated ones too.
        #[arg(long)]
        all: bool,
        /// As JSON: `{"<id>": state}`.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        login: ServiceLogin,
    },
    /// One instance's state and its history.
    Show {
        /// The instance.
        instance_id: String,
        /// As JSON: `{"state", "events": [{"type", "data"}]}`.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        login: ServiceLogin,
    },
}

fn parse_hypervisor(text: &str) -> Result<Hypervisor, String> {
    Hypervisor::ALL
        .into_iter()
        .find(|h| h.name() == text)
        .ok_or_else(|| format!("`{text}` is not a hypervisor (qemu, crun, sim)"))
}

fn parse_feature(text: &str) -> Result<Feature, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|_| {
        format!(
            "`{text}` is not a feature (hot_attach_volume, hot_attach_network, snapshot, reboot, stop_start)"
        )
    })
}

/// The service user's connection and command client.
async fn connect(login: &ServiceLogin) -> anyhow::Result<(async_nats::Client, CommandClient)> {
    let nats = NatsLogin::new(
        login.nats_url.clone(),
        "service",
        login.nats_password.clone(),
    )
    .with_ca(login.nats_ca.clone());
    let client = streamfleet_bus_client::connect(&nats)
        .await
        .context("connecting as service")?;
    let commands = CommandClient::new(client.clone(), Role::Service, "streamfleet/instance");
    Ok((client, commands))
}

/// Sends `command`, prints what was recorded, and (unless `waiting` says not to) waits for
/// the host's `InstanceLaunched` or `InstanceFailed` for `instance_id`.
async fn change(
    login: &ServiceLogin,
    instance_id: &str,
    command: Command,
    waiting: Option<&Waiting>,
) -> anyhow::Result<()> {
    let (client, commands) = connect(login).await?;
    let waiting = waiting.filter(|w| !w.no_wait);
    // Follow from the head before sending, so the host's answer cannot slip by.
    let follower = match waiting {
        Some(_) => {
            let head = log_head(&client).await?;
            Some(Follower::start_on(client.clone(), head + 1, &[subjects::INSTANCE_EVENTS]).await?)
        }
        None => None,
    };
    let recorded = commands
        .submit(uuid::Uuid::now_v7(), &command)
        .await
        .with_context(|| format!("{} {instance_id}", command.type_name()))?;
    for e in &recorded {
        let data = e.data.clone().unwrap_or_default();
        println!("{} {}", e.event_type, describe(&e.event_type, &data));
    }
    let (Some(mut follower), Some(waiting)) = (follower, waiting) else {
        return Ok(());
    };
    let stream = format!("instance-{instance_id}");
    let wait = async {
        loop {
            let e = follower.next().await?;
            let Ok(envelope) = e.envelope() else { continue };
            let body = envelope.body;
            if body.subject != stream {
                continue;
            }
            match body.event_type.as_str() {
                "InstanceLaunched" => {
                    println!(
                        "InstanceLaunched {}",
                        describe(&body.event_type, &body.data)
                    );
                    return Ok(());
                }
                "InstanceFailed" => {
                    bail!("InstanceFailed {}", describe(&body.event_type, &body.data))
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(waiting.wait_seconds), wait)
        .await
        .with_context(|| {
            format!(
                "{instance_id} did not answer within {} s (it goes on; `streamfleet instance show {instance_id}`)",
                waiting.wait_seconds
            )
        })?
}

/// One line for people about an event's data.
fn describe(event_type: &str, data: &serde_json::Value) -> String {
    let Ok(event) = Event::from_parts(event_type, data.clone()) else {
        return data.to_string();
    };
    match event {
        Event::HypervisorChosen(e) => {
            let mut line = format!("{}: {}", e.hypervisor, e.reasons.join("; "));
            if let Some(offer) = e.offer {
                line.push_str(&format!(
                    " (offer: {} at {}, {})",
                    offer.hypervisor, offer.cost, offer.reason
                ));
            }
            line
        }
        Event::InstancePlaced(e) => format!(
            "on {} in {}: private {}, public {}; {}",
            e.host_id,
            e.region,
            e.addresses.private,
            e.addresses.public,
            e.reasons.join("; ")
        ),
        Event::InstanceLaunched(e) => format!(
            "on {} ({}), answering at {} and {}, pid {}",
            e.host_id, e.hypervisor, e.addresses.private, e.addresses.public, e.pid
        ),
        Event::InstanceFailed(e) => format!("on {}: {}", e.host_id, e.reason),
        _ => data.to_string(),
    }
}

/// Every instance's state, folded from its stream with the domain's fold.
async fn fold_all(client: &async_nats::Client) -> anyhow::Result<BTreeMap<String, InstanceState>> {
    let reader = LogReader::new(client.clone());
    let mut states: BTreeMap<String, State> = BTreeMap::new();
    let mut from = 1;
    loop {
        let page = reader
            .read(&ReadRequest {
                category: Some("instance".into()),
                ..ReadRequest::all(from, 1000)
            })
            .await?;
        for envelope in page.events {
            let body = envelope.body;
            let Ok(event) = Event::from_parts(&body.event_type, body.data) else {
                continue;
            };
            let state = states.remove(&body.subject).unwrap_or_default();
            states.insert(body.subject, streamfleet_domain::evolve(state, &event));
        }
        match page.next {
            Some(n) => from = n,
            None => break,
        }
    }
    Ok(states
        .into_iter()
        .filter_map(|(stream, state)| match state {
            State::Instance(s) => Some((stream.trim_start_matches("instance-").to_string(), s)),
            _ => None,
        })
        .collect())
}

pub async fn run(cmd: InstanceCmd) -> anyhow::Result<()> {
    let id = |s: &str| InstanceId::from(s);
    match cmd {
        InstanceCmd::Images { json: true } => {
            println!(
                "{}",
                serde_json::to_string(&streamfleet_domain::image::CATALOGUE)?
            );
        }
        InstanceCmd::Images { json: false } => {
            for image in streamfleet_domain::image::CATALOGUE {
                let hypervisors: Vec<&str> = image.hypervisors.iter().map(|h| h.name()).collect();
                println!(
                    "{:<16} {:<8} {:<12} {}",
                    image.name,
                    image.os,
                    hypervisors.join(","),
                    image.about
                );
            }
        }
        InstanceCmd::Launch {
            instance_id,
            image,
            hypervisor,
            features,
            region,
            client_ip,
            cpus,
            memory_mib,
            disk_mib,
            waiting,
            login,
        } => {
            let command = Command::LaunchInstance(LaunchInstance {
                instance_id: id(&instance_id),
                image,
                hypervisor,
                features,
                region: region.map(|r| r.as_str().into()),
                client_ip,
                cpus,
                memory_mib,
                disk_mib,
            });
            change(&login, &instance_id, command, Some(&waiting)).await?;
        }
        InstanceCmd::Stop { instance_id, login } => {
            let command = Command::StopInstance(StopInstance {
                instance_id: id(&instance_id),
            });
            change(&login, &instance_id, command, None).await?;
        }
        InstanceCmd::Start {
            instance_id,
            waiting,
            login,
        } => {
            let command = Command::StartInstance(StartInstance {
                instance_id: id(&instance_id),
            });
            change(&login, &instance_id, command, Some(&waiting)).await?;
        }
        InstanceCmd::Reboot {
            instance_id,
            waiting,
            login,
        } => {
            let command = Command::RebootInstance(RebootInstance {
                instance_id: id(&instance_id),
            });
            change(&login, &instance_id, command, Some(&waiting)).await?;
        }
        InstanceCmd::Terminate { instance_id, login } => {
            let command = Command::TerminateInstance(TerminateInstance {
                instance_id: id(&instance_id),
            });
            change(&login, &instance_id, command, None).await?;
        }
        InstanceCmd::AttachVolume {
            instance_id,
            volume_id,
            size_mib,
            login,
        } => {
            let command = Command::AttachVolume(AttachVolume {
                instance_id: id(&instance_id),
                volume_id,
                size_mib,
            });
            change(&login, &instance_id, command, None).await?;
        }
        InstanceCmd::DetachVolume {
            instance_id,
            volume_id,
            login,
        } => {
            let command = Command::DetachVolume(DetachVolume {
                instance_id: id(&instance_id),
                volume_id,
            });
            change(&login, &instance_id, command, None).await?;
        }
        InstanceCmd::AttachNetwork {
            instance_id,
            network_id,
            login,
        } => {
            let command = Command::AttachNetwork(AttachNetwork {
                instance_id: id(&instance_id),
                network_id,
            });
            change(&login, &instance_id, command, None).await?;
        }
        InstanceCmd::DetachNetwork {
            instance_id,
            network_id,
            login,
        } => {
            let command = Command::DetachNetwork(DetachNetwork {
                instance_id: id(&instance_id),
                network_id,
            });
            change(&login, &instance_id, command, None).await?;
        }
        InstanceCmd::Snapshot {
            instance_id,
            snapshot_id,
            login,
        } => {
            let command = Command::SnapshotInstance(SnapshotInstance {
                instance_id: id(&instance_id),
                snapshot_id,
            });
            change(&login, &instance_id, command, None).await?;
        }
        InstanceCmd::List { all, json, login } => {
            let (client, _) = connect(&login).await?;
            let mut states = fold_all(&client).await?;
            if !all {
                states.retain(|_, s| s.status.name() != "terminated");
            }
            if json {
                println!("{}", serde_json::to_string(&states)?);
            } else {
                println!(
                    "{:<20} {:<11} {:<6} {:<14} {:<15} {:<15} volumes",
                    "instance", "status", "hv", "host", "private", "public"
                );
                for (id, s) in &states {
                    let volumes: Vec<String> = s
                        .volumes
                        .iter()
                        .map(|v| format!("{}:{}M", v.volume_id, v.size_mib))
                        .collect();
                    println!(
                        "{:<20} {:<11} {:<6} {:<14} {:<15} {:<15} {}",
                        id,
                        s.status.name(),
                        s.hypervisor.name(),
                        s.host_id,
                        s.addresses.private,
                        s.addresses.public,
                        volumes.join(",")
                    );
                }
            }
        }
        InstanceCmd::Show {
            instance_id,
            json,
            login,
        } => {
            let (client, _) = connect(&login).await?;
            let events = LogReader::new(client)
                .stream(&format!("instance-{instance_id}"))
                .await?;
            if events.is_empty() {
                bail!("no instance {instance_id}");
            }
            let mut state = State::default();
            let mut history = Vec::new();
            for envelope in events {
                let body = envelope.body;
                if let Ok(event) = Event::from_parts(&body.event_type, body.data.clone()) {
                    state = streamfleet_domain::evolve(state, &event);
                }
                history.push((body.time, body.event_type, body.data));
            }
            let State::Instance(state) = state else {
                bail!("instance-{instance_id} holds no instance");
            };
            if json {
                let events: Vec<serde_json::Value> = history
                    .iter()
                    .map(|(time, t, d)| serde_json::json!({"time": time, "type": t, "data": d}))
                    .collect();
                println!("{}", serde_json::json!({"state": state, "events": events}));
            } else {
                println!("{}", serde_json::to_string_pretty(&state)?);
                for (time, event_type, data) in &history {
                    println!("{time} {event_type} {}", describe(event_type, data));
                }
            }
        }
    }
    Ok(())
}
