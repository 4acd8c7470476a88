//! Streamfleet's projections: eight views of the event log for dashboards, stored in redb and
//! served over gRPC.
//!
//! Invariant: every view is a pure fold of the log in position order ([`views::View`]); its rows
//! and checkpoint are stored together ([`store`]), so rebuilding a view from the first position
//! gives exactly the stored bytes of the live one ([`store::diff`] is empty).
//!
//! - [`views`]: heartbeats (liveness), consistency (recorded vs reported, discrepancies),
//!   sessions, hosts and capacity, rollouts, instances (with their compute hosts and the
//!   hypervisors' capability table), migrations (instances moved between hosts), nodes
//!   (distributed file systems, their nodes' health and recoveries).
//! - [`store`]: `<dir>/<view>.redb` files, [`store::dump`] and [`store::diff`].
//! - [`runner`]: follows the log over NATS (or any [`runner::EventFeed`]), applies, stores in
//!   batches, broadcasts changes, serves gRPC ([`pb`], service `streamfleet.views.v1.Views`,
//!   with reflection and health).
//! - [`client`]: connecting to the views from a command line (TLS, the dashboards' token).
//!
//! ```no_run
//! # async fn demo() -> Result<(), streamfleet_projections::ProjectionsError> {
//! use std::time::Duration;
//! use streamfleet_bus_client::NatsLogin;
//! use streamfleet_projections::{ProjectionsConfig, start};
//!
//! let config = ProjectionsConfig {
//!     nats: NatsLogin::new("nats://127.0.0.1:4222", "dashboard", "secret"),
//!     data_dir: "/var/lib/streamfleet/views".into(),
//!     grpc_addr: "127.0.0.1:0".parse().expect("an address"),
//!     heartbeat_interval: Duration::from_secs(5),
//!     tls: None,   // on loopback; beyond it TLS and a token are required
//!     token: None,
//! };
//! let running = start(config).await?;
//! println!("grpc listening on {}", running.grpc_addr());
//! running.wait_for_position(1).await;
//! running.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod client;
pub mod codec;
pub mod error;
pub mod grpc;
pub mod rows;
pub mod runner;
mod shared;
pub mod store;
pub mod views;

/// The gRPC messages and services generated from `proto/views.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("streamfleet.views.v1");

    /// The encoded file descriptor set of `views.proto` (with its imports), for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/views_descriptor.bin"));
}

pub use error::{ProjectionsError, StoreError};
pub use runner::{
    ApiTls, EventFeed, FeedSender, ProjectionsConfig, RunningProjections, SourcedEvent, rebuild,
    rebuild_from, run, start, start_with_source,
};
pub use store::{Difference, DumpRow, diff, diff_rows, dump};
