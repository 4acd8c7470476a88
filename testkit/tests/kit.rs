//! The kit's parts against the real things: a nats-server with the rendered configuration, a
//! namespace link.

use std::io::Read;
use streamfleet_bus_client::{NatsLogin, connect};
use streamfleet_testkit::{Link, NatsServer};

#[tokio::test]
async fn a_started_server_takes_each_role_with_its_own_password_and_refuses_others() {
    let nats = NatsServer::start().expect("nats-server");
    for role in ["service", "auditor", "launcher", "operator"] {
        nats.try_client(role).await.expect("its own password");
    }
    let wrong = NatsLogin::new(nats.url.clone(), "service", nats.password("auditor"));
    assert!(connect(&wrong).await.is_err(), "another role's password");
    let url = nats.url.clone();
    drop(nats);
    let gone = NatsLogin::new(url, "service", "x");
    assert!(
        connect(&gone).await.is_err(),
        "the server is gone with its value"
    );
}

#[test]
fn a_link_carries_traffic_from_its_namespace_and_leaves_nothing_behind() {
    let link = match Link::create('t') {
        Ok(link) => link,
        Err(why) => {
            eprintln!("SKIPPED: this machine does not let the test create namespaces ({why})");
            return;
        }
    };
    let listener = std::net::TcpListener::bind((link.host_ip.as_str(), 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sender = link
        .exec("bash")
        .arg("-c")
        .arg(format!(
            "echo from-$(hostname -I 2>/dev/null | cut -d' ' -f1) > /dev/tcp/{}/{port}",
            link.host_ip
        ))
        .spawn()
        .expect("bash in the namespace");
    let (mut conn, from) = listener.accept().expect("a connection from the namespace");
    let mut said = String::new();
    conn.read_to_string(&mut said).expect("read");
    assert_eq!(from.ip().to_string(), link.client_ip, "{said}");
    let _ = { sender }.wait();
    link.cap(1_000).expect("a rate cap");
    let ns = link.ns.clone();
    drop(link);
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&ns),
        "namespace {ns} left behind"
    );
}
