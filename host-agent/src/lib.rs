//! Streamfleet's host agent: one process running one or more (simulated) hosts of a region.
//!
//! Invariant: what a host reports is what it runs. Each host registers once, reports one
//! heartbeat per running session every interval (an empty report when idle), reports a session
//! end with the state the app saved, and answers the control plane's requests addressed to it
//! (`sf.host.<id>.<verb>`) with its actual sessions. A host that is terminated stops reporting.
//!
//! A session's app is the media crate's synthetic app: when the session's client connects to
//! the host's control port with the session's credentials ([`control`], WHEP), the host answers
//! with a WebRTC peer that streams the app's frames as H.264 and takes input back; each heartbeat
//! of a watched session carries its stream's statistics. A client that vanishes ends its session.
//!
//! ```no_run
//! # async fn demo(config: streamfleet_host_agent::AgentConfig) -> Result<(), streamfleet_host_agent::AgentError> {
//! streamfleet_host_agent::run(config, || println!("ready"), async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod control;
mod host;
mod instances;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamfleet_bus_client::NatsLogin;
use streamfleet_bus_schemas::ids::{AppId, HostId, RegionId};

pub use host::Host;

/// What an agent runs.
#[derive(Clone)]
pub struct AgentConfig {
    /// The NATS server.
    pub nats_url: String,
    /// The certificate authority its TLS certificate is issued by (none: plaintext).
    pub nats_ca: Option<std::path::PathBuf>,
    /// The folder of its hosts' keys (`<host id>.nk`, written by admission): each host logs in
    /// with its own, and a host without one is not launched.
    pub host_keys: std::path::PathBuf,
    /// The `launcher` login, when it launches the admitted hosts the control plane requests
    /// for its region.
    pub launcher: Option<NatsLogin>,
    /// The region its hosts are in.
    pub region: RegionId,
    /// The app its first hosts run.
    pub app_id: AppId,
    /// That app's version.
    pub version: String,
    /// Hosts to start with.
    pub hosts: u32,
    /// Sessions per host.
    pub capacity: u32,
    /// Hardware description.
    pub hardware: String,
    /// The IP its control ports listen on and clients connect to.
    pub address: String,
    /// The control ports' certificate and key: with it they speak HTTPS only (the sessions'
    /// credentials and SDP never travel in the clear), without it plain HTTP.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// How often each host reports heartbeats.
    pub heartbeat_interval: Duration,
    /// Prefix of the ids of the hosts it starts with (`<prefix>-1`, `<prefix>-2`, …).
    pub id_prefix: String,
    /// How its hosts stream: resolution, frame rate and bitrate bounds.
    pub stream_policy: streamfleet_media::adapt::Policy,
    /// How long a stream's client may be silent before the host counts it gone and ends the
    /// session (reason `disconnected`).
    pub client_timeout: Duration,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("nats_url", &self.nats_url)
            .field("region", &self.region)
            .field("hosts", &self.hosts)
            .field("address", &self.address)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// NATS refused the connection or a subscription.
    #[error("NATS: {0}")]
    Nats(String),
    /// A host could not start.
    #[error("host {host_id}: {detail}")]
    Host {
        /// The host.
        host_id: HostId,
        /// Why.
        detail: String,
    },
}

/// The agent: its hosts (each with its own connection).
pub(crate) struct Agent {
    pub config: AgentConfig,
    pub hosts: Mutex<BTreeMap<HostId, Arc<Host>>>,
}

/// Runs the agent until `shutdown` resolves, calling `ready` once its first hosts registered.
/// On shutdown its hosts simply stop (as on a power cut): the control plane notices by their
/// missing heartbeats.
pub async fn run(
    config: AgentConfig,
    ready: impl FnOnce(),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let agent = Arc::new(Agent {
        hosts: Mutex::new(BTreeMap::new()),
        config: config.clone(),
    });
    for n in 1..=config.hosts {
        let id = format!("{}-{n}", config.id_prefix);
        launch_host(
            &agent,
            id.into(),
            config.app_id.clone(),
            config.version.clone(),
        )
        .await?;
    }
    // With the launcher's login the agent is also a compute host of its region (hypervisor
    // `sim`): the host-management service launches the streaming hosts it needs as instances,
    // and this agent runs them ([`instances`]).
    let launches = match &config.launcher {
        Some(login) => {
            let client = streamfleet_bus_client::connect(login)
                .await
                .map_err(|e| AgentError::Nats(e.to_string()))?;
            let driver = instances::StreamingHosts::new(
                agent.clone(),
                streamfleet_bus_client::LogReader::new(client.clone()),
            );
            let offer = streamfleet_compute::agent::HostOffer {
                host_id: format!("{}-launcher", config.id_prefix).into(),
                region: config.region.clone(),
                // Simulated: its real limit is the admitted identities it holds keys for.
                cpus: 4096,
                memory_mib: u32::MAX,
            };
            let (following_tx, following) = tokio::sync::oneshot::channel();
            let task = tokio::spawn(async move {
                let followed =
                    streamfleet_compute::agent::run(Arc::new(driver), client, offer, move || {
                        let _ = following_tx.send(());
                    })
                    .await;
                if let Err(e) = followed {
                    tracing::error!(error = %e, "the agent's compute host stopped");
                }
            });
            following
                .await
                .map_err(|_| AgentError::Nats("the compute host did not register".into()))?;
            Some(task)
        }
        None => None,
    };
    tracing::info!(region = %config.region, hosts = config.hosts, "host agent running");
    ready();
    shutdown.await;
    if let Some(task) = launches {
        task.abort();
    }
    let hosts: Vec<Arc<Host>> = agent
        .hosts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect();
    for h in hosts {
        h.stop();
        h.flush().await;
    }
    Ok(())
}

/// Launches a host and serves its control port.
pub(crate) async fn launch_host(
    agent: &Arc<Agent>,
    id: HostId,
    app_id: AppId,
    version: String,
) -> Result<Arc<Host>, AgentError> {
    let (host, listener) = host::launch(agent, id, app_id, version).await?;
    tokio::spawn(control::serve(
        host.clone(),
        listener,
        agent.config.tls.clone(),
        host.stopped(),
    ));
    Ok(host)
}
