//! The redemption node's front door: `POST /redeem` over HTTPS, so that the client's address
//! the token's binding is checked against is the connection's own, not one the client claims;
//! and at `/` a page where a browser, with nothing installed, redeems a token and goes on to
//! the host's player.
//! (The NATS subject `sf.svc.redeem` stays for trusted internal callers, which name the
//! client's address themselves.)
//!
//! Invariant: the address checked is the peer's, or — only when the peer is a configured
//! trusted proxy — the last address in its `X-Forwarded-For`; a body naming an address is
//! refused as malformed. Slow or silent connections are cut off (handshake and headers within
//! [`HEADER_TIMEOUT`], the whole request within [`REQUEST_TIMEOUT`]), at most
//! [`MAX_CONNECTIONS`] are served at once, and a refusal names no bound address.

use crate::Shared;
use crate::services::redeem_at_node;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use streamfleet_bus_schemas::services::{
    DoorRedemption, Redemption, RedemptionReply, ServiceError,
};

/// TLS handshake and request headers must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole request must be done within this (`408` after).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 512;
/// Largest request body, bytes.
pub const MAX_BODY: usize = 16 * 1024;
/// The page a browser redeems a token at.
const PAGE: &str = include_str!("redeem.html");

/// Where the front door listens and how.
#[derive(Clone)]
pub struct FrontDoorConfig {
    /// Listen address (port 0: any free port).
    pub listen: SocketAddr,
    /// The server's certificate and key; `None` serves plain HTTP (`up --no-tls` only).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
}

impl std::fmt::Debug for FrontDoorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontDoorConfig")
            .field("listen", &self.listen)
            .field("tls", &self.tls.is_some())
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

/// The connection's peer, handed to the handler.
#[derive(Clone, Copy)]
struct Peer(IpAddr);

/// Binds the front door; returns its address and the task serving it.
pub(crate) async fn start(
    shared: Arc<Shared>,
    config: FrontDoorConfig,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/redeem", axum::routing::post(redeem))
        .route(
            "/",
            axum::routing::get(|| async {
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE)
            }),
        )
        .fallback(|| async {
            refusal(
                StatusCode::NOT_FOUND,
                "not_found",
                "POST /redeem, or the page at /",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(deadline))
        .with_state((shared, Arc::new(config.trusted_proxies.clone())));
    let acceptor = config.tls.map(tokio_rustls::TlsAcceptor::from);
    let task = tokio::spawn(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (socket, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "front door accept failed");
                    continue;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(
                app.clone().layer(Extension(Peer(peer.ip()))),
            );
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let builder = {
                    let mut b = hyper::server::conn::http1::Builder::new();
                    b.timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT);
                    b
                };
                match acceptor {
                    Some(acceptor) => {
                        let Ok(Ok(tls)) =
                            tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(socket)).await
                        else {
                            return;
                        };
                        let _ = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                            .await;
                    }
                    None => {
                        let _ = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                            .await;
                    }
                }
            });
        }
    });
    Ok((addr, task))
}

/// Answers `408` when a request is not done within [`REQUEST_TIMEOUT`].
async fn deadline(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => refusal(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the request took too long",
        ),
    }
}

fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    reply(
        status,
        &RedemptionReply::Error(ServiceError::new(code, message)),
    )
}

fn reply(status: StatusCode, body: &RedemptionReply) -> Response {
    let body = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The address a redemption comes from: the peer's, or its `X-Forwarded-For`'s last entry when
/// the peer is a trusted proxy.
fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> Result<IpAddr, String> {
    if !trusted.contains(&peer) {
        return Ok(peer);
    }
    match headers.get("x-forwarded-for") {
        None => Ok(peer),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.rsplit(',').next())
            .and_then(|last| last.trim().parse().ok())
            .ok_or_else(|| "X-Forwarded-For names no address".to_string()),
    }
}

async fn redeem(
    State((shared, trusted)): State<(Arc<Shared>, Arc<Vec<IpAddr>>)>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let ip = match client_address(peer, &headers, &trusted) {
        Ok(ip) => ip,
        Err(why) => return refusal(StatusCode::BAD_REQUEST, "malformed", &why),
    };
    let door: DoorRedemption = match serde_json::from_slice(&body) {
        Ok(door) => door,
        Err(e) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                "malformed",
                &format!("unreadable redemption: {e}"),
            );
        }
    };
    let answer = redeem_at_node(
        shared,
        Redemption {
            token: door.token,
            client_ip: ip.to_string(),
            latencies_ms: door.latencies_ms,
        },
    )
    .await;
    let status = match &answer {
        RedemptionReply::Provisioned(_) => StatusCode::OK,
        RedemptionReply::Error(e) => match e.code.as_str() {
            "malformed" | "invalid" => StatusCode::BAD_REQUEST,
            "unavailable" | "no_capacity" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::FORBIDDEN,
        },
    };
    reply(status, &answer)
}

#[cfg(test)]
mod tests {
    use super::client_address;
    use axum::http::HeaderMap;

    #[test]
    fn only_a_trusted_proxy_may_name_the_client() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "198.51.100.7, 203.0.113.9".parse().expect("value"),
        );
        let peer = "127.0.0.1".parse().expect("ip");
        assert_eq!(
            client_address(peer, &headers, &[]),
            Ok(peer),
            "not trusted: the peer"
        );
        assert_eq!(
            client_address(peer, &headers, &[peer]),
            Ok("203.0.113.9".parse().expect("ip")),
            "trusted: the address the proxy appended"
        );
        headers.insert("x-forwarded-for", "garbage".parse().expect("value"));
        assert!(client_address(peer, &headers, &[peer]).is_err());
    }
}
