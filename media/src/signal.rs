//! WHEP-style signalling over HTTP/1.1 (plain, or over TLS verified against a given authority),
//! client side: POST an SDP offer with the session's credentials as a bearer token, get the
//! answer and the resource to DELETE at the end. The redemption front door is asked the same way.
//!
//! The HTTP is hyper's (one connection per request, optionally from a chosen local address);
//! this module only shapes the request and collects the reply.
//!
//! Invariant: a reply's body is read to its end (as its `content-length`, chunked framing or the
//! connection's close says) and at most [`MAX_REPLY`] bytes; anything else is an error naming
//! what was wrong. A reply with any status is a [`Reply`]: what a status means is the caller's.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use std::io::{Error, ErrorKind};
use std::net::IpAddr;
use std::sync::Arc;

/// Largest reply read, bytes.
pub const MAX_REPLY: usize = 1024 * 1024;

/// An HTTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How a request travels: over TLS verified with `tls` (else plaintext), from the local address
/// `local` (else any).
#[derive(Clone, Default)]
pub struct Via {
    /// The client configuration (its trusted authorities) for `https://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The local address to connect from.
    pub local: Option<IpAddr>,
}

impl std::fmt::Debug for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Via")
            .field("tls", &self.tls.is_some())
            .field("local", &self.local)
            .finish()
    }
}

/// `http://host:port/path` or `https://host:port/path` split into its parts.
///
/// ```
/// let (host, port, path) = streamfleet_media::signal::split_url("http://10.0.0.2:7000/sessions/s/whep").unwrap();
/// assert_eq!((host.as_str(), port, path.as_str()), ("10.0.0.2", 7000, "/sessions/s/whep"));
/// assert!(streamfleet_media::signal::split_url("https://10.0.0.2:8443/redeem").is_ok());
/// assert!(streamfleet_media::signal::split_url("ftp://10.0.0.2:21/").is_err());
/// ```
pub fn split_url(url: &str) -> Result<(String, u16, String), std::io::Error> {
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("`{url}` is not http(s)://host:port/path"),
        )
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let (authority, path) = rest
        .split_once('/')
        .map(|(a, p)| (a, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
    Ok((host.to_string(), port.parse().map_err(|_| bad())?, path))
}

/// Sends one request and reads the whole reply.
///
/// Errors: the host unreachable (the connection's own error kind, e.g.
/// [`ErrorKind::ConnectionRefused`]), a method, path or header that is not valid HTTP
/// ([`ErrorKind::InvalidInput`]), a reply that is not HTTP, is cut short or is over
/// [`MAX_REPLY`] ([`ErrorKind::InvalidData`]); each message names what was wrong.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let reply = streamfleet_media::signal::request(
///     "127.0.0.1", 7000, "GET", "/sessions/s1", &[("authorization", "Bearer 00")], None,
/// ).await?;
/// println!("{}", reply.status);
/// # Ok(()) }
/// ```
pub async fn request(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> std::io::Result<Reply> {
    request_via(&Via::default(), host, port, method, path, headers, body).await
}

/// [`request`] the way `via` says: over TLS (the server's certificate checked against its
/// authorities and `host`), from a chosen local address.
pub async fn request_via(
    via: &Via,
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> std::io::Result<Reply> {
    let invalid_input = |what: String| Error::new(ErrorKind::InvalidInput, what);
    let authority = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    // Origin form (`/path`) on a connection of our own; the authority goes in `host`.
    let uri: hyper::Uri = path
        .parse()
        .map_err(|e| invalid_input(format!("`{path}` on {authority} is not a valid URL: {e}")))?;
    let method = hyper::Method::from_bytes(method.as_bytes())
        .map_err(|_| invalid_input(format!("`{method}` is not an HTTP method")))?;
    let mut builder = hyper::Request::builder()
        .method(method.clone())
        .uri(uri)
        .header(HOST, format!("{host}:{port}"))
        .header(CONNECTION, "close");
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid_input(format!("`{name}` is not an HTTP header name")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| invalid_input(format!("the value of header `{name}` is not valid")))?;
        builder = builder.header(name, value);
    }
    let payload = match body {
        Some((content_type, bytes)) => {
            builder = builder
                .header(CONTENT_TYPE, content_type)
                .header(CONTENT_LENGTH, bytes.len());
            Bytes::copy_from_slice(bytes)
        }
        None => {
            if matches!(
                method,
                hyper::Method::POST | hyper::Method::PUT | hyper::Method::PATCH
            ) {
                builder = builder.header(CONTENT_LENGTH, 0);
            }
            Bytes::new()
        }
    };
    let request = builder
        .body(Full::new(payload))
        .map_err(|e| invalid_input(format!("not a valid HTTP request: {e}")))?;
    // One connection per request (`connection: close`): nothing is pooled between calls.
    let response = match &via.tls {
        None => send(connect(via, host, port).await?, request, &authority).await?,
        Some(tls) => {
            let name = rustls_pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| invalid_input(format!("`{host}` is not a server name: {e}")))?;
            let tcp = connect(via, host, port).await?;
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| Error::new(e.kind(), format!("{authority}: TLS: {e}")))?;
            send(stream, request, &authority).await?
        }
    };
    let (parts, incoming) = response.into_parts();
    let body = Limited::new(incoming, MAX_REPLY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                Error::new(ErrorKind::InvalidData, "reply over 1 MiB")
            } else {
                Error::new(
                    ErrorKind::InvalidData,
                    format!("unreadable reply body from {authority}: {}", chain(&*e)),
                )
            }
        })?
        .to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).trim().to_string(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A TCP connection to `host:port`, from `via.local` when set.
async fn connect(via: &Via, host: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("{host}: no address")))?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(local) = via.local {
        socket.bind((local, 0).into())?;
    }
    socket
        .connect(addr)
        .await
        .map_err(|e| Error::new(e.kind(), format!("{host}:{port}: {e}")))
}

/// Sends `request` on `stream` and returns the response's head and body stream.
async fn send<S>(
    stream: S,
    request: hyper::Request<Full<Bytes>>,
    authority: &str,
) -> std::io::Result<hyper::Response<hyper::body::Incoming>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidData,
                format!("{authority}: {}", chain(&e)),
            )
        })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await.map_err(|e| {
        let kind = if e.is_incomplete_message() || e.is_closed() {
            ErrorKind::UnexpectedEof
        } else {
            ErrorKind::InvalidData
        };
        Error::new(kind, format!("{authority}: {}", chain(&e)))
    })
}

/// An error and its sources, `: `-separated.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(e.source(), |s| s.source())
        .map(ToString::to_string)
        .fold(e.to_string(), |all, s| format!("{all}: {s}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-shot HTTP server on loopback: reads one request (head and `content-length` body),
    /// answers `reply` verbatim and closes. Resolves to the request's bytes.
    async fn serve_once(reply: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut raw = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = socket.read(&mut chunk).await.unwrap();
                raw.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&raw).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .to_ascii_lowercase()
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(str::to_string))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if raw.len() >= end + 4 + length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            socket.write_all(reply.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8_lossy(&raw).into_owned()
        });
        (port, task)
    }

    #[tokio::test]
    async fn a_201_answer_is_read_with_its_location_and_the_offer_is_sent_with_the_token() {
        let (port, server) = serve_once(
            "HTTP/1.1 201 Created\r\nContent-Type: application/sdp\r\nLocation: /sessions/s1/whep/r1\r\nContent-Length: 11\r\n\r\nv=0\r\nanswer",
        )
        .await;
        let reply = request(
            "127.0.0.1",
            port,
            "POST",
            "/sessions/s1/whep",
            &[("authorization", "Bearer s3cret")],
            Some(("application/sdp", b"v=0\r\noffer")),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 201);
        assert_eq!(reply.header("location"), Some("/sessions/s1/whep/r1"));
        assert_eq!(reply.header("Content-Type"), Some("application/sdp"));
        assert_eq!(reply.body, "v=0\r\nanswer");
        let sent = server.await.unwrap();
        let lower = sent.to_ascii_lowercase();
        assert!(
            sent.starts_with("POST /sessions/s1/whep HTTP/1.1\r\n"),
            "{sent}"
        );
        assert!(lower.contains("authorization: bearer s3cret\r\n"), "{sent}");
        assert!(
            lower.contains("content-type: application/sdp\r\n"),
            "{sent}"
        );
        assert!(lower.contains("content-length: 10\r\n"), "{sent}");
        assert!(
            lower.contains(&format!("host: 127.0.0.1:{port}\r\n")),
            "{sent}"
        );
        assert!(sent.ends_with("\r\n\r\nv=0\r\noffer"), "{sent}");
    }

    #[tokio::test]
    async fn a_401_is_a_reply_with_its_status_and_the_client_reports_it_as_refused() {
        let reply_401 = "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n19\r\n{\"error\":\"bad credentials\r\n2\r\n\"}\r\n0\r\n\r\n";
        let (port, _server) = serve_once(reply_401).await;
        let reply = request("127.0.0.1", port, "DELETE", "/r", &[], None)
            .await
            .unwrap();
        assert_eq!(reply.status, 401);
        assert_eq!(reply.body, "{\"error\":\"bad credentials\"}");

        let (port, _server) = serve_once(reply_401).await;
        let config = crate::client::WatchConfig {
            url: format!("http://127.0.0.1:{port}/sessions/s1/whep"),
            via: Via::default(),
            credentials: "wrong".into(),
            bind_ip: "127.0.0.1".parse().unwrap(),
            frames: Some(1),
            limit: Duration::from_secs(5),
            input_every: None,
            delete_at_end: false,
            decode: false,
        };
        match crate::client::start(config).await {
            Err(crate::client::WatchError::Refused { status, body }) => {
                assert_eq!(status, 401);
                assert!(body.contains("bad credentials"), "{body}");
            }
            other => panic!("expected Refused(401), got {:?}", other.err()),
        }
    }

    #[tokio::test]
    async fn an_unreachable_host_an_oversized_reply_and_garbage_are_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let e = request("127.0.0.1", port, "GET", "/", &[], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");

        let big: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                MAX_REPLY + 1,
                "x".repeat(MAX_REPLY + 1)
            )
            .into_boxed_str(),
        );
        let (port, _server) = serve_once(big).await;
        let e = request("127.0.0.1", port, "GET", "/", &[], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
        assert!(e.to_string().contains("1 MiB"), "{e}");

        let (port, _server) = serve_once("garbage\r\n\r\n").await;
        let e = request("127.0.0.1", port, "GET", "/", &[], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
    }
}
