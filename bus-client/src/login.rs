//! Connecting to NATS as one of the roles in `nats.conf`.
//!
//! Invariant: a password never leaves this module in text meant for people: [`NatsLogin`]'s
//! `Debug` prints the URL and user only.

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
#[derive(Clone)]
pub struct NatsLogin {
    /// e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// A user from `nats.conf`.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for NatsLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsLogin")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a login could not be made from the environment.
#[derive(Debug, thiserror::Error)]
#[error("{variable} is not set: the password of NATS user {user}")]
pub struct MissingPassword {
    /// The variable looked for.
    pub variable: String,
    /// The user it is for.
    pub user: String,
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

    /// The login of `role`, its password taken from `SF_<ROLE>_PASSWORD`.
    pub fn from_env(url: impl Into<String>, role: &str) -> Result<Self, MissingPassword> {
        let variable = password_variable(role);
        match std::env::var(&variable) {
            Ok(password) if !password.is_empty() => Ok(NatsLogin::new(url, role, password)),
            _ => Err(MissingPassword {
                variable,
                user: role.to_string(),
            }),
        }
    }
}

/// The environment variable holding `role`'s password: `SF_<ROLE>_PASSWORD`.
pub fn password_variable(role: &str) -> String {
    format!("SF_{}_PASSWORD", role.to_ascii_uppercase())
}

/// Connects; fails at once when the server is not there or refuses the login (so a wrong
/// password is an error, not a hang), and reconnects by itself once connected.
pub async fn connect(login: &NatsLogin) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .user_and_password(login.user.clone(), login.password.clone())
        .name(format!("streamfleet-{}", login.user))
        // Replies come back under the role's own prefix, the only one nats.conf lets it read.
        .custom_inbox_prefix(streamfleet_bus_schemas::subjects::inbox_prefix(&login.user))
        .connect(login.url.as_str())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_password() {
        let login = NatsLogin::new("nats://127.0.0.1:4222", "worker", "Sup3rSecret");
        let shown = format!("{login:?}");
        assert!(!shown.contains("Sup3rSecret"), "{shown}");
        assert!(
            shown.contains("worker") && shown.contains("127.0.0.1:4222"),
            "{shown}"
        );
    }

    #[test]
    fn password_variable_names_the_role() {
        assert_eq!(password_variable("dashboard"), "SF_DASHBOARD_PASSWORD");
    }
}
