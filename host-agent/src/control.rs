//! A host's control endpoint: HTTP/1.1 on the host's control port, where a client holding a
//! session's credentials looks at its session, watches it (WHEP) and ends it, and where a browser
//! gets the player page.
//!
//! Invariant: only the session's own credentials open it (`401` without, `403` with others',
//! and the same `403` for a session this host does not run, so that the answer does not tell
//! which session ids exist); a slow or idle client is cut off (headers within
//! [`HEADER_TIMEOUT`], a whole request within [`REQUEST_TIMEOUT`]) and at most
//! [`MAX_CONNECTIONS`] are served at once; a
//! request the server cannot use is answered with a 4xx and a JSON `{"error": …}` naming why,
//! without touching any session; one session has at most one live stream (`409` for a second).
//!
//! - `GET /sessions/<id>` with `Authorization: Bearer <credentials>`: the session, as JSON.
//! - `DELETE /sessions/<id>` (same header; optional `Sf-Saved-State: <text>`): ends it; the
//!   app saves its state (the header's text, or its own progress) for the user's next session.
//! - `POST /sessions/<id>/whep` (same header, `Content-Type: application/sdp`, an SDP offer):
//!   `201 Created` with the SDP answer and `Location: /sessions/<id>/whep`; the stream starts.
//! - `DELETE /sessions/<id>/whep`: ends the stream and the session, as the user closing the app.
//! - `GET /play`: the browser player (session id and credentials in the URL fragment).

use crate::host::{Host, RunningSession};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use std::time::Duration;
use streamfleet_bus_schemas::ids::{AppId, HostId, SessionId, UserId};
use streamfleet_bus_schemas::payloads::SessionEndReason;
use streamfleet_media::stream::{OfferError, Stream};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The session as its client sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionView {
    /// The session.
    pub session_id: SessionId,
    /// The host.
    pub host_id: HostId,
    /// The app.
    pub app_id: AppId,
    /// The app's version.
    pub version: String,
    /// The user.
    pub user_id: UserId,
    /// State handed over from the user's previous session.
    pub restored_state: Option<String>,
    /// Whether a client is watching its stream.
    pub streaming: bool,
}

/// The player page.
const PLAYER: &str = include_str!("player.html");

/// A request's headers must have arrived this long after its first byte (or after the
/// connection's previous request): a client sending them slowly is cut off (slowloris).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole request, body and answer included, must be done within this (`408` after).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections served at once; more wait in the listen backlog until one closes.
pub const MAX_CONNECTIONS: usize = 256;

/// Serves the control port until the host stops.
pub(crate) async fn serve(
    host: Arc<Host>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stopped: watch::Receiver<bool>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let app = Router::new()
        .route("/sessions/{id}", get(look).delete(end))
        .route(
            "/sessions/{id}/whep",
            axum::routing::post(offer).delete(end_stream),
        )
        .route(
            "/play",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PLAYER) }),
        )
        .fallback(|uri: axum::http::Uri| async move {
            error(
                StatusCode::NOT_FOUND,
                &format!("no such resource `{}`", uri.path()),
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(
            streamfleet_media::stream::MAX_OFFER_BYTES,
        ))
        .layer(axum::middleware::from_fn(deadline))
        .with_state(host.clone());
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stopped.wait_for(|s| *s) => break,
        };
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(error) => {
                    tracing::warn!(host = %host.id, %error, "control port accept failed");
                    continue;
                }
            },
            _ = stopped.wait_for(|s| *s) => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut stop = stopped.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // HTTPS when the host has a certificate: the handshake, like the headers, must be
            // done within HEADER_TIMEOUT.
            let io: Box<dyn Io> = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(socket)).await {
                        Ok(Ok(tls)) => Box::new(tls),
                        _ => return,
                    }
                }
                None => Box::new(socket),
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(io), service);
            tokio::pin!(connection);
            let host_stopped = tokio::select! {
                _ = connection.as_mut() => false,
                stopped = stop.wait_for(|s| *s) => stopped.is_ok(),
            };
            if host_stopped {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        });
    }
    host.close_streams();
}

/// A connection's byte stream, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Answers `408` when a request (its body included) is not done within [`REQUEST_TIMEOUT`].
async fn deadline(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error(StatusCode::REQUEST_TIMEOUT, "the request took too long"),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": message }).to_string(),
    )
        .into_response()
}

/// Why a request is refused: its status and the reason the body names.
type Refusal = (StatusCode, String);

/// Checks the bearer credentials against the session; the session on success.
fn authorise(
    host: &Host,
    session_id: &str,
    headers: &HeaderMap,
) -> Result<RunningSession, Refusal> {
    let credentials = bearer(headers)?;
    admit(&host.id, session_id, host.session(session_id), credentials)
}

/// The bearer credentials of a request.
fn bearer(headers: &HeaderMap) -> Result<&str, Refusal> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            (
                StatusCode::UNAUTHORIZED,
                "session credentials required: Authorization: Bearer <credentials>".into(),
            )
        })
}

/// Whether `credentials` open `session_id` on host `host_id` (which runs `session`, if any).
fn admit(
    host_id: &str,
    session_id: &str,
    session: Option<RunningSession>,
    credentials: &str,
) -> Result<RunningSession, Refusal> {
    let refused = || {
        (
            StatusCode::FORBIDDEN,
            format!("these credentials do not open session `{session_id}` on host {host_id}"),
        )
    };
    match session {
        Some(session)
            if streamfleet_bus_schemas::matches_hash(
                credentials.trim(),
                &session.credential_hash,
            ) =>
        {
            Ok(session)
        }
        _ => Err(refused()),
    }
}

async fn look(
    State(host): State<Arc<Host>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let session = match authorise(&host, &id, &headers) {
        Ok(s) => s,
        Err((status, why)) => return error(status, &why),
    };
    let view = SessionView {
        streaming: host.stream(&id).is_some(),
        session_id: id.into(),
        host_id: host.id.clone(),
        app_id: host.app_id.clone(),
        version: host.version.clone(),
        user_id: session.user_id,
        restored_state: session.restored_state,
    };
    axum::Json(view).into_response()
}

async fn end(
    State(host): State<Arc<Host>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let session = match authorise(&host, &id, &headers) {
        Ok(s) => s,
        Err((status, why)) => return error(status, &why),
    };
    let played = chrono::Utc::now()
        .signed_duration_since(session.started_at)
        .num_milliseconds();
    let saved = headers
        .get("sf-saved-state")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| format!("played {played} ms"));
    match host
        .end_session(&id, SessionEndReason::Ended, Some(saved))
        .await
    {
        Ok(()) => axum::Json(serde_json::json!({ "ended": id })).into_response(),
        Err(e) => error(StatusCode::CONFLICT, &e),
    }
}

async fn offer(
    State(host): State<Arc<Host>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err((status, why)) = authorise(&host, &id, &headers) {
        return error(status, &why);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/sdp") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("an offer is Content-Type: application/sdp, not `{content_type}`"),
        );
    }
    let Ok(sdp) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "malformed SDP offer: not UTF-8");
    };
    // Claim the session's stream slot first, so two racing offers cannot both start.
    if !host.claim_stream(&id) {
        return error(
            StatusCode::CONFLICT,
            &format!("session `{id}` is already being watched; DELETE its stream first"),
        );
    }
    match Stream::answer(sdp, &host.stream_config()).await {
        Ok((stream, answer)) => {
            host.start_stream(&id, Arc::new(stream));
            (
                StatusCode::CREATED,
                [
                    (header::CONTENT_TYPE, "application/sdp".to_string()),
                    (header::LOCATION, format!("/sessions/{id}/whep")),
                ],
                answer,
            )
                .into_response()
        }
        Err(e) => {
            host.release_stream(&id);
            let status = match &e {
                OfferError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                OfferError::Malformed(_) => StatusCode::BAD_REQUEST,
                OfferError::NoH264(_) => StatusCode::NOT_ACCEPTABLE,
                OfferError::Answer(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::info!(host = %host.id, session = %id, error = %e, "offer refused");
            error(status, &e.to_string())
        }
    }
}

async fn end_stream(
    State(host): State<Arc<Host>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err((status, why)) = authorise(&host, &id, &headers) {
        return error(status, &why);
    }
    let Some(stream) = host.stream(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("session `{id}` has no stream"),
        );
    };
    let report = stream.report();
    stream.close();
    let saved = format!("watched {} frames", report.frames);
    match host
        .end_session(&id, SessionEndReason::Ended, Some(saved))
        .await
    {
        Ok(()) => axum::Json(serde_json::json!({ "ended": id })).into_response(),
        Err(e) => error(StatusCode::CONFLICT, &e),
    }
}

/// A client's request to a host's control port: `(status, body)`. For clients, tests and the
/// demo; `headers` are sent as given (e.g. `("authorization", "Bearer …")`).
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let (status, body) = streamfleet_host_agent::control::request(
///     &Default::default(), "127.0.0.1", 7000, "GET", "/sessions/s1", &[("authorization", "Bearer 00")],
/// ).await?;
/// # Ok(()) }
/// ```
pub async fn request(
    via: &streamfleet_media::signal::Via,
    address: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let reply =
        streamfleet_media::signal::request_via(via, address, port, method, path, headers, None)
            .await?;
    Ok((reply.status, reply.body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn running(credentials: &str) -> RunningSession {
        RunningSession {
            credential_hash: if credentials.is_empty() {
                String::new()
            } else {
                streamfleet_bus_schemas::secret_hash(credentials)
            },
            user_id: "ada".into(),
            restored_state: None,
            started_at: chrono::Utc::now(),
        }
    }

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("a header value"),
        );
        headers
    }

    #[test]
    fn no_bearer_credentials_is_401_naming_the_header() {
        let (status, why) = bearer(&HeaderMap::new()).expect_err("refused");
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(why.contains("Authorization: Bearer"), "{why}");
        let (status, _) = bearer(&with_auth("Basic YWRhOng=")).expect_err("not bearer");
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(bearer(&with_auth("Bearer c1")).expect("bearer"), "c1");
    }

    #[test]
    fn only_the_sessions_own_credentials_open_it() {
        let opened = admit("h1", "s1", Some(running("c1")), "c1").expect("its own");
        assert_eq!(opened.user_id, "ada");
        // Surrounding whitespace from a copy-paste is forgiven; anything else is not.
        admit("h1", "s1", Some(running("c1")), " c1 ").expect("trimmed");
        let (status, _) = admit("h1", "s1", Some(running("c1")), "c2").expect_err("others'");
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = admit("h1", "s1", Some(running("c1")), "").expect_err("empty");
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[test]
    fn a_stray_session_opens_for_nobody_and_an_unknown_one_reads_as_not_yours() {
        // A stray session (reported by the host, unknown to the log) has no credential hash.
        let (status, _) = admit("h1", "s9", Some(running("")), "").expect_err("stray");
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Unknown and not-yours are the same answer: it does not tell which ids exist.
        let unknown = admit("h1", "s9", None, "c1").expect_err("unknown");
        let not_yours = admit("h1", "s9", Some(running("c2")), "c1").expect_err("others'");
        assert_eq!(unknown, not_yours);
        assert_eq!(unknown.0, StatusCode::FORBIDDEN);
    }

    #[test]
    fn refusals_are_json_naming_the_problem() {
        let response = error(StatusCode::CONFLICT, "already watched");
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static("application/json"))
        );
    }
}
