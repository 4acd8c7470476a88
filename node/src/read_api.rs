//! The log's read API on `sf.log.read`: any process reads any range through the node.
//!
//! Invariant: a reply never exceeds the server's payload limit; when it had to stop early,
//! `next` says where to continue.

use bytes::Bytes;
use streamfleet_bus_schemas::{ReadDirection, ReadReply, ReadRequest};
use streamfleet_eventlog::{EventLog, StoredEvent};

/// Most events one request may ask for.
pub const MAX_EVENTS_PER_READ: u32 = 10_000;

/// Answers one read request; `max_reply_bytes` is the NATS payload limit.
pub async fn answer(log: &EventLog, payload: &[u8], max_reply_bytes: usize) -> Bytes {
    let req: ReadRequest = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => return error("malformed_request", e.to_string()),
    };
    if req.stream.is_some() && req.category.is_some() {
        return error(
            "invalid_range",
            "give `stream` or `category`, not both".into(),
        );
    }
    if req.direction == ReadDirection::Backward && req.stream.is_none() {
        return error("invalid_range", "backward reads need a `stream`".into());
    }
    let max = req.max_events.min(MAX_EVENTS_PER_READ) as usize;
    let head = log.head();
    let reader = log.clone();
    let r = req.clone();
    let read = tokio::task::spawn_blocking(move || match (&r.stream, &r.category) {
        _ if max == 0 => Ok(Vec::new()),
        (Some(s), _) => reader.read_stream(s, r.from, r.direction, max),
        (_, Some(c)) => reader.read_category(c, r.from, max),
        _ => reader.read_all(r.from, max),
    })
    .await;
    let events = match read {
        Ok(Ok(events)) => events,
        Ok(Err(e)) => return error("unavailable", e.to_string()),
        Err(e) => return error("unavailable", e.to_string()),
    };
    encode_ok(head, &req, max, &events, max_reply_bytes)
}

fn cursor(req: &ReadRequest, e: &StoredEvent) -> u64 {
    if req.stream.is_some() {
        e.stream_version
    } else {
        e.position
    }
}

fn encode_ok(
    head: u64,
    req: &ReadRequest,
    max: usize,
    events: &[StoredEvent],
    limit: usize,
) -> Bytes {
    // Room for the frame around the events.
    let budget = limit.saturating_sub(128);
    let mut body = Vec::with_capacity(budget.min(64 * 1024));
    let mut included = 0;
    for e in events {
        let json = e.envelope_json();
        if body.len() + json.len() + 1 > budget && included > 0 {
            break;
        }
        if included > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&json);
        included += 1;
    }
    let next = if included < events.len() || (max > 0 && events.len() == max) {
        events
            .get(included.saturating_sub(1))
            .map(|last| match req.direction {
                ReadDirection::Forward => cursor(req, last) + 1,
                ReadDirection::Backward => cursor(req, last).saturating_sub(1),
            })
    } else {
        None
    };
    let next = match next {
        Some(0) | None => "null".to_string(),
        Some(n) => n.to_string(),
    };
    let mut out =
        format!("{{\"status\":\"ok\",\"head\":{head},\"next\":{next},\"events\":[").into_bytes();
    out.extend_from_slice(&body);
    out.extend_from_slice(b"]}");
    out.into()
}

fn error(code: &str, detail: String) -> Bytes {
    let reply = ReadReply::Error {
        code: code.into(),
        detail,
    };
    serde_json::to_vec(&reply)
        .expect("replies always serialize")
        .into()
}
