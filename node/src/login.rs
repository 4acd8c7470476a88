//! Connecting to NATS as one of the roles in `nats.conf`.

/// The users `nats.conf` defines; each gets its password from `SF_<ROLE>_PASSWORD`.
pub const ROLES: [&str; 9] = [
    "node",
    "service",
    "worker",
    "entitlement",
    "client",
    "host",
    "auditor",
    "dashboard",
    "bench",
];

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct NatsLogin {
    /// e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// A user from `nats.conf`.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl NatsLogin {
    /// A login.
    pub fn new(
        url: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        NatsLogin {
            url: url.into(),
            user: user.into(),
            password: password.into(),
        }
    }
}

/// Connects; fails at once when the server is not there or refuses the login (so a wrong
/// password is an error, not a hang), and reconnects by itself once connected.
pub async fn connect(login: &NatsLogin) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .user_and_password(login.user.clone(), login.password.clone())
        .name(format!("streamfleet-{}", login.user))
        .connect(login.url.as_str())
        .await
}
