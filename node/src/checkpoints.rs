//! The node's signed checkpoints: every `checkpoint_every` events and when it stops, it signs
//! the chain hash at its head, appends the checkpoint to `checkpoints.jsonl` beside the log and
//! publishes it on [`subjects::LOG_CHECKPOINT`].
//!
//! Invariant: a checkpoint is signed only for a position that is durable (the log's head), and
//! appended to the file before it is published. The key is made on first start
//! (`checkpoint.key`, 0600; its public half in `checkpoint.pub`) and never leaves the data
//! folder.

use std::path::Path;
use std::time::Duration;
use streamfleet_bus_schemas::subjects;
use streamfleet_eventlog::EventLog;
use streamfleet_eventlog::checkpoint::{self, CheckpointError, CheckpointFile, SigningKey};

/// How often the head is looked at.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// Signs the log's checkpoints.
pub(crate) struct Checkpointer {
    log: EventLog,
    key: SigningKey,
    file: CheckpointFile,
    every: u64,
    last: u64,
}

impl Checkpointer {
    /// The key and file in `data_dir`; continues after the last checkpoint in the file.
    pub(crate) fn open(
        data_dir: &Path,
        log: EventLog,
        every: u64,
    ) -> Result<Self, CheckpointError> {
        let key = checkpoint::load_or_create_key(&data_dir.join("checkpoint.key"), rand::random())?;
        let file = CheckpointFile::new(data_dir.join("checkpoints.jsonl"));
        let last = file.read()?.last().map_or(0, |c| c.position);
        Ok(Checkpointer {
            log,
            key,
            file,
            every: every.max(1),
            last,
        })
    }

    /// Signs the head if anything was recorded since the last checkpoint; returns the checkpoint
    /// as JSON to publish.
    fn sign_head(&mut self) -> Option<Vec<u8>> {
        let head = self.log.head();
        if head <= self.last {
            return None;
        }
        let chain = match self.log.read_all(head, 1) {
            Ok(records) => records.into_iter().next()?.chain,
            Err(error) => {
                tracing::warn!(%error, head, "cannot read the head to sign a checkpoint");
                return None;
            }
        };
        let signed = checkpoint::sign(&self.key, head, &chain);
        if let Err(error) = self.file.append(&signed) {
            tracing::warn!(%error, head, "checkpoint not written");
            return None;
        }
        self.last = head;
        serde_json::to_vec(&signed).ok()
    }

    /// Signs every `every` events until the task is stopped.
    pub(crate) async fn run(
        mut self,
        client: async_nats::Client,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut looks = tokio::time::interval(LOOK_EVERY);
        loop {
            tokio::select! {
                _ = looks.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            if self.log.head() >= self.last + self.every {
                self.publish(&client).await;
            }
        }
        // Stopping: what was recorded since the last one is signed too.
        self.publish(&client).await;
        let _ = client.flush().await;
    }

    async fn publish(&mut self, client: &async_nats::Client) {
        if let Some(body) = self.sign_head()
            && let Err(error) = client.publish(subjects::LOG_CHECKPOINT, body.into()).await
        {
            tracing::warn!(%error, "checkpoint not published");
        }
    }
}
