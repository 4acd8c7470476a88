//! The node process: the log plus its three NATS services.

use crate::commands::CommandHandler;
use crate::login::{NatsLogin, connect};
use crate::{publisher, read_api};
use futures::StreamExt;
use std::path::PathBuf;
use std::sync::Arc;
use streamfleet_bus_schemas::subjects;
use streamfleet_eventlog::{Config as LogConfig, EventLog, OpenError};
use tokio::task::JoinSet;

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
    /// NATS refused a subscription.
    #[error("NATS: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
}

/// A running node.
pub struct Node {
    log: EventLog,
    tasks: JoinSet<()>,
}

impl Node {
    /// Opens the log, connects, and starts serving commands, reads and events.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let log = EventLog::open(config.data_dir.join("events.redb"), config.log.clone())?;
        let client = connect(&config.nats).await?;
        let mut tasks = JoinSet::new();

        let handler = Arc::new(CommandHandler::new(
            log.clone(),
            config.max_command_bytes,
            config.conflict_retries,
        ));
        let mut commands = client
            .queue_subscribe(subjects::COMMANDS, QUEUE.into())
            .await?;
        let c = client.clone();
        tasks.spawn(async move {
            while let Some(msg) = commands.next().await {
                let (handler, client) = (handler.clone(), c.clone());
                tokio::spawn(async move {
                    let reply = handler.handle(msg.subject.as_str(), &msg.payload).await;
                    let Some(to) = msg.reply else { return };
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
        tasks.spawn(async move {
            while let Some(msg) = reads.next().await {
                let (client, log) = (c.clone(), l.clone());
                tokio::spawn(async move {
                    let body =
                        read_api::answer(&log, &msg.payload, client.server_info().max_payload)
                            .await;
                    if let Some(to) = msg.reply
                        && let Err(e) = client.publish(to, body).await
                    {
                        tracing::warn!(error = %e, "read reply not sent");
                    }
                });
            }
        });

        // Events go out on a connection of their own, so replies and events do not queue behind
        // each other in one socket.
        let events_client = connect(&config.nats).await?;
        tasks.spawn(publisher::publish_events(events_client, log.clone()));
        tasks.spawn(publisher::announce_head(client.clone(), log.clone()));
        client.flush().await.ok();
        tracing::info!(head = log.head(), data_dir = %config.data_dir.display(), "node serving");
        Ok(Node { log, tasks })
    }

    /// The node's log (for in-process use: benchmarks, tests).
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Stops serving; the log closes once in-flight appends are answered.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}
