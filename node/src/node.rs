//! The node process: the log plus its three NATS services.

use crate::checkpoints::Checkpointer;
use crate::commands::CommandHandler;
use crate::{publisher, read_api};
use futures::StreamExt;
use std::path::PathBuf;
use std::sync::Arc;
use streamfleet_bus_client::{NatsLogin, connect};
use streamfleet_bus_schemas::subjects;
use streamfleet_eventlog::{Config as LogConfig, EventLog, OpenError};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Commands decided at once; past this the node takes no more off the socket until one is done.
const MAX_COMMANDS_IN_FLIGHT: usize = 8192;
/// Log reads served at once (each may hold up to a NATS payload of events in memory).
const MAX_READS_IN_FLIGHT: usize = 64;

/// Queue group shared by the node's subscriptions.
const QUEUE: &str = "sf-node";

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Folder of the log file (`events.redb`).
    pub data_dir: PathBuf,
    /// Login as the `node` role.
    pub nats: NatsLogin,
    /// Largest command request, bytes.
    pub max_command_bytes: usize,
    /// Times a command is decided again after losing a race for its stream.
    pub conflict_retries: u32,
    /// The log's limits.
    pub log: LogConfig,
    /// Events between two signed checkpoints of the chain head (one is signed on stop too).
    pub checkpoint_every: u64,
    /// Where the regions and the clients' addresses are: a launch naming a client goes to the
    /// nearest region that can run it (none: regions by cost only).
    pub geography: streamfleet_domain::instance::Geography,
}

impl NodeConfig {
    /// Defaults for a data folder and login.
    pub fn new(data_dir: impl Into<PathBuf>, nats: NatsLogin) -> Self {
        NodeConfig {
            data_dir: data_dir.into(),
            nats,
            max_command_bytes: 64 * 1024,
            conflict_retries: 8,
            log: LogConfig::default(),
            checkpoint_every: 1000,
            geography: Default::default(),
        }
    }
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data folder cannot be created.
    #[error("data folder {path}: {source}")]
    DataDir {
        /// The folder.
        path: String,
        /// The OS's reason.
        source: std::io::Error,
    },
    /// The log cannot be opened.
    #[error(transparent)]
    Log(#[from] OpenError),
    /// NATS refused the connection.
    #[error("NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    /// The checkpoint key or file cannot be used.
    #[error("checkpoints: {0}")]
    Checkpoint(#[from] streamfleet_eventlog::checkpoint::CheckpointError),
    /// NATS refused a subscription.
    #[error("NATS: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
}

/// A running node.
pub struct Node {
    log: EventLog,
    tasks: JoinSet<()>,
    command_loop: tokio::task::JoinHandle<()>,
    stopping: Arc<tokio::sync::Notify>,
    in_flight: Arc<Semaphore>,
    client: async_nats::Client,
    checkpoints: tokio::task::JoinHandle<()>,
    stop_checkpoints: tokio::sync::watch::Sender<bool>,
}

impl Node {
    /// Opens the log, connects, and starts serving commands, reads and events.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let log = EventLog::open(config.data_dir.join("events.redb"), config.log.clone())?;
        let checkpointer =
            Checkpointer::open(&config.data_dir, log.clone(), config.checkpoint_every)?;
        let client = connect(&config.nats).await?;
        let mut tasks = JoinSet::new();

        let handler = Arc::new(
            CommandHandler::new(
                log.clone(),
                config.max_command_bytes,
                config.conflict_retries,
            )
            .with_geography(config.geography.clone()),
        );
        let mut commands = client
            .queue_subscribe(subjects::COMMANDS, QUEUE.into())
            .await?;
        let c = client.clone();
        let in_flight = Arc::new(Semaphore::new(MAX_COMMANDS_IN_FLIGHT));
        let permits = in_flight.clone();
        let stopping = Arc::new(tokio::sync::Notify::new());
        let stop_signal = stopping.clone();
        let command_loop = tokio::spawn(async move {
            let mut draining = false;
            loop {
                let msg = tokio::select! {
                    msg = commands.next() => msg,
                    _ = stop_signal.notified(), if !draining => {
                        // Unsubscribe, then answer what was already delivered to us.
                        draining = true;
                        if let Err(e) = commands.drain().await {
                            tracing::warn!(error = %e, "command subscription not drained");
                            return;
                        }
                        continue;
                    }
                };
                let Some(msg) = msg else { return };
                // Backpressure: past the limit the node stops taking requests off the socket.
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (handler, client) = (handler.clone(), c.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    // Decided and recorded even when it cannot be answered: the sender may
                    // retry under the same id and get the answer then.
                    let reply = handler.handle(msg.subject.as_str(), &msg.payload).await;
                    let Some(to) = streamfleet_bus_client::reply_inbox(&msg) else {
                        return;
                    };
                    match serde_json::to_vec(&reply) {
                        Ok(body) => {
                            if let Err(e) = client.publish(to, body.into()).await {
                                tracing::warn!(error = %e, "command reply not sent");
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "command reply not serializable"),
                    }
                });
            }
        });

        let mut reads = client
            .queue_subscribe(subjects::LOG_READ, QUEUE.into())
            .await?;
        let (c, l) = (client.clone(), log.clone());
        let read_permits = Arc::new(Semaphore::new(MAX_READS_IN_FLIGHT));
        tasks.spawn(async move {
            while let Some(msg) = reads.next().await {
                let Ok(permit) = read_permits.clone().acquire_owned().await else {
                    return;
                };
                let (client, log) = (c.clone(), l.clone());
                let Some(to) = streamfleet_bus_client::reply_inbox(&msg) else {
                    continue;
                };
                tokio::spawn(async move {
                    let _permit = permit;
                    let body =
                        read_api::answer(&log, &msg.payload, client.server_info().max_payload)
                            .await;
                    if let Err(e) = client.publish(to, body).await {
                        tracing::warn!(error = %e, "read reply not sent");
                    }
                });
            }
        });

        let health_requests = client
            .queue_subscribe(subjects::LOG_HEALTH, QUEUE.into())
            .await?;
        tasks.spawn(crate::health::serve(
            client.clone(),
            health_requests,
            log.clone(),
        ));

        // Events go out on a connection of their own, so replies and events do not queue behind
        // each other in one socket.
        let events_client = connect(&config.nats).await?;
        tasks.spawn(publisher::publish_events(events_client, log.clone()));
        tasks.spawn(publisher::announce_head(client.clone(), log.clone()));
        let (stop_checkpoints, checkpoints_stop) = tokio::sync::watch::channel(false);
        let checkpoints = tokio::spawn(checkpointer.run(client.clone(), checkpoints_stop));
        client.flush().await.ok();
        tracing::info!(head = log.head(), data_dir = %config.data_dir.display(), "node serving");
        Ok(Node {
            log,
            tasks,
            command_loop,
            stopping,
            in_flight,
            client,
            checkpoints,
            stop_checkpoints,
        })
    }

    /// The node's log (for in-process use: benchmarks, tests).
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Stops taking commands, answers the ones in flight, then stops publishing and closes.
    pub async fn stop(mut self) {
        // Unsubscribe from commands and take in what was already delivered: after this no
        // command reaches this node, and none that reached it is dropped unanswered.
        self.stopping.notify_one();
        let _ = self.command_loop.await;
        // Every in-flight command holds a permit: having them all means all were answered.
        let _all = self
            .in_flight
            .acquire_many(MAX_COMMANDS_IN_FLIGHT as u32)
            .await;
        // Their replies are queued on the connection: send them before going.
        let _ = self.client.flush().await;
        // Everything is recorded: sign where the log ends.
        let _ = self.stop_checkpoints.send(true);
        let _ = self.checkpoints.await;
        self.tasks.shutdown().await;
        tracing::info!(head = self.log.head(), "node stopped");
    }
}
