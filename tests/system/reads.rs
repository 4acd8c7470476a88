//! The log's read API over NATS: streams both ways, categories, paging, bad requests.

use crate::commands::{heartbeat, register, token};
use crate::harness::System;
use streamfleet_bus_schemas::{ReadDirection, ReadReply, ReadRequest, subjects};
use uuid::Uuid;

async fn read(client: &async_nats::Client, body: Vec<u8>) -> ReadReply {
    let reply = client
        .request(subjects::LOG_READ, body.into())
        .await
        .expect("the node answers reads");
    serde_json::from_slice(&reply.payload).expect("a ReadReply")
}

fn ok(reply: ReadReply) -> (u64, Option<u64>, Vec<(u64, u64, String)>) {
    match reply {
        ReadReply::Ok { head, next, events } => (
            head,
            next,
            events
                .into_iter()
                .map(|e| (e.position, e.streamversion, e.body.subject))
                .collect(),
        ),
        ReadReply::Error { code, detail } => panic!("read refused: {code}: {detail}"),
    }
}

#[tokio::test]
async fn streams_categories_and_pages_read_back_over_nats() {
    let sys = System::start();
    let commands = sys.nats.commands("service").await;
    // positions: 1 app-chess (the harness registers it), 2 token-a, 3 host-s (admitted),
    // 4 token-b, 5 host-s registered, 6..=7 host-s heartbeats (the host reporting under its own
    // identity)
    commands
        .send(Uuid::now_v7(), &token("a"))
        .await
        .expect("reply");
    sys.nats.admit_host("s", "eu-west").await.expect("admitted");
    commands
        .send(Uuid::now_v7(), &token("b"))
        .await
        .expect("reply");
    let host = sys.nats.host_commands("s").await;
    host.submit(Uuid::now_v7(), &register("s"))
        .await
        .expect("registered");
    for _ in 0..2 {
        host.submit(Uuid::now_v7(), &heartbeat("x", "s"))
            .await
            .expect("recorded");
    }
    let client = sys.nats.client("auditor").await;
    let req = |r: ReadRequest| serde_json::to_vec(&r).expect("json");

    let (head, next, events) = ok(read(&client, req(ReadRequest::all(2, 3))).await);
    assert_eq!(head, 7);
    assert_eq!(
        events.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert_eq!(next, Some(5), "a full page says where to continue");
    let (_, next, events) = ok(read(&client, req(ReadRequest::all(6, 3))).await);
    assert_eq!(
        (events.len(), next),
        (2, None),
        "the last page ends the range"
    );

    let stream = |from, direction, max_events| ReadRequest {
        from,
        max_events,
        stream: Some("host-s".into()),
        category: None,
        direction,
    };
    let (_, _, fwd) = ok(read(&client, req(stream(2, ReadDirection::Forward, 10))).await);
    assert_eq!(
        fwd.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>(),
        vec![(5, 2), (6, 3), (7, 4)]
    );
    let (_, next, back) = ok(read(&client, req(stream(4, ReadDirection::Backward, 2))).await);
    assert_eq!(back.iter().map(|e| e.1).collect::<Vec<_>>(), vec![4, 3]);
    assert_eq!(next, Some(2), "backward paging continues below");

    let category = ReadRequest {
        from: 1,
        max_events: 10,
        stream: None,
        category: Some("token".into()),
        direction: ReadDirection::Forward,
    };
    let (_, _, tokens) = ok(read(&client, req(category)).await);
    assert_eq!(
        tokens.iter().map(|e| e.2.as_str()).collect::<Vec<_>>(),
        vec!["token-a", "token-b"]
    );

    let (head, _, none) = ok(read(&client, req(ReadRequest::all(1, 0))).await);
    assert_eq!(
        (head, none.len()),
        (7, 0),
        "max_events 0 asks only for the head"
    );
}

#[tokio::test]
async fn bad_read_requests_get_a_typed_error_and_reads_go_on() {
    let sys = System::start();
    let client = sys.nats.client("dashboard").await;
    let cases: Vec<(&[u8], &str)> = vec![
        (b"{not json", "malformed_request"),
        (br#"{"from":"one"}"#, "malformed_request"),
        (br#"{"from":1,"colour":"red"}"#, "malformed_request"),
        (br#"{"from":1,"direction":"backward"}"#, "invalid_range"),
        (
            br#"{"from":1,"stream":"host-s","category":"host"}"#,
            "invalid_range",
        ),
    ];
    for (body, expected) in cases {
        match read(&client, body.to_vec()).await {
            ReadReply::Error { code, detail } => {
                assert_eq!(code, expected, "{}", String::from_utf8_lossy(body));
                assert!(!detail.is_empty());
            }
            other => panic!("expected {expected}, got {other:?}"),
        }
    }
    assert!(matches!(
        read(&client, br#"{}"#.to_vec()).await,
        ReadReply::Ok { head: 1, .. }
    ));
}
