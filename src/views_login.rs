//! How a command-line tool reaches the projections' views over gRPC (`streamfleet migration
//! list`, `streamfleet dfs status`): one set of flags, one way to connect.

use std::path::{Path, PathBuf};

/// Where the projections' views are served, and how to reach them.
#[derive(clap::Args)]
pub struct ViewsLogin {
    /// The views' gRPC URL (`projections serve --grpc`, `up --grpc`); `https://…` beyond
    /// loopback.
    #[arg(long, env = "SF_VIEWS_URL", default_value = "http://127.0.0.1:50051")]
    views_url: String,
    /// The certificate authority that signed the views' certificate (an `https` URL); absent:
    /// the NATS CA (`--nats-ca`, `SF_NATS_CA`: `up` signs both with `<state>/tls/ca.pem`).
    #[arg(long, env = "SF_VIEWS_CA")]
    views_ca: Option<PathBuf>,
    /// The dashboards' token (required beyond loopback).
    #[arg(long, env = "SF_VIEWS_TOKEN", hide_env_values = true)]
    views_token: Option<String>,
}

impl ViewsLogin {
    /// The views' client; an `https` URL without `--views-ca` trusts `nats_ca`.
    pub async fn connect(
        &self,
        nats_ca: Option<&Path>,
    ) -> anyhow::Result<streamfleet_projections::client::Client> {
        let ca = self.views_ca.as_deref().or(nats_ca);
        Ok(streamfleet_projections::client::connect(
            &self.views_url,
            ca,
            self.views_token.as_deref(),
        )
        .await?)
    }
}
