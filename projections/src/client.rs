//! A client of the views for command lines: plaintext on loopback, TLS with a given CA
//! otherwise, and the dashboards' token on every call when one is given.
//!
//! ```no_run
//! # async fn demo() -> Result<(), streamfleet_projections::client::ClientError> {
//! use streamfleet_projections::{client, pb};
//! let mut views = client::connect("http://127.0.0.1:50051", None, None).await?;
//! let migrations = views
//!     .get_migrations(pb::MigrationsRequest::default())
//!     .await?
//!     .into_inner();
//! println!("{} migrations at position {}", migrations.migrations.len(), migrations.position);
//! # Ok(()) }
//! ```

use crate::pb::views_client::ViewsClient;
use std::path::{Path, PathBuf};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Puts `authorization: Bearer <token>` on every call (nothing without a token).
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connected views client.
pub type Client = ViewsClient<InterceptedService<Channel, Bearer>>;

/// Why the views could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not one.
    #[error("views URL `{url}`: {source}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The CA could not be read.
    #[error("views CA {path}: {source}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An `https` URL without a CA to trust.
    #[error("views URL `{0}` is https: give the CA that signed its certificate")]
    NoCa(String),
    /// The token cannot be a header value.
    #[error("the views token is not printable ASCII")]
    Token,
    /// Connecting failed.
    #[error("cannot reach the views at {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// A call was refused or failed.
    #[error("views: {0}")]
    Call(#[from] tonic::Status),
}

/// Connects to the views at `url` (`http://…` or `https://…`, trusting `ca`), sending `token`
/// with every call.
pub async fn connect(
    url: &str,
    ca: Option<&Path>,
    token: Option<&str>,
) -> Result<Client, ClientError> {
    let bad_url = |source| ClientError::Url {
        url: url.to_string(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(url.to_string()).map_err(bad_url)?;
    if url.starts_with("https://") {
        let path = ca.ok_or_else(|| ClientError::NoCa(url.to_string()))?;
        let pem = std::fs::read(path).map_err(|source| ClientError::Ca {
            path: path.to_path_buf(),
            source,
        })?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        if let Some(host) = endpoint.uri().host() {
            tls = tls.domain_name(host.trim_start_matches('[').trim_end_matches(']'));
        }
        endpoint = endpoint.tls_config(tls).map_err(bad_url)?;
    }
    let bearer = match token {
        Some(token) => Some(
            format!("Bearer {token}")
                .parse::<MetadataValue<Ascii>>()
                .map_err(|_| ClientError::Token)?,
        ),
        None => None,
    };
    let channel = endpoint
        .connect()
        .await
        .map_err(|source| ClientError::Connect {
            url: url.to_string(),
            source,
        })?;
    Ok(ViewsClient::with_interceptor(channel, Bearer(bearer)))
}
