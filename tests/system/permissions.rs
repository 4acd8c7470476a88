//! The rendered NATS permissions, enforced by the real server: each role and each admitted host
//! sends only what it may, under its own name, and reads only its own replies.

use crate::commands::{heartbeat, token};
use crate::harness::System;
use std::time::Duration;
use streamfleet_bus_client::{CommandClient, NatsLogin};
use streamfleet_bus_schemas::principal::Principal;
use streamfleet_bus_schemas::{Command, CommandReply, subjects};
use tokio::sync::mpsc;
use uuid::Uuid;

/// A client of `role` (or `host.<id>`, an admitted host) and the server errors it receives.
pub async fn client_with_errors(
    sys: &System,
    role: &str,
) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let login = match role.strip_prefix("host.") {
        Some(host) => sys.nats.host_login(host),
        None => sys.nats.login(role),
    };
    login_with_errors(login).await
}

/// A client of `login` and the server errors it receives.
pub async fn login_with_errors(
    login: NatsLogin,
) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = login
        .options()
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(err) = event {
                    let _ = tx.send(err.to_string());
                }
            }
        })
        .connect(login.url.as_str())
        .await
        .expect("connect");
    (client, rx)
}

/// Waits for the server's permission violation naming `subject`.
pub async fn expect_violation(
    errors: &mut mpsc::UnboundedReceiver<String>,
    role: &str,
    subject: &str,
) {
    let error = tokio::time::timeout(Duration::from_secs(10), errors.recv())
        .await
        .unwrap_or_else(|_| panic!("{role}: the server never refused {subject}"))
        .expect("error channel open");
    assert!(
        error.contains("Permissions Violation") && error.contains(subject),
        "{role}: {error}"
    );
}

async fn head(client: &async_nats::Client) -> u64 {
    streamfleet_bus_client::log_head(client)
        .await
        .expect("read allowed")
}

/// Sends `command` as `role` and waits for the server's permission violation naming its subject.
async fn expect_refused(
    client: &async_nats::Client,
    errors: &mut mpsc::UnboundedReceiver<String>,
    role: &str,
    command: Command,
) {
    let principal = Principal::parse(role).expect("a principal");
    let subject = command.subject_as(&principal);
    let commands = CommandClient::new(client.clone(), principal, "test");
    let send = tokio::spawn(async move { commands.send(Uuid::now_v7(), &command).await });
    expect_violation(errors, role, &subject).await;
    send.abort();
    if let Ok(Ok(Ok(reply))) = send.await.map(Ok::<_, ()>) {
        panic!("{role} got a reply to a refused command: {reply:?}");
    }
}

#[tokio::test]
async fn readers_cannot_send_commands_and_hosts_only_heartbeats() {
    let sys = System::start();
    for role in ["dashboard", "auditor"] {
        let (client, mut errors) = client_with_errors(&sys, role).await;
        expect_refused(&client, &mut errors, role, token("t-x")).await;
        assert_eq!(
            head(&client).await,
            1,
            "{role}: nothing was recorded (past the harness's app registration), and reading is allowed"
        );
    }
    sys.nats
        .admit_host("h-1", "eu-west")
        .await
        .expect("admitted");
    let (host, mut errors) = client_with_errors(&sys, "host.h-1").await;
    let reply = CommandClient::new(host.clone(), Principal::host("h-1"), "host")
        .send(Uuid::now_v7(), &heartbeat("s-1", "h-1"))
        .await
        .expect("a host may report heartbeats");
    assert!(
        matches!(reply, CommandReply::Rejected { .. }),
        "the node answered (the host is not registered yet): {reply:?}"
    );
    expect_refused(&host, &mut errors, "host.h-1", token("t-h")).await;
    // Nor may it speak as a role, or as another host.
    let as_worker = CommandClient::new(
        host.clone(),
        Principal::Role(streamfleet_bus_schemas::principal::Role::Worker),
        "host",
    );
    let subject = heartbeat("s-1", "h-1").subject_as(as_worker.principal());
    let send = tokio::spawn(async move {
        as_worker
            .send(Uuid::now_v7(), &heartbeat("s-1", "h-1"))
            .await
    });
    expect_violation(&mut errors, "host.h-1", &subject).await;
    send.abort();
}

#[tokio::test]
async fn entitlement_services_only_ask_for_tokens_and_launchers_only_answer_launches() {
    let sys = System::start();
    for role in ["launcher", "entitlement"] {
        let (client, mut errors) = client_with_errors(&sys, role).await;
        expect_refused(&client, &mut errors, role, token("t-x")).await;
        expect_refused(&client, &mut errors, role, heartbeat("s-1", "h-1")).await;
    }
    // Neither may redeem on the bus (clients redeem at the front door, which sees their
    // address; the bus subject is for trusted services naming it); an entitlement service may
    // not read the log (a launcher may: compute hosts catch up on their instances' events).
    for (role, subject) in [
        ("launcher", subjects::TOKEN_REQUEST),
        ("entitlement", subjects::REDEEM),
        ("launcher", subjects::REDEEM),
        ("entitlement", subjects::LOG_READ),
    ] {
        let (client, mut errors) = client_with_errors(&sys, role).await;
        client.publish(subject, "{}".into()).await.expect("publish");
        client.flush().await.expect("flush");
        expect_violation(&mut errors, role, subject).await;
    }
    // A host cannot mint tokens or provision sessions itself.
    sys.nats
        .admit_host("h-1", "eu-west")
        .await
        .expect("admitted");
    let (host, mut errors) = client_with_errors(&sys, "host.h-1").await;
    expect_refused(
        &host,
        &mut errors,
        "host.h-1",
        crate::commands::provision("s-1", "h-1"),
    )
    .await;
    assert_eq!(
        head(&sys.nats.client("auditor").await).await,
        2,
        "nothing was recorded but the admission"
    );
}

/// The attack: a least-privileged client subscribes to every inbox, or to another role's, and
/// waits for other users' tokens and redemption replies. Before, 7 of 7 roles could. Now each
/// role may read only its own `_INBOX.<role>.>`, and the server refuses the rest.
#[tokio::test]
async fn no_role_can_subscribe_to_the_replies_of_another() {
    let sys = System::start();
    sys.nats
        .admit_host("h-1", "eu-west")
        .await
        .expect("admitted");
    for (role, sniffed) in [
        ("launcher", "_INBOX.>"),
        ("launcher", "_INBOX.entitlement.>"),
        ("entitlement", "_INBOX.launcher.>"),
        ("host.h-1", "_INBOX.worker.>"),
        ("host.h-1", "_INBOX.host.h-2.>"),
        ("host.h-1", "_INBOX.host.>"),
        ("auditor", "_INBOX.>"),
        ("dashboard", "_INBOX.service.>"),
        ("service", "_INBOX.worker.>"),
        ("worker", "_INBOX.operator.>"),
    ] {
        let (client, mut errors) = client_with_errors(&sys, role).await;
        let _sub = client.subscribe(sniffed).await.expect("subscribe sent");
        client.flush().await.expect("flush");
        expect_violation(&mut errors, role, sniffed).await;
        // Its own inbox still works: a read of the log answers (where the role may read).
        if ["auditor", "dashboard", "service", "worker"].contains(&role) {
            head(&client).await;
        }
    }
}
