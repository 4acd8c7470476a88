//! `streamfleet up`: one command brings nats-server and the node up; SIGTERM takes them down.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use streamfleet_bus_schemas::CommandReply;
use streamfleet_node::{CommandClient, NatsLogin, connect};
use uuid::Uuid;

#[tokio::test]
async fn up_serves_commands_with_generated_credentials_and_stops_cleanly_on_sigterm() {
    let state = tempfile::tempdir().expect("tempdir");
    let port = crate::harness::free_port();
    let mut up = Command::new(env!("CARGO_BIN_EXE_streamfleet"))
        .arg("up")
        // Relative, as an operator types it (nats.conf needs the store path absolute: up's job).
        .current_dir(state.path())
        .arg("--state-dir")
        .arg(".streamfleet")
        .arg("--port")
        .arg(port.to_string())
        .arg("--nats-conf")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/nats.conf"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn streamfleet up");
    let mut lines = BufReader::new(up.stdout.take().expect("stdout")).lines();
    let mut banner = Vec::new();
    loop {
        let Some(line) = lines.next() else {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut up.stderr.take().expect("stderr"), &mut err).ok();
            panic!("up exited before its banner: {err}");
        };
        let line = line.expect("utf-8");
        let done = line.starts_with("Ctrl-C stops");
        banner.push(line);
        if done {
            break;
        }
    }
    assert!(
        banner
            .iter()
            .any(|l| l.contains(&format!("nats://127.0.0.1:{port}"))),
        "{banner:?}"
    );

    // The generated credentials work for the roles they name, and only they are in the file.
    let creds = std::fs::read_to_string(state.path().join(".streamfleet/credentials.env"))
        .expect("credentials.env");
    let service_pw = creds
        .lines()
        .find_map(|l| l.strip_prefix("SF_SERVICE_PASSWORD="))
        .expect("a service password");
    let client = connect(&NatsLogin::new(
        format!("nats://127.0.0.1:{port}"),
        "service",
        service_pw,
    ))
    .await
    .expect("login");
    let reply = CommandClient::new(client.clone(), "test")
        .send(Uuid::now_v7(), &crate::commands::token("up-1"))
        .await
        .expect("reply");
    assert!(matches!(reply, CommandReply::Accepted { .. }), "{reply:?}");
    assert!(
        connect(&NatsLogin::new(
            format!("nats://127.0.0.1:{port}"),
            "service",
            "wrong"
        ))
        .await
        .is_err()
    );

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(up.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = up.wait().expect("wait");
    assert!(exit.success(), "up exits cleanly on SIGTERM: {exit:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nats-server stopped with it"
    );
    assert!(
        state.path().join(".streamfleet/data/events.redb").exists(),
        "the log lives in the state folder"
    );
}
