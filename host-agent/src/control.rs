//! A host's control endpoint: a small HTTP/1.1 server on the host's control port, where a client
//! holding a session's credentials looks at its session and ends it.
//!
//! Invariant: only the session's own credentials open it (`401` without, `403` with others'),
//! and a request the server cannot read is answered `400` without touching any session.
//!
//! - `GET /sessions/<id>` with `Authorization: Bearer <credentials>`: the session, as JSON.
//! - `DELETE /sessions/<id>` (same header; optional `Sf-Saved-State: <text>`): ends it; the
//!   app saves its state (the header's text, or its own progress) for the user's next session.

use crate::host::Host;
use std::sync::Arc;
use streamfleet_bus_schemas::payloads::SessionEndReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Largest request head read, bytes.
const MAX_HEAD: usize = 8 * 1024;

/// The session as its client sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionView {
    /// The session.
    pub session_id: String,
    /// The host.
    pub host_id: String,
    /// The app.
    pub app_id: String,
    /// The app's version.
    pub version: String,
    /// The user.
    pub user_id: String,
    /// State handed over from the user's previous session.
    pub restored_state: Option<String>,
}

/// Serves the control port until the host stops.
pub(crate) async fn serve(
    host: Arc<Host>,
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(error) => {
                    tracing::warn!(host = %host.id, %error, "accept failed");
                    continue;
                }
            },
            _ = stopped.wait_for(|s| *s) => return,
        };
        tokio::spawn(connection(host.clone(), stream));
    }
}

async fn connection(host: Arc<Host>, mut stream: TcpStream) {
    let mut buf = Vec::with_capacity(1024);
    let head = loop {
        let mut chunk = [0u8; 1024];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break String::from_utf8_lossy(&buf[..end]).to_string();
        }
        if buf.len() > MAX_HEAD {
            let _ = respond(&mut stream, 431, &error_body("request head too large")).await;
            return;
        }
    };
    let (status, body) = route(&host, &head).await;
    let _ = respond(&mut stream, status, &body).await;
}

fn error_body(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

async fn route(host: &Host, head: &str) -> (u16, String) {
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let (method, path) = (
        request_line.next().unwrap_or(""),
        request_line.next().unwrap_or(""),
    );
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let Some(session_id) = path
        .strip_prefix("/sessions/")
        .filter(|s| !s.is_empty() && !s.contains('/'))
    else {
        return (404, error_body(&format!("no such resource `{path}`")));
    };
    let Some(credentials) =
        header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_string))
    else {
        return (
            401,
            error_body("session credentials required: Authorization: Bearer <credentials>"),
        );
    };
    let Some(session) = host.session(session_id) else {
        return (
            404,
            error_body(&format!("host {} runs no session `{session_id}`", host.id)),
        );
    };
    let given = blake3::hash(credentials.as_bytes()).to_hex().to_string();
    if session.credential_hash.is_empty() || given != session.credential_hash {
        return (
            403,
            error_body("these credentials do not open this session"),
        );
    }
    match method {
        "GET" => {
            let view = SessionView {
                session_id: session_id.to_string(),
                host_id: host.id.clone(),
                app_id: host.app_id.clone(),
                version: host.version.clone(),
                user_id: session.user_id,
                restored_state: session.restored_state,
            };
            (200, serde_json::to_string(&view).unwrap_or_default())
        }
        "DELETE" => {
            let played = chrono::Utc::now()
                .signed_duration_since(session.started_at)
                .num_milliseconds();
            let saved = header("sf-saved-state").unwrap_or_else(|| format!("played {played} ms"));
            match host
                .end_session(session_id, SessionEndReason::Ended, Some(saved))
                .await
            {
                Ok(()) => (200, serde_json::json!({ "ended": session_id }).to_string()),
                Err(e) => (409, error_body(&e)),
            }
        }
        other => (405, error_body(&format!("method {other} not allowed"))),
    }
}

/// A client's request to a host's control port: `(status, body)`. For clients, tests and the
/// demo; `headers` are sent as given (e.g. `("authorization", "Bearer …")`).
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let (status, body) = streamfleet_host_agent::control::request(
///     "127.0.0.1", 7000, "GET", "/sessions/s1", &[("authorization", "Bearer 00")],
/// ).await?;
/// # Ok(()) }
/// ```
pub async fn request(
    address: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect((address, port)).await?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {address}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "no HTTP status line")
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

async fn respond(stream: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let text = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).await?;
    stream.shutdown().await
}
