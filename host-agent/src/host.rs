//! One simulated host: registration, heartbeats, the control plane's requests, session ends.
//!
//! Invariant: `sessions` is the host's actual state; every report, answer and end is read from
//! it under its lock, so what the host says is what it runs at that moment.

use crate::{Agent, AgentError};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use streamfleet_bus_client::{CommandClient, HostKey, NatsLogin};
use streamfleet_bus_schemas::ids::{AppId, HostId, SessionId, UserId};
use streamfleet_bus_schemas::payloads::StreamStats;
use streamfleet_bus_schemas::payloads::{
    EndSession, RecordHeartbeats, RegisterHost, SessionBeat, SessionEndReason,
};
use streamfleet_bus_schemas::principal::Principal;
use streamfleet_bus_schemas::services::*;
use streamfleet_bus_schemas::{Command, CommandReply, RejectionReason, subjects};
use streamfleet_media::stream::{Stream, StreamConfig, StreamEnd};
use tokio::sync::watch;

/// A session as the host runs it.
#[derive(Debug, Clone)]
pub struct RunningSession {
    /// Hex BLAKE3 of its credentials (empty for a stray session, which nobody can open).
    pub credential_hash: String,
    /// Its user.
    pub user_id: UserId,
    /// The state handed over from the user's previous session.
    pub restored_state: Option<String>,
    /// When it started.
    pub started_at: chrono::DateTime<chrono::Utc>,
}

/// A session's stream: being answered, or live.
enum StreamSlot {
    Claimed,
    Live(Arc<Stream>),
}

/// One host.
pub struct Host {
    /// Its id.
    pub id: HostId,
    /// Its app.
    pub app_id: AppId,
    /// Its version.
    pub version: String,
    /// Its control port.
    pub port: u16,
    capacity: u32,
    sessions: Mutex<BTreeMap<SessionId, RunningSession>>,
    streams: Mutex<BTreeMap<SessionId, StreamSlot>>,
    stopped: watch::Sender<bool>,
    agent: std::sync::Weak<Agent>,
    /// Its own NATS connection, logged in with its own key: it speaks only for itself.
    client: async_nats::Client,
    commands: CommandClient,
}

impl Host {
    /// Turns true when the host stops.
    pub(crate) fn stopped(&self) -> watch::Receiver<bool> {
        self.stopped.subscribe()
    }

    /// The sessions it runs.
    pub fn actual_state(&self) -> HostActualState {
        HostActualState {
            host_id: self.id.clone(),
            sessions: self.lock().keys().cloned().collect(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<SessionId, RunningSession>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A running session, if the host runs it.
    pub fn session(&self, session_id: &str) -> Option<RunningSession> {
        self.lock().get(session_id).cloned()
    }

    /// Stops the host: no more reports, answers or connections.
    pub fn stop(&self) {
        let _ = self.stopped.send(true);
        self.close_streams();
    }

    /// Waits until what the host published has left for the server.
    pub(crate) async fn flush(&self) {
        let _ = self.client.flush().await;
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, BTreeMap<SessionId, StreamSlot>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How this host's streams are set up.
    pub fn stream_config(&self) -> StreamConfig {
        let (ip, policy, timeout) = match self.agent.upgrade() {
            Some(a) => (
                a.config
                    .address
                    .parse()
                    .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
                a.config.stream_policy,
                a.config.client_timeout,
            ),
            None => return StreamConfig::new(std::net::Ipv4Addr::LOCALHOST.into()),
        };
        StreamConfig {
            bind_ip: ip,
            policy,
            consent_timeout: timeout,
        }
    }

    /// The session's live stream.
    pub fn stream(&self, session_id: &str) -> Option<Arc<Stream>> {
        match self.streams().get(session_id) {
            Some(StreamSlot::Live(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// Reserves the session's stream slot; false when it is taken.
    pub(crate) fn claim_stream(&self, session_id: &str) -> bool {
        let mut streams = self.streams();
        if streams.contains_key(session_id) {
            return false;
        }
        streams.insert(session_id.into(), StreamSlot::Claimed);
        true
    }

    /// Gives a claimed slot back (the offer failed).
    pub(crate) fn release_stream(&self, session_id: &str) {
        let mut streams = self.streams();
        if matches!(streams.get(session_id), Some(StreamSlot::Claimed)) {
            streams.remove(session_id);
        }
    }

    /// Puts a stream in its claimed slot and watches for its end: when the client vanishes the
    /// session ends (`disconnected`).
    pub(crate) fn start_stream(self: &Arc<Self>, session_id: &str, stream: Arc<Stream>) {
        if self.session(session_id).is_none() {
            // The session ended while the offer was being answered.
            stream.close();
            self.release_stream(session_id);
            return;
        }
        self.streams()
            .insert(session_id.into(), StreamSlot::Live(stream.clone()));
        tracing::info!(host = %self.id, session = %session_id, "stream started");
        let (host, id) = (self.clone(), SessionId::from(session_id));
        tokio::spawn(async move {
            let end = stream.ended().await;
            let report = stream.report();
            {
                let mut streams = host.streams();
                if matches!(streams.get(&id), Some(StreamSlot::Live(s)) if Arc::ptr_eq(s, &stream))
                {
                    streams.remove(&id);
                }
            }
            tracing::info!(host = %host.id, session = %id, end = ?end, frames = report.frames, "stream ended");
            let reason = match end {
                StreamEnd::Closed => return,
                StreamEnd::ClientGone => SessionEndReason::Disconnected,
                StreamEnd::Failed(_) => SessionEndReason::Ended,
            };
            if host.session(&id).is_some() {
                let saved = format!("client left after {} frames", report.frames);
                if let Err(error) = host.end_session(&id, reason, Some(saved)).await {
                    tracing::warn!(host = %host.id, session = %id, %error, "could not report the session's end");
                }
            }
        });
    }

    /// Ends every stream (the host stops).
    pub(crate) fn close_streams(&self) {
        let streams: Vec<Arc<Stream>> = self
            .streams()
            .values()
            .filter_map(|s| match s {
                StreamSlot::Live(s) => Some(s.clone()),
                StreamSlot::Claimed => None,
            })
            .collect();
        for s in streams {
            s.close();
        }
    }

    fn close_stream(&self, session_id: &str) {
        if let Some(StreamSlot::Live(s)) = self.streams().remove(session_id) {
            s.close();
        }
    }

    /// The stream statistics a heartbeat carries for a watched session.
    fn stream_stats(&self, session_id: &str) -> Option<StreamStats> {
        let r = self.stream(session_id)?.report();
        Some(StreamStats {
            bitrate_kbps: r.bitrate_kbps,
            fps: r.fps,
            rtt_ms: r.rtt_ms,
            loss_permille: r.loss_permille,
            keyframes: r.keyframes,
        })
    }

    fn is_stopped(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Ends a session the way the app does: it saves its state and the host reports the end.
    pub async fn end_session(
        &self,
        session_id: &str,
        reason: SessionEndReason,
        saved_state: Option<String>,
    ) -> Result<(), String> {
        if self.lock().remove(session_id).is_none() {
            return Err(format!(
                "host {} does not run session {session_id}",
                self.id
            ));
        }
        self.close_stream(session_id);
        let end = Command::EndSession(EndSession {
            session_id: session_id.into(),
            host_id: self.id.clone(),
            reason,
            saved_state,
        });
        match self.commands.send(uuid::Uuid::now_v7(), &end).await {
            Ok(CommandReply::Accepted { .. }) => Ok(()),
            Ok(CommandReply::Rejected { message, .. }) => Err(message),
            Err(e) => Err(e.to_string()),
        }
    }

    fn handle(&self, verb: &str, payload: &[u8]) -> Result<HostActualState, ServiceError> {
        let read =
            |what: &str| ServiceError::new("malformed", format!("unreadable {what} request"));
        match verb {
            "state" => {}
            "start" => {
                let req: StartSession =
                    serde_json::from_slice(payload).map_err(|_| read("start"))?;
                let mut sessions = self.lock();
                if sessions.len() >= self.capacity as usize
                    && !sessions.contains_key(&req.session_id)
                {
                    return Err(ServiceError::new(
                        "no_capacity",
                        format!("host {} is full", self.id),
                    ));
                }
                sessions.insert(
                    req.session_id,
                    RunningSession {
                        credential_hash: req.credentials.hash(),
                        user_id: req.user_id,
                        restored_state: req.saved_state,
                        started_at: chrono::Utc::now(),
                    },
                );
            }
            "stop-session" => {
                let req: StopSession =
                    serde_json::from_slice(payload).map_err(|_| read("stop-session"))?;
                if self.lock().remove(&req.session_id).is_some() {
                    self.close_stream(&req.session_id);
                    tracing::info!(host = %self.id, session = %req.session_id, reason = %req.reason, "session stopped by the control plane");
                }
            }
            "fault" => {
                let req: InjectFault =
                    serde_json::from_slice(payload).map_err(|_| read("fault"))?;
                let mut sessions = self.lock();
                if let Some(stray) = req.stray_session {
                    sessions.insert(
                        stray,
                        RunningSession {
                            credential_hash: String::new(),
                            user_id: UserId::default(),
                            restored_state: None,
                            started_at: chrono::Utc::now(),
                        },
                    );
                }
                if let Some(dropped) = req.drop_session {
                    sessions.remove(&dropped);
                    drop(sessions);
                    self.close_stream(&dropped);
                }
            }
            other => {
                return Err(ServiceError::new(
                    "not_found",
                    format!("no `{other}` request on a host"),
                ));
            }
        }
        Ok(self.actual_state())
    }
}

/// Starts a host: control port, registration, requests, heartbeats.
///
/// Returns the host with its control port's listener, which the caller serves
/// (`control::serve`): this file knows nothing of the control port's routes.
pub(crate) async fn launch(
    agent: &Arc<Agent>,
    id: HostId,
    app_id: AppId,
    version: String,
) -> Result<(Arc<Host>, tokio::net::TcpListener), AgentError> {
    let err = |detail: String| AgentError::Host {
        host_id: id.clone(),
        detail,
    };
    let listener = tokio::net::TcpListener::bind((agent.config.address.as_str(), 0))
        .await
        .map_err(|e| err(format!("cannot listen on {}: {e}", agent.config.address)))?;
    let port = listener
        .local_addr()
        .map_err(|e| err(e.to_string()))?
        .port();
    // The host's own identity: without an admitted key there is nothing to launch.
    let key = HostKey::read(&agent.config.host_keys, &id)
        .map_err(|e| err(format!("not admitted here: {e}")))?;
    let login = NatsLogin::host(agent.config.nats_url.clone(), &id, key.seed().clone())
        .with_ca(agent.config.nats_ca.clone());
    let client = streamfleet_bus_client::connect(&login)
        .await
        .map_err(|e| err(format!("NATS refused its identity: {e}")))?;
    let commands = CommandClient::new(
        client.clone(),
        Principal::Host(id.clone()),
        format!("streamfleet/host-agent/{}", agent.config.region),
    );
    let requests = client
        .subscribe(subjects::host(&id, ">"))
        .await
        .map_err(|e| err(e.to_string()))?;
    let (stopped, _) = watch::channel(false);
    let host = Arc::new(Host {
        id: id.clone(),
        app_id: app_id.clone(),
        version: version.clone(),
        port,
        capacity: agent.config.capacity,
        sessions: Mutex::new(BTreeMap::new()),
        streams: Mutex::new(BTreeMap::new()),
        stopped,
        agent: Arc::downgrade(agent),
        client,
        commands,
    });
    let register = Command::RegisterHost(RegisterHost {
        host_id: id.clone(),
        region: agent.config.region.clone(),
        app_id,
        version,
        capacity: agent.config.capacity,
        hardware: agent.config.hardware.clone(),
        address: agent.config.address.clone(),
        control_port: port,
        control_tls: agent.config.tls.is_some(),
    });
    match host.commands.send(uuid::Uuid::now_v7(), &register).await {
        Ok(CommandReply::Accepted { .. }) => {}
        Ok(CommandReply::Rejected { message, .. }) => {
            return Err(err(format!("registration refused: {message}")));
        }
        Err(e) => return Err(err(format!("registration not delivered: {e}"))),
    }
    agent
        .hosts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), host.clone());
    tokio::spawn(answer(agent.clone(), host.clone(), requests));
    tokio::spawn(heartbeats(agent.clone(), host.clone()));
    tracing::info!(host = %id, port, "host registered");
    Ok((host, listener))
}

/// Answers the control plane's requests to this host.
async fn answer(agent: Arc<Agent>, host: Arc<Host>, mut requests: async_nats::Subscriber) {
    let mut stopped = host.stopped.subscribe();
    loop {
        let msg = tokio::select! {
            m = requests.next() => match m { Some(m) => m, None => break },
            _ = stopped.wait_for(|s| *s) => break,
        };
        let verb = msg
            .subject
            .as_str()
            .rsplit('.')
            .next()
            .unwrap_or("")
            .to_string();
        let reply = match verb.as_str() {
            // The control plane's terminate is empty: anything else on this subject (another
            // service's answer, published here by a forged reply subject) is not one.
            "terminate" if !msg.payload.is_empty() => AgentReply::Error(ServiceError::new(
                "malformed",
                "a terminate request has an empty body",
            )),
            "terminate" => {
                host.stop();
                tracing::info!(host = %host.id, "host terminated");
                AgentReply::Ok {
                    state: host.actual_state(),
                }
            }
            "notice" => match serde_json::from_slice::<TerminationNotice>(&msg.payload) {
                Ok(notice) => {
                    let ids: Vec<SessionId> = host.lock().keys().cloned().collect();
                    for id in ids {
                        let saved = format!(
                            "saved before {} (notice until {})",
                            notice.new_version, notice.deadline
                        );
                        if let Err(error) = host
                            .end_session(&id, SessionEndReason::Terminated, Some(saved))
                            .await
                        {
                            tracing::warn!(host = %host.id, session = %id, %error, "could not end a session on notice");
                        }
                    }
                    AgentReply::Ok {
                        state: host.actual_state(),
                    }
                }
                Err(e) => AgentReply::Error(ServiceError::new(
                    "malformed",
                    format!("unreadable notice: {e}"),
                )),
            },
            verb => match host.handle(verb, &msg.payload) {
                Ok(state) => AgentReply::Ok { state },
                Err(e) => AgentReply::Error(e),
            },
        };
        if let Some(reply_to) = streamfleet_bus_client::reply_inbox(&msg) {
            let body = serde_json::to_vec(&reply).unwrap_or_default();
            let _ = host.client.publish(reply_to, body.into()).await;
        }
    }
    agent
        .hosts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&host.id);
}

/// Reports one heartbeat per running session every interval until the host stops or the
/// control plane says it was removed.
async fn heartbeats(agent: Arc<Agent>, host: Arc<Host>) {
    let mut ticks = tokio::time::interval(agent.config.heartbeat_interval);
    let mut stopped = host.stopped.subscribe();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        if host.is_stopped() {
            return;
        }
        let ids: Vec<SessionId> = host.lock().keys().cloned().collect();
        let sessions: Vec<SessionBeat> = ids
            .into_iter()
            .map(|id| SessionBeat {
                stats: host.stream_stats(&id),
                session_id: id,
            })
            .collect();
        let report = Command::RecordHeartbeats(RecordHeartbeats {
            host_id: host.id.clone(),
            sent_at: chrono::Utc::now(),
            sessions,
        });
        match host.commands.send(uuid::Uuid::now_v7(), &report).await {
            Ok(CommandReply::Accepted { .. }) => {}
            Ok(CommandReply::Rejected {
                reason: RejectionReason::Domain { rule, .. },
                ..
            }) if rule == "host_removed" => {
                tracing::info!(host = %host.id, "host was removed by the control plane; stopping");
                host.stop();
                return;
            }
            Ok(CommandReply::Rejected { message, .. }) => {
                tracing::warn!(host = %host.id, %message, "heartbeat refused")
            }
            Err(error) => tracing::warn!(host = %host.id, %error, "heartbeat not delivered"),
        }
    }
}
