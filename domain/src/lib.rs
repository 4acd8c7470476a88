//! Streamfleet's domain: pure deciders, no I/O.
//!
//! Invariant: [`decide`] and [`evolve`] depend only on their arguments. The clock comes in as
//! [`Context::now`]; ids come in with the command. The same history folded with [`evolve`] gives
//! the same state on the node, in a projection and in an auditor's replay.
//!
//! Every command targets one stream ([`stream_of`]); the node loads that stream's state by
//! folding its events, calls [`decide`], and appends what it returns with the version it loaded.
//!
//! ```
//! use streamfleet_bus_schemas::{Command, Event, payloads::ReportNodeFailure};
//! use streamfleet_domain::{decide, evolve, stream_of, Context, Rejection, State};
//!
//! let cmd = Command::ReportNodeFailure(ReportNodeFailure { node_id: "n1".into(), reason: "silent".into() });
//! assert_eq!(stream_of(&cmd), "node-n1");
//! let ctx = Context { now: chrono::Utc::now() };
//! let events = decide(&cmd, &State::default(), &ctx).unwrap();
//! assert!(matches!(events[0], Event::NodeFailed(_)));
//! let state = events.iter().fold(State::default(), evolve);
//! assert_eq!(decide(&cmd, &state, &ctx), Err(Rejection::NodeAlreadyFailed { node_id: "n1".into() }));
//! ```

mod cipher;
mod migration;
mod node;
mod session;
mod token;

use chrono::{DateTime, Utc};
use streamfleet_bus_schemas::{Command, Event};

pub use cipher::select_ciphers;

/// What a decision may read besides the command and the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// The node's clock when the command is decided.
    pub now: DateTime<Utc>,
}

/// The state of one stream, folded from its events. Each category has its own shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum State {
    /// No events yet.
    #[default]
    Empty,
    /// A `token-*` stream.
    Token(token::TokenState),
    /// A `session-*` stream.
    Session(session::SessionState),
    /// A `migration-*` stream.
    Migration(migration::MigrationState),
    /// A `node-*` stream.
    Node(node::NodeState),
    /// A `cipher-*` stream.
    Cipher(cipher::CipherState),
}

/// Why the domain refuses a command. Each variant is a rule; [`Rejection::rule`] names it on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A field is empty or malformed beyond what the schema says.
    #[error("field `{field}` is invalid: {detail}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The token id was already issued.
    #[error("token `{token_id}` was already issued")]
    TokenAlreadyIssued {
        /// The token.
        token_id: String,
    },
    /// The lifetime asked for is outside the allowed range.
    #[error("ttl of {ttl_seconds}s is outside {min}..={max}s")]
    TtlOutOfRange {
        /// Asked for.
        ttl_seconds: u32,
        /// Shortest allowed.
        min: u32,
        /// Longest allowed.
        max: u32,
    },
    /// The session already exists.
    #[error("session `{session_id}` is already provisioned")]
    SessionAlreadyProvisioned {
        /// The session.
        session_id: String,
    },
    /// A heartbeat for a session that was never provisioned.
    #[error("session `{session_id}` was never provisioned")]
    SessionNotProvisioned {
        /// The session.
        session_id: String,
    },
    /// A heartbeat from a host other than the session's.
    #[error("session `{session_id}` runs on `{expected}`, not `{reported}`")]
    HeartbeatFromWrongHost {
        /// The session.
        session_id: String,
        /// Its host.
        expected: String,
        /// The reporting host.
        reported: String,
    },
    /// The migration id was already scheduled.
    #[error("migration `{migration_id}` is already scheduled")]
    MigrationAlreadyScheduled {
        /// The migration.
        migration_id: String,
    },
    /// Source and target are the same server.
    #[error("migration target `{server}` is its source")]
    MigrationTargetIsSource {
        /// The server.
        server: String,
    },
    /// The deadline is not in the future.
    #[error("deadline {deadline} is not after now ({now})")]
    DeadlineInPast {
        /// Asked for.
        deadline: DateTime<Utc>,
        /// The node's clock.
        now: DateTime<Utc>,
    },
    /// The node is already failed.
    #[error("node `{node_id}` is already failed")]
    NodeAlreadyFailed {
        /// The node.
        node_id: String,
    },
    /// A hop has no cipher both ends support.
    #[error("no cipher in common on the {hop} hop")]
    NoCommonCipher {
        /// `source→relay` or `relay→destination`.
        hop: &'static str,
    },
    /// Ciphers were already selected for this connection.
    #[error("ciphers for connection `{connection_id}` are already selected")]
    CipherAlreadySelected {
        /// The connection.
        connection_id: String,
    },
    /// A stream holds events of another category than the command expects (corrupt history).
    #[error("stream holds a {found} history, not a {expected} one")]
    WrongStreamKind {
        /// What the command expects.
        expected: &'static str,
        /// What the stream holds.
        found: &'static str,
    },
}

impl Rejection {
    /// The rule's stable name, in snake_case, as sent in a rejection's `rule`.
    pub fn rule(&self) -> &'static str {
        match self {
            Rejection::InvalidField { .. } => "invalid_field",
            Rejection::TokenAlreadyIssued { .. } => "token_already_issued",
            Rejection::TtlOutOfRange { .. } => "ttl_out_of_range",
            Rejection::SessionAlreadyProvisioned { .. } => "session_already_provisioned",
            Rejection::SessionNotProvisioned { .. } => "session_not_provisioned",
            Rejection::HeartbeatFromWrongHost { .. } => "heartbeat_from_wrong_host",
            Rejection::MigrationAlreadyScheduled { .. } => "migration_already_scheduled",
            Rejection::MigrationTargetIsSource { .. } => "migration_target_is_source",
            Rejection::DeadlineInPast { .. } => "deadline_in_past",
            Rejection::NodeAlreadyFailed { .. } => "node_already_failed",
            Rejection::NoCommonCipher { .. } => "no_common_cipher",
            Rejection::CipherAlreadySelected { .. } => "cipher_already_selected",
            Rejection::WrongStreamKind { .. } => "wrong_stream_kind",
        }
    }
}

impl State {
    fn kind(&self) -> &'static str {
        match self {
            State::Empty => "empty",
            State::Token(_) => "token",
            State::Session(_) => "session",
            State::Migration(_) => "migration",
            State::Node(_) => "node",
            State::Cipher(_) => "cipher",
        }
    }
}

/// The stream a command writes to.
pub fn stream_of(command: &Command) -> String {
    match command {
        Command::IssueToken(c) => format!("token-{}", c.token_id),
        Command::ProvisionSession(c) => format!("session-{}", c.session_id),
        Command::RecordHeartbeat(c) => format!("session-{}", c.session_id),
        Command::ScheduleMigration(c) => format!("migration-{}", c.migration_id),
        Command::ReportNodeFailure(c) => format!("node-{}", c.node_id),
        Command::SelectCipher(c) => format!("cipher-{}", c.connection_id),
    }
}

/// Decides what a command records, given its stream's state.
pub fn decide(command: &Command, state: &State, ctx: &Context) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::IssueToken(c) => token::decide_issue(c, state.expect_token()?, ctx),
        Command::ProvisionSession(c) => session::decide_provision(c, state.expect_session()?),
        Command::RecordHeartbeat(c) => session::decide_heartbeat(c, state.expect_session()?),
        Command::ScheduleMigration(c) => {
            migration::decide_schedule(c, state.expect_migration()?, ctx)
        }
        Command::ReportNodeFailure(c) => node::decide_failure(c, state.expect_node()?),
        Command::SelectCipher(c) => cipher::decide_select(c, state.expect_cipher()?),
    }
}

/// Folds one event into its stream's state.
pub fn evolve(state: State, event: &Event) -> State {
    match event {
        Event::TokenIssued(e) => State::Token(token::evolve(e)),
        Event::SessionProvisioned(e) => State::Session(session::evolve_provisioned(e)),
        Event::HeartbeatReceived(e) => match state {
            State::Session(s) => State::Session(session::evolve_heartbeat(s, e)),
            other => other,
        },
        Event::MigrationScheduled(e) => State::Migration(migration::evolve(e)),
        Event::NodeFailed(e) => State::Node(node::evolve(e)),
        Event::CipherSelected(e) => State::Cipher(cipher::evolve(e)),
    }
}

macro_rules! expect_kind {
    ($($fn_name:ident => $variant:ident($ty:ty), $kind:literal;)+) => {
        impl State {
            $(
                fn $fn_name(&self) -> Result<Option<&$ty>, Rejection> {
                    match self {
                        State::Empty => Ok(None),
                        State::$variant(s) => Ok(Some(s)),
                        other => Err(Rejection::WrongStreamKind { expected: $kind, found: other.kind() }),
                    }
                }
            )+
        }
    };
}

expect_kind! {
    expect_token => Token(token::TokenState), "token";
    expect_session => Session(session::SessionState), "session";
    expect_migration => Migration(migration::MigrationState), "migration";
    expect_node => Node(node::NodeState), "node";
    expect_cipher => Cipher(cipher::CipherState), "cipher";
}

fn non_empty(field: &'static str, value: &str) -> Result<(), Rejection> {
    if value.trim().is_empty() {
        Err(Rejection::InvalidField {
            field,
            detail: "must not be empty".into(),
        })
    } else {
        Ok(())
    }
}
