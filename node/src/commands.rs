//! From a command request to a reply: parse, decide, append.
//!
//! Invariant: a command either gets `accepted` after its events are durable, or `rejected` with
//! nothing recorded. Nothing in a request can make this code panic or stop serving.

use crate::publisher::EVENT_SOURCE;
use bytes::Bytes;
use serde_json::error::Category;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use streamfleet_bus_schemas::principal::{Principal, authorize};
use streamfleet_bus_schemas::{
    CLOUDEVENTS_SPEC_VERSION, Command, CommandEnvelope, CommandReply, Event, EventBody,
    ExpectedVersion, MIN_SCHEMA_VERSION, PayloadError, ReadDirection, RejectionReason,
    SCHEMA_VERSION,
};
use streamfleet_domain::fleet::{Costs, Fleet};
use streamfleet_domain::instance::{ComputeContext, Geography};
use streamfleet_domain::{
    Context, State, app_of, decide, evolve, instance_named, needs_fleet, stream_of,
};
use streamfleet_eventlog::{AppendError, AppendRequest, CommandDigest, EventLog, NewEvent};
use uuid::Uuid;

/// Streams whose state is kept in memory; past this the cache starts over.
const STATE_CACHE_STREAMS: usize = 100_000;

/// Decides commands against the log. One per node; shared by every request task.
pub struct CommandHandler {
    log: EventLog,
    max_command_bytes: usize,
    conflict_retries: u32,
    states: Mutex<HashMap<String, (u64, State)>>,
    /// One lock per stream with commands in flight: commands on one stream are decided one at a
    /// time instead of racing and retrying; commands on different streams run in parallel.
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The compute fleet, folded from the log on the first instance command and kept up to
    /// date by this handler (the log's only writer). Instance and compute-host commands are
    /// decided one at a time under this lock, so two launches never take the same address or
    /// the same last free cpu.
    fleet: tokio::sync::Mutex<Option<Fleet>>,
    costs: Costs,
    geography: Geography,
}

/// Whether a stream's commands change the compute fleet (they are decided under its lock).
fn touches_fleet(stream: &str) -> bool {
    matches!(
        streamfleet_bus_schemas::category_of(stream),
        "instance" | "compute" | "dfs" | "node"
    )
}

impl CommandHandler {
    /// A handler over `log`.
    pub fn new(log: EventLog, max_command_bytes: usize, conflict_retries: u32) -> Self {
        CommandHandler {
            log,
            max_command_bytes,
            conflict_retries,
            states: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            fleet: tokio::sync::Mutex::new(None),
            costs: Costs::default(),
            geography: Geography::default(),
        }
    }

    /// Places launches naming a client by `geography`.
    pub fn with_geography(mut self, geography: Geography) -> Self {
        self.geography = geography;
        self
    }

    /// The compute fleet as the log has it now (folded on first use).
    async fn fleet_now(
        &self,
        fleet: &mut tokio::sync::MutexGuard<'_, Option<Fleet>>,
    ) -> Result<Fleet, RejectionReason> {
        if let Some(f) = fleet.as_ref() {
            return Ok(f.clone());
        }
        let log = self.log.clone();
        let folded = tokio::task::spawn_blocking(move || fold_fleet(&log))
            .await
            .map_err(unavailable)??;
        **fleet = Some(folded.clone());
        Ok(folded)
    }

    /// Handles one request received on `subject`; always returns a reply.
    pub async fn handle(&self, subject: &str, payload: &Bytes) -> CommandReply {
        let (envelope, command, principal) = match parse(subject, payload, self.max_command_bytes) {
            Ok(parsed) => parsed,
            Err((id, reason)) => {
                tracing::debug!(subject, code = ?reason, "command rejected at the envelope");
                return CommandReply::rejected(id, reason);
            }
        };
        let id = envelope.id;
        if let Err(detail) = authorize(&principal, &command) {
            tracing::warn!(command_id = %id, %principal, command = command.type_name(), %detail, "command forbidden");
            return CommandReply::rejected(
                Some(id),
                RejectionReason::Forbidden {
                    principal: principal.to_string(),
                    detail,
                },
            );
        }
        match self.execute(&envelope, &command, &principal).await {
            Ok(reply) => reply,
            Err(reason) => {
                tracing::debug!(command_id = %id, command = command.type_name(), reason = %reason, "command rejected");
                CommandReply::rejected(Some(id), reason)
            }
        }
    }

    async fn execute(
        &self,
        envelope: &RawEnvelope,
        command: &Command,
        principal: &Principal,
    ) -> Result<CommandReply, RejectionReason> {
        let stream = stream_of(command);
        let digest = digest_of(command, principal);
        let lock = self
            .in_flight
            .lock()
            .expect("stream locks")
            .entry(stream.clone())
            .or_default()
            .clone();
        let result = {
            let _turn = lock.lock().await;
            // A migration's schedule reads the fleet too (for its target).
            if touches_fleet(&stream) || needs_fleet(command) {
                let mut fleet = self.fleet.lock().await;
                let result = self
                    .decide_and_append(
                        envelope,
                        command,
                        principal,
                        &digest,
                        stream.clone(),
                        Some(&mut fleet),
                    )
                    .await;
                // A failed append may have been recorded after all (a lost reply of the
                // writer): fold again from the log before the next decision.
                if matches!(
                    result,
                    Err(RejectionReason::Unavailable { .. } | RejectionReason::StorageFull { .. })
                ) {
                    *fleet = None;
                }
                result
            } else {
                self.decide_and_append(envelope, command, principal, &digest, stream.clone(), None)
                    .await
            }
        };
        {
            let mut in_flight = self.in_flight.lock().expect("stream locks");
            // Only the table and this task hold it: nobody else is waiting for this stream.
            if Arc::strong_count(&lock) == 2 {
                in_flight.remove(&stream);
            }
        }
        match result {
            // A retry of a command that was already recorded may now be refused by the state
            // its first send created; it gets the original answer instead. (Accepted retries are
            // deduplicated by the log itself, inside the append.) Looking up only on refusal
            // keeps the lookup off the path of every accepted command. The id must stand for
            // this same command: another command under it is refused, not answered.
            Err(reason)
                if !matches!(
                    reason,
                    RejectionReason::Unavailable { .. }
                        | RejectionReason::StorageFull { .. }
                        | RejectionReason::IdReused { .. }
                ) =>
            {
                match self.log.command_outcome(envelope.id).map_err(unavailable)? {
                    Some(done) => {
                        if let Some(stored) =
                            self.log.command_digest(envelope.id).map_err(unavailable)?
                            && stored.digest != digest.digest
                        {
                            return Err(RejectionReason::IdReused {
                                original_type: stored.command_type,
                            });
                        }
                        Ok(accepted(envelope.id, recorded_data(&self.log, done)?))
                    }
                    None => Err(reason),
                }
            }
            other => other,
        }
    }

    async fn decide_and_append(
        &self,
        envelope: &RawEnvelope,
        command: &Command,
        principal: &Principal,
        digest: &CommandDigest,
        stream: String,
        mut fleet: Option<&mut tokio::sync::MutexGuard<'_, Option<Fleet>>>,
    ) -> Result<CommandReply, RejectionReason> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (version, state) = self.state_of(&stream).await?;
            if let Some(expected) = envelope.expectedversion
                && !expected.admits(version)
            {
                return Err(RejectionReason::WrongExpectedVersion {
                    stream,
                    expected,
                    actual: version,
                });
            }
            let now = chrono::Utc::now();
            let app = self.registration(command).await?;
            let compute = match fleet.as_mut() {
                Some(guard) if needs_fleet(command) => Some(ComputeContext {
                    fleet: self.fleet_now(guard).await?,
                    costs: self.costs.clone(),
                    geography: self.geography.clone(),
                }),
                _ => None,
            };
            let instance = match instance_named(command) {
                Some(id) => match self.state_of(&format!("instance-{id}")).await?.1 {
                    State::Instance(s) => Some(s),
                    _ => None,
                },
                None => None,
            };
            let context = Context {
                now,
                app,
                compute,
                instance,
            };
            let events =
                decide(command, &state, &context).map_err(|r| RejectionReason::Domain {
                    rule: r.rule().to_string(),
                    detail: r.to_string(),
                    offer: r.offer().cloned(),
                })?;
            let new_events = events
                .iter()
                .map(|e| new_event(envelope, principal, &stream, e, now))
                .collect::<Result<Vec<_>, _>>()?;
            let expected = if version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(version)
            };
            let request = AppendRequest {
                stream: stream.clone(),
                expected,
                command_id: Some(envelope.id),
                command_digest: Some(digest.clone()),
                events: new_events,
            };
            match self.log.append(request).await {
                Ok(mut outcome) => {
                    if !outcome.deduplicated {
                        for (recorded, event) in outcome.events.iter_mut().zip(&events) {
                            recorded.data = Some(event.to_data());
                        }
                        let next = events.iter().fold(state, evolve);
                        self.remember(&stream, version + events.len() as u64, next);
                        if let Some(Some(f)) = fleet.as_mut().map(|g| g.as_mut()) {
                            events.iter().for_each(|e| f.evolve(e));
                        }
                    } else {
                        outcome = recorded_data(&self.log, outcome)?;
                    }
                    return Ok(accepted(envelope.id, outcome));
                }
                Err(AppendError::WrongExpectedVersion { actual, .. }) => {
                    self.forget(&stream);
                    if let Some(expected) = envelope.expectedversion {
                        return Err(RejectionReason::WrongExpectedVersion {
                            stream,
                            expected,
                            actual,
                        });
                    }
                    if attempt > self.conflict_retries {
                        return Err(RejectionReason::Contention {
                            stream,
                            attempts: attempt,
                        });
                    }
                    tracing::debug!(stream = %stream, attempt, "lost a race for the stream; deciding again");
                }
                Err(AppendError::CommandIdReused { original_type, .. }) => {
                    return Err(RejectionReason::IdReused { original_type });
                }
                Err(
                    e @ (AppendError::InvalidStreamId { .. }
                    | AppendError::EventTooLarge { .. }
                    | AppendError::TooManyEvents { .. }),
                ) => {
                    return Err(RejectionReason::InvalidPayload {
                        type_name: command.type_name().into(),
                        detail: e.to_string(),
                    });
                }
                Err(AppendError::StorageFull { detail }) => {
                    return Err(RejectionReason::StorageFull { detail });
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    /// The registration of the app `command` names ([`app_of`]), if it names one and it is
    /// registered.
    async fn registration(
        &self,
        command: &Command,
    ) -> Result<Option<streamfleet_domain::app::AppState>, RejectionReason> {
        let Some(app_id) = app_of(command) else {
            return Ok(None);
        };
        match self.state_of(&format!("app-{app_id}")).await?.1 {
            State::App(app) => Ok(Some(app)),
            _ => Ok(None),
        }
    }

    /// The stream's version and state: from the cache, else folded from its events (read off
    /// the async threads: a long stream is a long read).
    async fn state_of(&self, stream: &str) -> Result<(u64, State), RejectionReason> {
        if let Some((v, s)) = self.states.lock().expect("state cache lock").get(stream) {
            return Ok((*v, s.clone()));
        }
        let (log, name) = (self.log.clone(), stream.to_string());
        let (version, state) = tokio::task::spawn_blocking(move || fold_stream(&log, &name))
            .await
            .map_err(unavailable)??;
        self.remember(stream, version, state.clone());
        Ok((version, state))
    }

    fn remember(&self, stream: &str, version: u64, state: State) {
        let mut states = self.states.lock().expect("state cache lock");
        if states.len() >= STATE_CACHE_STREAMS {
            states.clear();
        }
        match states.get_mut(stream) {
            // A concurrent task may have cached a later version already.
            Some((v, _)) if *v > version => {}
            _ => {
                states.insert(stream.to_string(), (version, state));
            }
        }
    }

    fn forget(&self, stream: &str) {
        self.states.lock().expect("state cache lock").remove(stream);
    }
}

/// Folds a stream's events into its state with the domain's `evolve`.
fn fold_stream(log: &EventLog, stream: &str) -> Result<(u64, State), RejectionReason> {
    let stored = log
        .read_stream(stream, 1, ReadDirection::Forward, usize::MAX)
        .map_err(unavailable)?;
    let mut state = State::default();
    let mut version = 0;
    for e in &stored {
        let body: EventBody = serde_json::from_slice(&e.body).map_err(unavailable)?;
        let event = Event::from_parts(&body.event_type, body.data).map_err(unavailable)?;
        state = evolve(state, &event);
        version = e.stream_version;
    }
    Ok((version, state))
}

/// The compute fleet, folded from the `compute-*` and `instance-*` streams in log order.
fn fold_fleet(log: &EventLog) -> Result<Fleet, RejectionReason> {
    let mut stored = log
        .read_category("compute", 1, usize::MAX)
        .map_err(unavailable)?;
    for category in ["instance", "dfs", "node"] {
        stored.extend(
            log.read_category(category, 1, usize::MAX)
                .map_err(unavailable)?,
        );
    }
    stored.sort_by_key(|e| e.position);
    let mut fleet = Fleet::default();
    for e in &stored {
        let body: EventBody = serde_json::from_slice(&e.body).map_err(unavailable)?;
        let event = Event::from_parts(&body.event_type, body.data).map_err(unavailable)?;
        if Fleet::concerns(&event) {
            fleet.evolve(&event);
        }
    }
    Ok(fleet)
}

/// An earlier send's outcome with each event's data, read from the records it wrote: a retry's
/// answer is the original answer, data included.
fn recorded_data(
    log: &EventLog,
    mut outcome: streamfleet_eventlog::AppendOutcome,
) -> Result<streamfleet_eventlog::AppendOutcome, RejectionReason> {
    #[derive(serde::Deserialize)]
    struct DataOnly {
        data: serde_json::Value,
    }
    let Some(first) = outcome.events.first().map(|e| e.position) else {
        return Ok(outcome);
    };
    let stored = log
        .read_all(first, outcome.events.len())
        .map_err(unavailable)?;
    for (recorded, stored) in outcome.events.iter_mut().zip(&stored) {
        if stored.position == recorded.position {
            let body: DataOnly = serde_json::from_slice(&stored.body).map_err(unavailable)?;
            recorded.data = Some(body.data);
        }
    }
    Ok(outcome)
}

/// What a command says, for binding its id to it: who sent it, its type and its payload as the
/// typed command serialises it (field order and absent options fixed by the type, so the same
/// command sent with its fields in another order, or an optional field spelled `null`, is the
/// same). The subject follows from the type and the sender. `expectedversion` is not part of
/// it: a retry may carry it or not.
fn digest_of(command: &Command, principal: &Principal) -> CommandDigest {
    let mut content = principal.to_string().into_bytes();
    content.push(b'\n');
    content.extend(serde_json::to_vec(&command.to_data()).unwrap_or_default());
    CommandDigest::of(command.type_name(), &content)
}

fn accepted(command_id: Uuid, outcome: streamfleet_eventlog::AppendOutcome) -> CommandReply {
    CommandReply::Accepted {
        command_id,
        stream: outcome.stream,
        deduplicated: outcome.deduplicated,
        events: outcome.events,
    }
}

fn unavailable(e: impl std::fmt::Display) -> RejectionReason {
    RejectionReason::Unavailable {
        detail: e.to_string(),
    }
}

fn new_event(
    envelope: &RawEnvelope,
    principal: &Principal,
    stream: &str,
    event: &Event,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<NewEvent, RejectionReason> {
    let id = Uuid::now_v7();
    let body = EventBody {
        specversion: CLOUDEVENTS_SPEC_VERSION.to_string(),
        id,
        source: EVENT_SOURCE.to_string(),
        event_type: event.type_name().to_string(),
        subject: stream.to_string(),
        time: now,
        datacontenttype: "application/json".to_string(),
        schemaversion: SCHEMA_VERSION,
        correlationid: envelope.correlationid.unwrap_or(envelope.id),
        causationid: envelope.id,
        actor: Some(principal.to_string()),
        data: event,
    };
    let body = serde_json::to_vec(&body).map_err(unavailable)?;
    Ok(NewEvent {
        id,
        event_type: event.type_name().to_string(),
        body,
    })
}

/// A command envelope whose payload is still its JSON text.
pub type RawEnvelope = CommandEnvelope<Box<RawValue>>;

/// Reads a request into an envelope and its typed command, or says precisely what is wrong
/// (with the command id when it could be read).
/// The subject names the sender: `<command subject>.<principal>`.
pub fn parse(
    subject: &str,
    payload: &[u8],
    max_bytes: usize,
) -> Result<(RawEnvelope, Command, Principal), (Option<Uuid>, RejectionReason)> {
    if payload.len() > max_bytes {
        return Err((
            None,
            RejectionReason::TooLarge {
                size: payload.len(),
                limit: max_bytes,
            },
        ));
    }
    let envelope: RawEnvelope =
        serde_json::from_slice(payload).map_err(|e| match e.classify() {
            Category::Data => (
                id_of(payload),
                RejectionReason::InvalidEnvelope {
                    detail: e.to_string(),
                },
            ),
            Category::Syntax | Category::Eof | Category::Io => (
                None,
                RejectionReason::MalformedJson {
                    detail: e.to_string(),
                },
            ),
        })?;
    let id = Some(envelope.id);
    if !(MIN_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&envelope.schemaversion) {
        return Err((
            id,
            RejectionReason::UnsupportedSchemaVersion {
                got: envelope.schemaversion,
                supported: SCHEMA_VERSION,
            },
        ));
    }
    let command = Command::from_json(&envelope.command_type, envelope.data.get()).map_err(|e| {
        (
            id,
            match e {
                PayloadError::UnknownType(type_name) => {
                    RejectionReason::UnknownCommandType { type_name }
                }
                PayloadError::Invalid { type_name, detail } => RejectionReason::InvalidPayload {
                    type_name: type_name.into(),
                    detail,
                },
            },
        )
    })?;
    let principal = subject
        .strip_prefix(command.subject())
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(Principal::parse);
    let Some(principal) = principal else {
        return Err((
            id,
            RejectionReason::SubjectMismatch {
                type_name: command.type_name().into(),
                subject: subject.into(),
                expected: format!("{}.<principal>", command.subject()),
            },
        ));
    };
    Ok((envelope, command, principal))
}

/// The command id of a request that is JSON but not a valid envelope, when it has a readable one.
fn id_of(payload: &[u8]) -> Option<Uuid> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Uuid,
    }
    serde_json::from_slice::<IdOnly>(payload).ok().map(|i| i.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECT: &str = "sf.cmd.node.report-failure.worker";

    fn envelope(schemaversion: u32, data: &str) -> String {
        format!(
            r#"{{"id":"0192f0c4-7b1a-7cc0-8000-000000000001","source":"me","type":"ReportNodeFailure","schemaversion":{schemaversion},"data":{data}}}"#
        )
    }

    fn refusal(subject: &str, body: &str) -> (Option<Uuid>, RejectionReason) {
        parse(subject, body.as_bytes(), 4096).expect_err("refused")
    }

    #[test]
    fn a_well_formed_command_of_either_schema_version_is_read() {
        for version in [MIN_SCHEMA_VERSION, SCHEMA_VERSION] {
            let (env, command, principal) = parse(
                SUBJECT,
                envelope(version, r#"{"node_id":"n1","reason":"silent"}"#).as_bytes(),
                4096,
            )
            .expect("parsed");
            assert_eq!(env.schemaversion, version);
            assert_eq!(principal.to_string(), "worker");
            assert!(matches!(command, Command::ReportNodeFailure(c) if c.node_id == "n1"));
        }
    }

    #[test]
    fn each_kind_of_bad_input_gets_its_own_typed_reason() {
        let data = r#"{"node_id":"n1","reason":"silent"}"#;
        assert!(matches!(
            refusal(SUBJECT, "{not json").1,
            RejectionReason::MalformedJson { .. }
        ));
        assert!(matches!(
            refusal(SUBJECT, r#"{"id":"x"}"#).1,
            RejectionReason::InvalidEnvelope { .. }
        ));
        let (id, reason) = refusal(SUBJECT, &envelope(SCHEMA_VERSION + 1, data));
        assert!(id.is_some(), "the id is named when it could be read");
        assert!(matches!(
            reason,
            RejectionReason::UnsupportedSchemaVersion { got, supported } if got == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION
        ));
        assert!(matches!(
            refusal(SUBJECT, &envelope(SCHEMA_VERSION, r#"{"node_id":5}"#)).1,
            RejectionReason::InvalidPayload { .. }
        ));
        for wrong in [
            "sf.cmd.session.provision.worker",
            "sf.cmd.node.report-failure",
            "sf.cmd.node.report-failure.root",
            "sf.cmd.node.report-failure.host.",
            "sf.cmd.node.report-failurex.worker",
        ] {
            assert!(
                matches!(
                    refusal(wrong, &envelope(SCHEMA_VERSION, data)).1,
                    RejectionReason::SubjectMismatch { .. }
                ),
                "{wrong}"
            );
        }
        let big = "x".repeat(5000);
        assert!(matches!(
            refusal(SUBJECT, &big).1,
            RejectionReason::TooLarge {
                size: 5000,
                limit: 4096
            }
        ));
        let unknown = envelope(SCHEMA_VERSION, data).replace("ReportNodeFailure", "Nope");
        assert!(matches!(
            refusal(SUBJECT, &unknown).1,
            RejectionReason::UnknownCommandType { .. }
        ));
    }
}
