//! The documents a service in any language needs: one JSON Schema per command, event, reply and
//! read message, and an AsyncAPI 3.0 document listing every subject, its direction and message.
//! They are generated from the Rust types and committed under `schemas/`.

use crate::{
    Command, CommandReply, Event, MIN_SCHEMA_VERSION, ReadReply, ReadRequest, SCHEMA_VERSION,
    subjects,
};
use serde_json::{Map, Value, json};

/// One generated document: its path under `schemas/` and its text.
pub struct Document {
    /// Relative path, e.g. `commands/IssueToken.json`.
    pub path: String,
    /// Pretty JSON with a trailing newline.
    pub text: String,
}

fn pin(mut schema: schemars::Schema, type_name: &str, extra: &[(&str, Value)]) -> Value {
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert("type".into(), json!({ "const": type_name }));
        for (k, v) in extra {
            props.insert((*k).into(), v.clone());
        }
    }
    schema.to_value()
}

fn doc(path: String, value: &Value) -> Document {
    let mut text = serde_json::to_string_pretty(value).expect("JSON values always serialize");
    text.push('\n');
    Document { path, text }
}

/// Every document, in a fixed order.
pub fn all() -> Vec<Document> {
    let mut docs = Vec::new();
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    let mut message = |name: &str, file: &str, summary: &str, headers: Option<Value>| {
        let mut m = json!({
            "name": name,
            "summary": summary,
            "contentType": "application/json",
            "payload": { "$ref": file },
        });
        if let Some(h) = headers {
            m["headers"] = h;
        }
        messages.insert(name.into(), m);
        json!({ "$ref": format!("#/components/messages/{name}") })
    };

    let reply_ref = message(
        "CommandReply",
        "replies/CommandReply.json",
        "Accepted or rejected",
        None,
    );
    channels.insert(
        "commandReply".into(),
        json!({ "address": null, "messages": { "CommandReply": reply_ref },
                "description": "The requester's reply inbox." }),
    );
    for (type_name, schema) in Command::envelope_schemas() {
        let subject = Command::subject_of(type_name).expect("declared with a subject");
        let pinned = pin(
            schema,
            type_name,
            &[(
                "schemaversion",
                json!({ "type": "integer", "minimum": MIN_SCHEMA_VERSION, "maximum": SCHEMA_VERSION }),
            )],
        );
        let file = format!("commands/{type_name}.json");
        docs.push(doc(file.clone(), &pinned));
        let msg = message(type_name, &file, "A command, sent as a NATS request", None);
        let senders: Vec<String> = crate::principal::Role::ALL
            .iter()
            .filter(|r| r.may_send(type_name))
            .map(|r| r.name().to_string())
            .chain(
                crate::principal::Principal::host("h")
                    .may_send(type_name)
                    .then(|| "host.{host_id} (the host the command is about)".to_string()),
            )
            .collect();
        channels.insert(
            type_name.into(),
            json!({
                "address": format!("{subject}.{{principal}}"),
                "messages": { type_name: msg },
                "parameters": { "principal": {
                    "description": format!(
                        "Who sends it, as NATS authenticated the connection: {}. NATS lets each principal publish under its own name only.",
                        senders.join(", ")
                    )
                } }
            }),
        );
        operations.insert(
            format!("receive{type_name}"),
            json!({
                "action": "receive",
                "channel": { "$ref": format!("#/channels/{type_name}") },
                "reply": {
                    "address": { "location": "$message.header#/replyTo" },
                    "channel": { "$ref": "#/channels/commandReply" }
                }
            }),
        );
    }
    let event_headers = json!({
        "type": "object",
        "properties": {
            subjects::HEADER_POSITION: { "type": "string", "description": "Global position (decimal)" },
            subjects::HEADER_STREAM_VERSION: { "type": "string", "description": "Stream version (decimal)" },
            "Nats-Msg-Id": { "type": "string", "description": "The event id" }
        }
    });
    for (type_name, schema) in Event::envelope_schemas() {
        let category = Event::category_of_type(type_name).expect("declared with a category");
        let pinned = pin(
            schema,
            type_name,
            &[(
                "subject",
                json!({ "type": "string", "pattern": format!("^{category}-") }),
            )],
        );
        let file = format!("events/{type_name}.json");
        docs.push(doc(file.clone(), &pinned));
        let msg = message(
            type_name,
            &file,
            "A durable event",
            Some(event_headers.clone()),
        );
        channels.insert(
            type_name.into(),
            json!({ "address": format!("sf.evt.{category}.{type_name}"), "messages": { type_name: msg } }),
        );
        operations.insert(
            format!("send{type_name}"),
            json!({ "action": "send", "channel": { "$ref": format!("#/channels/{type_name}") } }),
        );
    }

    docs.push(doc(
        "replies/CommandReply.json".into(),
        &schemars::schema_for!(CommandReply).to_value(),
    ));
    docs.push(doc(
        "log/ReadRequest.json".into(),
        &schemars::schema_for!(ReadRequest).to_value(),
    ));
    docs.push(doc(
        "log/ReadReply.json".into(),
        &schemars::schema_for!(ReadReply).to_value(),
    ));
    docs.push(doc(
        "log/Head.json".into(),
        &json!({ "$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Head",
                 "description": "The last durable global position.", "type": "integer", "minimum": 0 }),
    ));
    let read_req = message(
        "ReadRequest",
        "log/ReadRequest.json",
        "Read a range of the log",
        None,
    );
    let read_reply = message("ReadReply", "log/ReadReply.json", "Events read", None);
    let head = message("Head", "log/Head.json", "The last durable position", None);
    docs.push(doc(
        "log/NodeHealth.json".into(),
        &schemars::schema_for!(crate::NodeHealth).to_value(),
    ));
    let health = message(
        "NodeHealth",
        "log/NodeHealth.json",
        "Whether the node records commands (degraded: a full disk, failing storage)",
        None,
    );
    channels.insert(
        "logHealth".into(),
        json!({ "address": subjects::LOG_HEALTH, "messages": { "HealthRequest": { "name": "HealthRequest", "summary": "Any payload asks for the node's health" } } }),
    );
    channels.insert(
        "logHealthReply".into(),
        json!({ "address": null, "messages": { "NodeHealth": health } }),
    );
    operations.insert(
        "receiveHealthRequest".into(),
        json!({
            "action": "receive",
            "channel": { "$ref": "#/channels/logHealth" },
            "reply": {
                "address": { "location": "$message.header#/replyTo" },
                "channel": { "$ref": "#/channels/logHealthReply" }
            }
        }),
    );
    channels.insert(
        "logRead".into(),
        json!({ "address": subjects::LOG_READ, "messages": { "ReadRequest": read_req } }),
    );
    channels.insert(
        "logReadReply".into(),
        json!({ "address": null, "messages": { "ReadReply": read_reply } }),
    );
    channels.insert(
        "logHead".into(),
        json!({ "address": subjects::LOG_HEAD, "messages": { "Head": head } }),
    );
    operations.insert(
        "receiveReadRequest".into(),
        json!({
            "action": "receive",
            "channel": { "$ref": "#/channels/logRead" },
            "reply": {
                "address": { "location": "$message.header#/replyTo" },
                "channel": { "$ref": "#/channels/logReadReply" }
            }
        }),
    );
    operations.insert(
        "sendHead".into(),
        json!({ "action": "send", "channel": { "$ref": "#/channels/logHead" } }),
    );

    // The request/reply services beside the command API.
    macro_rules! service_docs {
        ($($ty:ident),+) => {$(
            docs.push(doc(
                format!("services/{}.json", stringify!($ty)),
                &schemars::schema_for!(crate::services::$ty).to_value(),
            ));
        )+};
    }
    service_docs!(
        TokenRequest,
        TokenReply,
        Redemption,
        RedemptionReply,
        RegionRedemption,
        StartSession,
        StopSession,
        TerminationNotice,
        InjectFault,
        HostActualState,
        AgentReply
    );
    for (channel, address, request, reply, summary) in [
        (
            "tokenRequest",
            subjects::TOKEN_REQUEST.to_string(),
            "TokenRequest",
            "TokenReply",
            "Ask for a session token (entitlement services)",
        ),
        (
            "redeem",
            subjects::REDEEM.to_string(),
            "Redemption",
            "RedemptionReply",
            "Redeem a token (clients)",
        ),
        (
            "regionRedeem",
            subjects::region_redeem("{region}"),
            "RegionRedemption",
            "RedemptionReply",
            "A checked redemption, to a region's host-management service",
        ),
        (
            "hostStart",
            subjects::host("{host_id}", "start"),
            "StartSession",
            "AgentReply",
            "Start a session on a host (its agent answers)",
        ),
    ] {
        let req = message(request, &format!("services/{request}.json"), summary, None);
        let rep = message(reply, &format!("services/{reply}.json"), "The answer", None);
        channels.insert(
            channel.into(),
            json!({ "address": address, "messages": { request: req } }),
        );
        channels.insert(
            format!("{channel}Reply"),
            json!({ "address": null, "messages": { reply: rep } }),
        );
        operations.insert(
            format!("serve{request}"),
            json!({
                "action": "receive",
                "channel": { "$ref": format!("#/channels/{channel}") },
                "reply": {
                    "address": { "location": "$message.header#/replyTo" },
                    "channel": { "$ref": format!("#/channels/{channel}Reply") }
                }
            }),
        );
    }

    let asyncapi = json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Streamfleet node",
            "version": SCHEMA_VERSION.to_string(),
            "description": "Commands in as NATS requests (reply: CommandReply); durable events out on \
                sf.evt.<category>.<type> with their global position in the Sf-Position header; \
                gaps filled through sf.log.read. Operations are from the node's side."
        },
        "defaultContentType": "application/json",
        "servers": { "local": { "host": "localhost:4222", "protocol": "nats" } },
        "channels": channels,
        "operations": operations,
        "components": { "messages": messages }
    });
    docs.push(doc("asyncapi.json".into(), &asyncapi));
    docs
}
