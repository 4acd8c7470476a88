//! What the applier, the gRPC service and the running handle share.
//!
//! Invariant: only the applier (`runner.rs`) writes the views and sends on `changes` and
//! `stored`; the gRPC service (`grpc.rs`) only reads. Both depend on this file, neither on the
//! other's internals.

use crate::views::{ViewBatch, ViewSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{RwLock, broadcast, watch};

/// What the applier, the gRPC service and the handle share.
pub(crate) struct Shared {
    /// The views (written by the applier only).
    pub views: RwLock<ViewSet>,
    /// Each store's batches, after they are written.
    pub changes: broadcast::Sender<Arc<Vec<ViewBatch>>>,
    /// The lowest view position stored.
    pub stored: watch::Sender<u64>,
    /// Whether the views are still written to their files (false after a write failed: a full
    /// disk; they go on serving from memory).
    pub storing: watch::Sender<bool>,
    /// The log's head as last known.
    pub head: watch::Receiver<Option<u64>>,
    /// The hosts' heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Turns true when the projections stop (watches end).
    pub stop: watch::Receiver<bool>,
}
