//! The media plane end to end: a provisioned session streams H.264 over WebRTC from its host to
//! `streamfleet client` (a real child process) and to headless Chromium; the host refuses what
//! it cannot use, notices a vanished client, and reports stream statistics in heartbeats.

use crate::cloud::*;
use std::process::Stdio;
use std::time::Duration;
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::payloads::SessionEndReason;
use streamfleet_bus_schemas::services::*;
use streamfleet_media::signal;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A provisioned session's WHEP endpoint.
pub fn whep(s: &SessionGrant) -> String {
    format!("http://{}:{}/sessions/{}/whep", s.address, s.control_port, s.session_id)
}

/// `streamfleet client …` as a child process.
pub fn client(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_streamfleet"));
    c.arg("client")
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", std::env::var("SF_TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

async fn post_offer(s: &SessionGrant, credentials: Option<&str>, content_type: &str, body: &str) -> signal::Reply {
    let bearer = credentials.map(bearer);
    let mut headers = vec![];
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    signal::request(
        &s.address,
        s.control_port,
        "POST",
        &format!("/sessions/{}/whep", s.session_id),
        &headers,
        Some((content_type, body.as_bytes())),
    )
    .await
    .expect("the host answers")
}

#[tokio::test]
async fn the_client_decodes_300_stamped_frames_from_a_token_and_only_its_own_credentials_open_the_stream() {
    let cloud = Cloud::start(&[AgentSpec::new("eu-west", "eu", 1, 3)]);
    let grant = cloud.issue("ada", Some(PARIS), None, None).await;
    let client_pw = cloud.sys.nats.password("client");

    let out = client(
        &["--nats-url", &cloud.sys.nats.url, "--token", &grant.token, "--client-ip", PARIS, "--frames", "300", "--json"],
        &[("SF_CLIENT_PASSWORD", &client_pw)],
    )
    .output()
    .await
    .expect("run the client");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON report");
    eprintln!("client report: {report}");
    assert!(report["frames"].as_u64().unwrap_or(0) >= 300, "{report}");
    assert_eq!((report["width"].as_u64(), report["height"].as_u64()), (Some(1280), Some(720)), "{report}");
    assert_eq!(report["out_of_order"].as_u64(), Some(0), "frame numbers read from the pixels increase: {report}");
    assert!(report["last_frame"].as_u64() > report["first_frame"].as_u64(), "{report}");
    assert!(report["latency_p95_ms"].as_f64().is_some_and(|l| l > 0.0 && l < 1000.0), "{report}");

    // The client ended its session with DELETE at the end: the log says so.
    let mut watch = cloud.watch().await;
    watch
        .until("ada's session ended by its client", |events, _| {
            events.iter().any(|(_, e)| matches!(e, Event::SessionEnded(x) if x.reason == SessionEndReason::Ended))
        })
        .await;

    // Two more sessions: each one's credentials open only that one.
    let ada = cloud.session("ada", PARIS, None).await;
    let bob = cloud.session("bob", PARIS, None).await;
    let refused = client(&["--url", &whep(&ada), "--credentials", &bob.credentials, "--frames", "1", "--seconds", "10"], &[])
        .output()
        .await
        .expect("run the client");
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("403"), "{}", String::from_utf8_lossy(&refused.stderr));

    // Bad offers get a typed answer; the sessions keep running.
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    assert_eq!(post_offer(&ada, None, "application/sdp", offer).await.status, 401);
    assert_eq!(post_offer(&ada, Some("00"), "application/sdp", offer).await.status, 403);
    let r = post_offer(&ada, Some(&ada.credentials), "application/sdp", "hello").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("malformed SDP"), "{}", r.body);
    let r = post_offer(&ada, Some(&ada.credentials), "text/plain", offer).await;
    assert_eq!(r.status, 415, "{}", r.body);
    let vp8_only = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 AA:BB\r\na=setup:actpass\r\na=rtpmap:96 VP8/90000\r\n";
    let r = post_offer(&ada, Some(&ada.credentials), "application/sdp", vp8_only).await;
    assert_eq!(r.status, 406, "{}", r.body);
    assert!(r.body.contains("H.264"), "{}", r.body);

    // A second offer while a client watches is refused; the first keeps decoding.
    let mut first = client(&["--url", &whep(&ada), "--credentials", &ada.credentials, "--seconds", "30", "--keep-session"], &[])
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(first.stderr.take().expect("stderr")).lines();
    while let Some(line) = lines.next_line().await.expect("read") {
        if line.starts_with("frame ") {
            break;
        }
    }
    let second = client(&["--url", &whep(&ada), "--credentials", &ada.credentials, "--frames", "1", "--seconds", "10"], &[])
        .output()
        .await
        .expect("run");
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&second.stderr).contains("409"), "{}", String::from_utf8_lossy(&second.stderr));
    let next = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if line.starts_with("frame ") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(next, Ok(true), "the first client still decodes");
    let _ = first.kill().await;
}
