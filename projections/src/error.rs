//! Errors of the projections, by where they come from.
//!
//! Invariant: every failure reaching a caller names its cause; nothing read from outside (files,
//! NATS, gRPC) panics.

use std::path::PathBuf;

/// A view file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Creating the data directory failed.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// redb failed on a view file.
    #[error("view file {path}: {source}")]
    Redb {
        /// The file.
        path: PathBuf,
        /// redb's error.
        source: Box<redb::Error>,
    },
    /// A stored row is not the message its table holds.
    #[error("view file {path}: row `{key}` of table `{table}` does not decode: {source}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The table.
        table: String,
        /// The key.
        key: String,
        /// prost's error.
        source: prost::DecodeError,
    },
    /// A stored checkpoint is not 8 bytes.
    #[error("view file {path}: checkpoint is not a position")]
    Checkpoint {
        /// The file.
        path: PathBuf,
    },
    /// A background write was cancelled or panicked.
    #[error("store task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// A redb error on the file at `path`.
    pub(crate) fn redb<E: Into<redb::Error>>(path: &std::path::Path, e: E) -> StoreError {
        StoreError::Redb {
            path: path.to_path_buf(),
            source: Box::new(e.into()),
        }
    }
}

/// Why the projections stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionsError {
    /// The view files.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Connecting to NATS failed.
    #[error("cannot connect to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    /// Subscribing to the log head failed.
    #[error("cannot subscribe: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// Following the log failed.
    #[error("following the log failed: {0}")]
    Follow(#[from] streamfleet_bus_client::FollowError),
    /// An event's envelope is not JSON the contract allows.
    #[error("event at position {position} is unreadable: {detail}")]
    Envelope {
        /// Its position.
        position: u64,
        /// What is wrong.
        detail: String,
    },
    /// The event source sent positions out of order.
    #[error("event source skipped from position {expected} to {got}")]
    Gap {
        /// The position expected.
        expected: u64,
        /// The position received.
        got: u64,
    },
    /// Binding the gRPC listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Asked to listen beyond loopback without TLS and the dashboards' credentials: the views
    /// would be readable by anyone who reaches the address.
    #[error(
        "refusing to serve the views on {addr} without TLS and a token: beyond loopback both are \
         required (--tls-cert/--tls-key and SF_VIEWS_TOKEN)"
    )]
    Exposed {
        /// The address.
        addr: std::net::SocketAddr,
    },
    /// The TLS certificate or key could not be read.
    #[error("views API TLS: {path}: {source}")]
    Tls {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The reflection service could not be built.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// A task of the runner panicked or was cancelled.
    #[error("projections task failed: {0}")]
    Task(String),
}
